#include "runtime/ops/argmax.h"

#include <algorithm>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/ops/op_checks.h"

namespace ternvk::ops {
RowReducePlan plan_argmax(const DeviceInfo& info, uint32_t rows, uint32_t cols, const RowReduceTuning& t) {
  if (rows == 0 || cols == 0) throw Error("argmax: rows and cols must be positive");
  RowReducePlan p;
  const uint32_t sg = std::max(1u, info.subgroup_size);
  const uint32_t max_wg = std::max(1u, info.max_workgroup_invocations);
  // A CPU device runs each workgroup on one thread: one subgroup per workgroup. GPUs: 256 lanes.
  p.workgroup = t.workgroup ? t.workgroup : (info.is_cpu() ? sg : std::min(std::max(sg, 256u), max_wg));
  // Each lane reads 16 (GPU) / 1024 (CPU) values: enough workgroups to spread a 128k row over the
  // device, few enough that the merge pass stays small (lavapipe: ~1 ms for 128256 columns with
  // anything from 1 to 126 parts).
  const uint32_t per_lane = info.is_cpu() ? 1024 : 16;
  p.chunk = t.chunk ? t.chunk : p.workgroup * per_lane;
  p.parts = (cols + p.chunk - 1) / p.chunk;
  if (p.parts > info.max_workgroup_count_x) {
    p.chunk = (cols + info.max_workgroup_count_x - 1) / info.max_workgroup_count_x;
    p.parts = (cols + p.chunk - 1) / p.chunk;
  }
  // lavapipe (Mesa 22.3) silently cuts a loop after 65535 iterations per invocation.
  const uint64_t lane_items = std::max<uint64_t>((p.chunk + p.workgroup - 1) / p.workgroup,
                                                 (p.parts + p.workgroup - 1) / p.workgroup);
  if (lane_items > 32768)
    throw Error("argmax: " + std::to_string(lane_items) + " elements per invocation exceed the loop budget of 32768; "
                "use a smaller chunk or a wider workgroup");
  p.subgroup_reduce = t.subgroup_reduce.value_or(info.subgroup_arithmetic);
  // Subgroup arithmetic only over whole subgroups (lavapipe mis-reduces a partial last subgroup).
  if (p.workgroup % sg != 0) p.subgroup_reduce = false;
  p.scratch_bytes = p.parts > 1 ? uint64_t(rows) * p.parts * sizeof(ArgmaxResult) : 0;
  return p;
}

void record_argmax(Recording& rec, const ArgmaxArgs& a) {
  Device& dev = rec.device();
  const RowReducePlan p = a.plan.parts ? a.plan : plan_argmax(dev.info(), a.rows, a.cols);
  if (a.rows == 0 || a.cols == 0) throw Error("argmax: rows and cols must be positive");
  if (p.chunk == 0 || p.parts != (a.cols + p.chunk - 1) / p.chunk)
    throw Error("argmax: the plan (chunk " + std::to_string(p.chunk) + ", parts " + std::to_string(p.parts) +
                ") does not match " + std::to_string(a.cols) + " columns; make it with plan_argmax");
  if (a.rows > 65535) throw Error("argmax: more than 65535 rows in one dispatch; split the batch");
  require_bytes("argmax", a.logits, uint64_t(a.rows) * a.cols * 4, "logits");
  require_bytes("argmax", a.out, uint64_t(a.rows) * sizeof(ArgmaxResult), "out");
  if (overlaps(a.logits, a.out)) throw Error("argmax: out must not overlap logits");
  struct {
    uint32_t cols, chunk, parts;
  } push{a.cols, p.chunk, p.parts};
  const SpecConstants constants{{0, p.workgroup}};
  const char* suffix = p.subgroup_reduce ? "" : "_shared";
  const Pipeline& first = dev.pipeline(std::string("argmax") + suffix, {.constants = constants});
  // The logits read once; each part writes one (value, index) pair per row.
  const double logits = double(a.rows) * a.cols * 4, pairs = double(a.rows) * p.parts * sizeof(ArgmaxResult);
  if (p.parts == 1) {
    rec.dispatch(first, {a.logits, a.out}, push, 1, a.rows, 1, {"", DispatchWork{.bytes = logits + pairs}});
    return;
  }
  require_bytes("argmax", a.scratch, uint64_t(a.rows) * p.parts * sizeof(ArgmaxResult), "scratch");
  if (overlaps(a.scratch, a.logits) || overlaps(a.scratch, a.out))
    throw Error("argmax: scratch must not overlap logits or out");
  const Pipeline& merge = dev.pipeline(std::string("argmax_merge") + suffix, {.constants = constants});
  rec.dispatch(first, {a.logits, a.scratch}, push, p.parts, a.rows, 1, {"", DispatchWork{.bytes = logits + pairs}});
  rec.dispatch(merge, {a.scratch, a.out}, push, 1, a.rows, 1,
               {"", DispatchWork{.bytes = pairs + double(a.rows) * sizeof(ArgmaxResult)}});
}

}  // namespace ternvk::ops
