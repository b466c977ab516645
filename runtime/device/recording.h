// A command buffer recorded once and replayed many times: a whole forward pass is one submit.
// The recording owns the descriptor sets it allocates (none are allocated per replay), inserts a
// barrier only where a dispatch touches a buffer that an earlier, unbarriered dispatch wrote (or
// writes one it read), and can write a GPU timestamp after every dispatch for the profiler.
#pragma once
#include <vulkan/vulkan.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "runtime/core/owned.h"
#include "runtime/device/memory.h"
#include "runtime/device/pipeline.h"

namespace ternvk {

class Device;

struct DispatchTiming {
  std::string label;    // the shader name, or the label given at record time
  double microseconds;  // GPU time from the end of the previous command to the end of this one
};

// The work of one dispatch, stated by the op that records it (it knows the shapes): the profiler
// divides it by measured GPU time. Work that grows with the context (attention, recorded once for
// the maximum context and replayed at any length) is given per key: bytes per live key (each
// sequence's cache rows 0..its last position, read once) and MACs per attended key (each token
// times the keys it attends to).
struct DispatchWork {
  double bytes = 0;          // unique bytes read + written: the ideal DRAM traffic
  double macs = 0;           // multiply-accumulates
  double bytes_per_key = 0;  // per live key
  double macs_per_key = 0;   // per attended key
  double bytes_at(double live_keys) const { return bytes + bytes_per_key * live_keys; }
  double macs_at(double attended_keys) const { return macs + macs_per_key * attended_keys; }
};

// How a dispatch is named and what it does: `label` (empty: the shader's name; matmuls give their
// matrix, "layer 3 qkv") and its work when the op states it.
struct DispatchNote {
  std::string label;
  std::optional<DispatchWork> work;
  DispatchNote() = default;
  DispatchNote(std::string l) : label(std::move(l)) {}
  DispatchNote(const char* l) : label(l) {}
  DispatchNote(std::string l, const DispatchWork& w) : label(std::move(l)), work(w) {}
};

// One command of a recording, in recording order: the recorded pass describes itself (what it
// dispatches, reads and writes), so the profiler needs no second description of the forward pass.
struct RecordedCommand {
  enum Kind { Dispatch, Copy, Fill } kind = Dispatch;
  std::string shader;  // the pipeline's shader variant ("copy", "fill" for transfers)
  std::string label;   // the note's label, else the shader
  std::optional<DispatchWork> work;  // transfers: the bytes they move
};

// Timestamps: none, one at the start and one at the end of the pass (whole-pass GPU time, no
// distortion from timestamps between dependent dispatches), or one after every command.
enum class TimestampMode { None, Pass, Dispatch };

struct RecordingOptions {
  bool timestamps = false;  // ignored (no timing) on devices without timestamp support
  bool whole_pass = false;  // with timestamps: only at the start and the end (TimestampMode::Pass)
  // False records no barrier between dependent commands (wrong results): a test shows that its check
  // (the validation layer's synchronization validation) sees them missing, and bench_decode_layers
  // times a pass whose dispatches wait for nothing.
  bool automatic_barriers = true;
};

class Recording {
 public:
  explicit Recording(Device& device, RecordingOptions options = {});
  ~Recording();
  Recording(const Recording&) = delete;
  Recording& operator=(const Recording&) = delete;

  // Binds `bindings` in binding order (as the shader declares them), pushes `push` and dispatches.
  void dispatch(const Pipeline& pipeline, std::initializer_list<BufferRange> bindings, const void* push,
                uint32_t push_size, uint32_t groups_x, uint32_t groups_y = 1, uint32_t groups_z = 1,
                const DispatchNote& note = {});
  void dispatch(const Pipeline& pipeline, const std::vector<BufferRange>& bindings, const void* push,
                uint32_t push_size, uint32_t groups_x, uint32_t groups_y = 1, uint32_t groups_z = 1,
                const DispatchNote& note = {});
  template <class Push>
    requires(!std::is_pointer_v<Push>)
  void dispatch(const Pipeline& pipeline, std::initializer_list<BufferRange> bindings, const Push& push,
                uint32_t groups_x, uint32_t groups_y = 1, uint32_t groups_z = 1, const DispatchNote& note = {}) {
    dispatch(pipeline, bindings, &push, sizeof(Push), groups_x, groups_y, groups_z, note);
  }
  void copy(BufferRange src, BufferRange dst);
  void fill(BufferRange dst, uint32_t value);
  // A full compute/transfer barrier (the automatic tracking makes this rarely needed).
  void barrier();
  // Chained dispatches (fused_linear.comp's CHAIN variants): begin_chain() puts a barrier after
  // whatever was written before (so every link comes after it); the dispatches until end_chain()
  // get none (their shaders order each after the one before). The first command after end_chain()
  // gets one after everything the chain touched. Only dispatches may be recorded inside.
  void begin_chain();
  void end_chain();
  bool chain_open() const { return chain_ != ChainState::Closed; }
  // Ends recording; the recording can then be submitted any number of times.
  void finish();

  void submit();  // non-blocking
  void wait();    // waits for the last submit (its timeline value, or its fence on the fallback path)
  void submit_and_wait() { submit(); wait(); }

  bool timestamps_enabled() const { return bool(query_pool_); }
  TimestampMode timestamp_mode() const { return bool(query_pool_) ? mode_ : TimestampMode::None; }
  // TimestampMode::Dispatch: the GPU time of each command of the last completed submit, in the
  // order of commands(); Pass: one entry, "pass", the whole pass; None: empty.
  std::vector<DispatchTiming> timings() const;
  // The GPU time of the whole last completed submit in microseconds (0 without timestamps).
  double pass_microseconds() const;
  const std::vector<RecordedCommand>& commands() const { return log_; }
  size_t dispatch_count() const { return dispatch_count_; }
  size_t barrier_count() const { return barrier_count_; }  // pipeline barriers recorded (incl. the first)
  Device& device() const { return device_; }

 private:
  void ensure_descriptor_pool(const Pipeline& pipeline);  // room for one set of `pipeline`'s bindings
  void track(const Pipeline& pipeline, const std::vector<BufferRange>& bindings);
  void track_transfer(VkBuffer read, VkBuffer written);
  void write_timestamp(const std::string& label);
  void log_command(RecordedCommand command);
  Device& device_;
  RecordingOptions options_;
  // Destroyed bottom-up, after the destructor waited for the last submit: the query pool, views
  // and descriptor pools, then the fence and the command buffer that used them.
  Owned<VkCommandBuffer> commands_;
  Owned<VkFence> fence_;          // only without timeline semaphores (Device::timeline_semaphores)
  uint64_t submitted_value_ = 0;  // the device timeline value of the last submit
  std::vector<Owned<VkDescriptorPool>> pools_;
  std::vector<Owned<VkBufferView>> views_;  // texel-buffer views made at record time
  uint32_t sets_left_in_pool_ = 0;
  uint32_t descriptors_left_[3] = {0, 0, 0};  // in the current pool, by BindingKind
  Owned<VkQueryPool> query_pool_;
  uint32_t query_capacity_ = 0;
  std::vector<std::string> labels_;  // one per timestamp
  std::vector<RecordedCommand> log_;
  TimestampMode mode_ = TimestampMode::None;
  enum class ChainState { Closed, Running } chain_ = ChainState::Closed;
  size_t barrier_count_ = 0;
  std::unordered_set<VkBuffer> written_since_barrier_;
  std::unordered_set<VkBuffer> read_since_barrier_;
  size_t dispatch_count_ = 0;
  bool finished_ = false;
  bool pending_ = false;
};

}  // namespace ternvk
