// The k largest logits of each fp32 row [rows, cols], so the host sampler reads k pairs instead of
// the whole vocabulary. Result per row: k TopKEntry {uint32 index, float value}, sorted by value
// descending, ties by index ascending (what std::partial_sort with that order gives). NaN is never
// selected; a row with fewer than k selectable values is padded with {0xffffffff, -inf}.
//
// k is a push constant (1..kMaxTopK), so one pipeline serves every k; the cost grows with k
// (k workgroup reductions per pass). plan_topk keeps each invocation's loop iterations under a
// budget (lavapipe silently cuts longer loop nests) and throws when a shape would need more than
// two passes (e.g. k = 256 over far more than 128k columns). Long rows use two passes: `parts` workgroups per row each
// write their top k into `scratch`, then one workgroup per row merges the parts * k candidates.
#pragma once
#include <cstdint>

#include "runtime/ops/argmax.h"

namespace ternvk::ops {

struct TopKEntry {
  uint32_t index;
  float value;
};
static_assert(sizeof(TopKEntry) == 8);

inline constexpr uint32_t kMaxTopK = 256;

// Uses RowReducePlan from argmax.h; scratch_bytes = rows * parts * k * 8 when parts > 1.
RowReducePlan plan_topk(const DeviceInfo& info, uint32_t rows, uint32_t cols, uint32_t k,
                        const RowReduceTuning& tuning = {});

struct TopKArgs {
  BufferRange logits;   // fp32 [rows, cols]
  BufferRange out;      // TopKEntry [rows, k]
  BufferRange scratch;  // plan.scratch_bytes bytes (may be empty when that is 0)
  uint32_t rows = 0;
  uint32_t cols = 0;
  uint32_t k = 0;
  RowReducePlan plan;   // from plan_topk with the same k; parts == 0 means plan_topk(device, ...)
};

void record_topk(Recording& rec, const TopKArgs& args);

}  // namespace ternvk::ops
