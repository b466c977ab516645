#include "runtime/ops/topk.h"

#include <algorithm>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/ops/op_checks.h"

namespace ternvk::ops {
namespace {

void check_k(uint32_t k) {
  if (k == 0 || k > kMaxTopK)
    throw Error("topk: k = " + std::to_string(k) + " is outside 1.." + std::to_string(kMaxTopK));
}

}  // namespace

RowReducePlan plan_topk(const DeviceInfo& info, uint32_t rows, uint32_t cols, uint32_t k, const RowReduceTuning& t) {
  if (rows == 0 || cols == 0) throw Error("topk: rows and cols must be positive");
  check_k(k);
  RowReducePlan p;
  const uint32_t sg = std::max(1u, info.subgroup_size);
  const uint32_t max_wg = std::max(1u, info.max_workgroup_invocations);
  // 8 subgroups, 64..256 invocations: each selection round is one workgroup reduction plus one
  // lane's rescan of chunk / workgroup elements, so wide workgroups keep rescans short.
  p.workgroup = t.workgroup ? t.workgroup : std::min({std::max(sg * 8, 64u), 256u, max_wg});
  const uint64_t wg = p.workgroup;
  // Loop budget per invocation (op_checks.h): (k + 1) * elements_per_lane + k <= it in both passes.
  const uint64_t per_lane_max = (kShaderLoopBudget - k) / (uint64_t(k) + 1);
  if (per_lane_max == 0) throw Error("topk: k = " + std::to_string(k) + " is too large for one workgroup's loop budget");
  const uint64_t chunk_max = wg * per_lane_max;                                // first pass
  const uint64_t parts_max = std::max<uint64_t>(1, wg * per_lane_max / k);     // merge pass: parts * k candidates
  const uint64_t chunk_min = (cols + parts_max - 1) / parts_max;
  if (chunk_min > chunk_max)
    throw Error("topk: " + std::to_string(cols) + " columns with k = " + std::to_string(k) + " and a workgroup of " +
                std::to_string(wg) + " need more than two passes; use a smaller k");
  // GPUs: 16 elements a lane, many parts in parallel. CPU devices run a workgroup on one thread
  // and pay for every round: the longest chunk the budget allows (fewest parts * k rounds).
  uint64_t chunk = t.chunk ? t.chunk : (info.is_cpu() ? chunk_max : std::max<uint64_t>(wg * 16, 8ull * k));
  if (!t.chunk) chunk = std::clamp(chunk, chunk_min, chunk_max);
  p.chunk = uint32_t(std::min<uint64_t>(chunk, cols));
  p.parts = (cols + p.chunk - 1) / p.chunk;
  if (p.parts > info.max_workgroup_count_x) throw Error("topk: too many parts for the device; use a larger chunk");
  const uint64_t pass1 = (k + 1ull) * ((p.chunk + wg - 1) / wg) + k;
  const uint64_t merge = p.parts > 1 ? (k + 1ull) * ((uint64_t(p.parts) * k + wg - 1) / wg) + k : 0;
  if (std::max(pass1, merge) > kShaderLoopBudget)
    throw Error("topk: chunk " + std::to_string(p.chunk) + " with workgroup " + std::to_string(wg) + " and k = " +
                std::to_string(k) + " needs " + std::to_string(std::max(pass1, merge)) +
                " loop iterations per invocation, over the budget of " + std::to_string(kShaderLoopBudget));
  p.subgroup_reduce = t.subgroup_reduce.value_or(info.subgroup_arithmetic);
  if (p.workgroup % sg != 0) p.subgroup_reduce = false;  // see plan_argmax
  p.scratch_bytes = p.parts > 1 ? uint64_t(rows) * p.parts * k * sizeof(TopKEntry) : 0;
  return p;
}

void record_topk(Recording& rec, const TopKArgs& a) {
  Device& dev = rec.device();
  check_k(a.k);
  const RowReducePlan p = a.plan.parts ? a.plan : plan_topk(dev.info(), a.rows, a.cols, a.k);
  if (a.rows == 0 || a.cols == 0) throw Error("topk: rows and cols must be positive");
  if (p.chunk == 0 || p.parts != (a.cols + p.chunk - 1) / p.chunk)
    throw Error("topk: the plan (chunk " + std::to_string(p.chunk) + ", parts " + std::to_string(p.parts) +
                ") does not match " + std::to_string(a.cols) + " columns; make it with plan_topk");
  if (a.rows > 65535) throw Error("topk: more than 65535 rows in one dispatch; split the batch");
  require_bytes("topk", a.logits, uint64_t(a.rows) * a.cols * 4, "logits");
  require_bytes("topk", a.out, uint64_t(a.rows) * a.k * sizeof(TopKEntry), "out");
  if (overlaps(a.logits, a.out)) throw Error("topk: out must not overlap logits");
  struct {
    uint32_t cols, chunk, parts, k;
  } push{a.cols, p.chunk, p.parts, a.k};
  const SpecConstants constants{{0, p.workgroup}};
  const char* suffix = p.subgroup_reduce ? "" : "_shared";
  const Pipeline& first = dev.pipeline(std::string("topk") + suffix, {.constants = constants});
  // The logits read once; each part writes k (value, index) pairs per row.
  const double logits = double(a.rows) * a.cols * 4, entries = double(a.rows) * p.parts * a.k * sizeof(TopKEntry);
  if (p.parts == 1) {
    rec.dispatch(first, {a.logits, a.out}, push, 1, a.rows, 1, {"", DispatchWork{.bytes = logits + entries}});
    return;
  }
  require_bytes("topk", a.scratch, uint64_t(a.rows) * p.parts * a.k * sizeof(TopKEntry), "scratch");
  if (overlaps(a.scratch, a.logits) || overlaps(a.scratch, a.out))
    throw Error("topk: scratch must not overlap logits or out");
  const Pipeline& merge = dev.pipeline(std::string("topk_merge") + suffix, {.constants = constants});
  rec.dispatch(first, {a.logits, a.scratch}, push, p.parts, a.rows, 1, {"", DispatchWork{.bytes = logits + entries}});
  rec.dispatch(merge, {a.scratch, a.out}, push, 1, a.rows, 1,
               {"", DispatchWork{.bytes = entries + double(a.rows) * a.k * sizeof(TopKEntry)}});
}

}  // namespace ternvk::ops
