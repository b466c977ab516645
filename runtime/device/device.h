// A logical device on one physical device: its compute queue, memory, pipelines (cached in memory
// and on disk) and transfers. Several Device objects may share one physical device; each is a
// separate logical device with its own queue and memory (that is how pipelines are tested on one GPU).
#pragma once
#include <vulkan/vulkan.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/device/device_info.h"
#include "runtime/device/fault_injection.h"
#include "runtime/device/instance.h"
#include "runtime/device/memory.h"
#include "runtime/device/pipeline.h"

namespace ternvk {

// What the host did with a device's queue and when (host clock): the profiler lays GPU work and
// the hand-overs between pipeline stages on one timeline with these.
struct QueueEvent {
  enum Kind { Submit, Wait } kind = Submit;
  std::chrono::steady_clock::time_point begin, end;
  bool transfer = false;  // an upload/download through staging (run_now), not a recorded pass
};

struct DeviceOptions {
  // Synchronize with one timeline semaphore per queue when the device supports it. false (or
  // TERNVK_NO_TIMELINE=1 in the environment, read at device creation) forces the per-recording
  // fence path that drivers without timeline semaphores use; tests compare the two.
  bool timeline_semaphores = true;
};

// A primary command buffer from `pool`, freed with its handle; `pool_mutex`, when given, guards
// the pool (command pools are not thread-safe) for the allocation and the free.
Owned<VkCommandBuffer> allocate_command_buffer(VkDevice device, VkCommandPool pool, std::mutex* pool_mutex = nullptr);

class Device {
 public:
  Device(Instance& instance, const DeviceInfo& info, DeviceOptions options = {});
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  VkDevice handle() const { return device_.get(); }
  const DeviceInfo& info() const { return info_; }
  Instance& instance() const { return instance_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }
  VkCommandPool command_pool() const { return command_pool_.get(); }
  VkPipelineCache pipeline_cache() const { return pipeline_cache_.get(); }
  // Command buffers from command_pool(), one at a time (the pool is not thread-safe), freed when
  // the Owned handle is.
  Owned<VkCommandBuffer> allocate_command_buffer();
  Owned<VkFence> create_fence();
  MemoryAllocator& memory() { return *allocator_; }

  Buffer create_buffer(VkDeviceSize size, MemoryKind kind, const std::string& what) {
    return allocator_->create(size, kind, what);
  }
  // Copies host data into a buffer (directly when it is host-visible, else through staging).
  void upload(const Buffer& dst, const void* data, VkDeviceSize bytes, VkDeviceSize dst_offset = 0);
  void download(const Buffer& src, void* data, VkDeviceSize bytes, VkDeviceSize src_offset = 0);

  // The pipeline for a shader and its specialization, built once and cached.
  const Pipeline& pipeline(const std::string& shader, const PipelineOptions& options = {});

  // An on-device self-check, run once per logical device and remembered by name: kernels that no
  // CPU device can run (so no test here covers them) are compared on the device with kernels the
  // tests do cover before they are used. `run` returns whether the check passed; it must not start
  // another self-check (an Error says so instead of a deadlock).
  bool self_check(const std::string& name, const std::function<bool()>& run);

  // Records commands into a one-time command buffer, submits it and waits.
  void run_now(const std::function<void(VkCommandBuffer)>& record);
  // True when this device signals its queue's timeline semaphore at every submit (chosen at
  // creation: the device supports it and DeviceOptions / TERNVK_NO_TIMELINE did not forbid it);
  // false: the fence path, where every submit needs a fence to be waited on.
  bool timeline_semaphores() const { return bool(timeline_); }
  // Submits a recorded command buffer, signalling `fence` when given (it must be given without
  // timeline semaphores). Returns the timeline value the submit signals when it completes (0
  // without timeline semaphores). Thread-safe; values increase in submission order.
  uint64_t submit(VkCommandBuffer commands, VkFence fence) { return submit(commands, fence, false); }
  // Waits for a fence, or for the queue's timeline to reach `value` (a value submit() returned),
  // with a bound so that a hung GPU becomes an error, not a hang.
  void wait(VkFence fence, const char* what) { wait(fence, 0, what, false); }
  void wait_value(uint64_t value, const char* what) { wait(VK_NULL_HANDLE, value, what, false); }
  // Waits without bound or error (destructors: work still in flight must end before freeing).
  void wait_quietly(VkFence fence, uint64_t value);

  // "device I (name)", or "device I (name), logical device N" when N > 0: how errors name it.
  std::string describe() const;
  // This logical device's ordinal on its Instance (creation order; see fault_injection.h).
  int ordinal() const { return ordinal_; }
  // True once the device reported (or was made to report) VK_ERROR_DEVICE_LOST: from then on
  // submit() and wait() throw DeviceLostError at once.
  bool lost() const { return lost_.load(); }
  // Bytes a placement may still plan on this device: the injected memory budget when one is set,
  // else the device-local heap (the shared heap on unified memory), less the device-local buffers
  // held now.
  uint64_t free_bytes() const;

  // Test-only: replaces the injected faults (fault_injection.h); its counters restart from now.
  void inject_faults(const FaultInjection& faults);
  const FaultInjection& faults() const { return faults_; }
  // Submits made so far (tests place a device loss in the middle of a run with it).
  uint64_t submit_count() const { return submits_.load(); }
  // Waits that ran into their time limit (the 5 minutes of a hung GPU, the second a lost device
  // gets): 0 unless something waited on work that would never finish. Tests check that a fault
  // ends a run at once with it, independently of the machine's speed.
  uint64_t waits_timed_out() const { return waits_timed_out_.load(); }

  // Profiler: while on, every submit and wait is logged with its host times; take_queue_events()
  // returns and clears the log.
  void record_queue_events(bool on);
  std::vector<QueueEvent> take_queue_events();

 private:
  void load_pipeline_cache();
  void save_pipeline_cache();
  [[noreturn]] void throw_lost(const std::string& during) const;
  void log(QueueEvent::Kind kind, std::chrono::steady_clock::time_point begin, bool transfer);
  uint64_t submit(VkCommandBuffer commands, VkFence fence, bool transfer);
  void wait(VkFence fence, uint64_t value, const char* what, bool transfer);
  VkResult wait_for(VkFence fence, uint64_t value, uint64_t timeout_ns);
  Instance& instance_;
  DeviceInfo info_;
  Owned<VkDevice> device_;  // before every member made from it: destroyed after them
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  Owned<VkCommandPool> command_pool_;
  Owned<VkPipelineCache> pipeline_cache_;
  std::unique_ptr<MemoryAllocator> allocator_;
  std::mutex queue_mutex_;
  Owned<VkSemaphore> timeline_;  // the queue's timeline semaphore (null: fence path)
  uint64_t timeline_value_ = 0;            // the last value submitted; guarded by queue_mutex_
  std::mutex pool_mutex_;
  std::mutex pipelines_mutex_;
  std::map<std::string, std::unique_ptr<Pipeline>> pipelines_;
  std::mutex self_checks_mutex_;  // held while a check runs: each runs once
  std::atomic<std::thread::id> self_check_thread_{};  // the thread running a check (re-entry would deadlock)
  std::map<std::string, bool> self_checks_;
  int ordinal_ = 0;
  FaultInjection faults_;
  uint64_t submits_at_injection_ = 0;
  std::atomic<uint64_t> submits_{0};
  std::atomic<uint64_t> waits_timed_out_{0};
  std::atomic<bool> lost_{false};
  std::atomic<bool> log_events_{false};
  std::mutex events_mutex_;
  std::vector<QueueEvent> events_;
};

}  // namespace ternvk
