// Greedy decoding without reading the logits on the host: the argmax of each fp32 row
// [rows, cols], ties to the lowest index (torch.argmax, llama.cpp greedy). NaN is never selected;
// a row of only NaN gives index 0xffffffff. The result per row is {uint32 index, float value}
// (8 bytes, ArgmaxResult).
//
// Long rows (a 128256-entry vocabulary) are split over `parts` workgroups per row, each writing a
// partial result into `scratch`; a second dispatch reduces the partials. Rows short enough for one
// workgroup take one dispatch and no scratch. plan_argmax() says how, and how much scratch.
#pragma once
#include <cstdint>
#include <optional>

#include "runtime/device/device_info.h"
#include "runtime/device/memory.h"
#include "runtime/device/recording.h"

namespace ternvk::ops {

struct ArgmaxResult {
  uint32_t index;
  float value;
};
static_assert(sizeof(ArgmaxResult) == 8);

// How argmax and topk split a row over workgroups (shared by both ops).
struct RowReducePlan {
  uint32_t workgroup = 0;        // invocations per workgroup (spec constant 0)
  uint32_t chunk = 0;            // row elements per first-pass workgroup
  uint32_t parts = 0;            // first-pass workgroups per row, ceil(cols / chunk); 1 = no merge pass
  bool subgroup_reduce = false;  // subgroup-arithmetic variant, else the shared-memory tree
  uint64_t scratch_bytes = 0;    // the first pass's output when parts > 1, else 0
};

// Overrides for tests and benchmarks; zero / unset fields are picked from DeviceInfo.
struct RowReduceTuning {
  uint32_t workgroup = 0;
  uint32_t chunk = 0;
  std::optional<bool> subgroup_reduce;
};

RowReducePlan plan_argmax(const DeviceInfo& info, uint32_t rows, uint32_t cols, const RowReduceTuning& tuning = {});

struct ArgmaxArgs {
  BufferRange logits;   // fp32 [rows, cols]
  BufferRange out;      // ArgmaxResult [rows]
  BufferRange scratch;  // plan.scratch_bytes bytes (may be empty when that is 0)
  uint32_t rows = 0;
  uint32_t cols = 0;
  RowReducePlan plan;   // from plan_argmax; parts == 0 means plan_argmax(device, rows, cols)
};

// Records one or two dispatches. Throws ternvk::Error for buffers smaller than the shape needs or
// a plan that does not match the shape.
void record_argmax(Recording& rec, const ArgmaxArgs& args);

}  // namespace ternvk::ops
