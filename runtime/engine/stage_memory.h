// Every buffer a stage allocates, by name, size and use. The Stage constructor allocates its
// activations by these names and sizes and its weights in the sizes listed here (a test compares the
// device's allocations with the list), and every footprint estimate (placement, bench, info,
// batched-bench) is a sum over it. One description of a stage's memory: a buffer the forward pass
// needs is added here once, and the estimates follow.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/device/device_info.h"
#include "runtime/device/memory.h"
#include "runtime/engine/model_config.h"
#include "runtime/engine/stage_options.h"
#include "runtime/ops/attention.h"

namespace ternvk {

struct GpuFootprint {
  uint64_t ternary_weights = 0;  // 2-bit packed linear layers with their row info
  uint64_t weights = 0;          // everything uploaded once: linear layers, embedding/head, norms
  uint64_t kv_cache = 0;         // fp16 K and V for `context` positions of `sequences` sequences
  uint64_t scratch = 0;          // activations for the largest step, partials, hand-over buffers
  uint64_t total() const { return weights + kv_cache + scratch; }
};

struct StageBuffer {
  enum Use { Weights, KvCache, Scratch };
  std::string name;
  uint64_t bytes = 0;  // as requested from the allocator (at least 16)
  MemoryKind kind = MemoryKind::DeviceLocal;
  Use use = Scratch;
  bool ternary = false;  // a ternary matrix (its 2-bit rows and row info)
};

class StageMemory {
 public:
  // The buffers of a stage of `c` with `spec` and `options` on a device like `info`, in the order
  // the stage allocates them.
  static StageMemory plan(const ModelConfig& c, const StageSpec& spec, const StageOptions& options,
                          const DeviceInfo& info);
  const std::vector<StageBuffer>& buffers() const { return buffers_; }
  // The planned buffer `name` (an internal error if the plan has none).
  const StageBuffer& buffer(std::string_view name) const;
  GpuFootprint footprint() const;

 private:
  void add(std::string name, uint64_t bytes, StageBuffer::Use use, MemoryKind kind = MemoryKind::DeviceLocal,
           bool ternary = false);
  std::vector<StageBuffer> buffers_;
};

// The footprint of `layers` layers (< 0: all) of `c`, with the embedding and/or the head, as one stage
// on a device like `info` would allocate it.
GpuFootprint estimate_footprint(const ModelConfig& c, const StageOptions& options, const DeviceInfo& info,
                                int layers = -1, bool embedding = true, bool head = true);

// The attention plan the stage records for `tokens` tokens in `layout` (the forward pass and the
// scratch it needs come from the same choice).
ops::AttentionPlan plan_stage_attention(const ModelConfig& c, const StageOptions& options, const DeviceInfo& info,
                                        uint32_t tokens, ops::SequenceLayout layout);

}  // namespace ternvk
