// The Engine as the scheduler's BatchModel. Header-only on purpose: only the binary that serves
// links the engine's batched calls.
#pragma once
#include "runtime/engine/engine.h"
#include "runtime/server/batch_scheduler.h"

namespace ternvk::server {

class EngineModel final : public BatchModel {
 public:
  explicit EngineModel(Engine& engine) : engine_(engine) {}
  int slots() const override { return engine_.sequences(); }
  int context() const override { return engine_.context(); }
  int max_batch() const override { return engine_.max_batch(); }
  StepOutput prefill(int slot, std::span<const uint32_t> tokens, Selection select) override {
    return engine_.prefill(slot, tokens, select);
  }
  std::vector<StepOutput> decode(std::span<const int> slots, std::span<const uint32_t> tokens,
                                 Selection select) override {
    return engine_.decode(slots, tokens, select);
  }
  void truncate(int slot, int n) override { engine_.truncate(slot, n); }

 private:
  Engine& engine_;
};

// Bytes of KV cache the engine holds: K and V, fp16, per layer, per slot.
inline uint64_t kv_cache_bytes(const ModelConfig& c, int context, int slots) {
  return uint64_t(2) * 2 * uint64_t(c.n_layers) * uint64_t(context) * uint64_t(c.kv_dim()) * uint64_t(slots);
}

}  // namespace ternvk::server
