#include "runtime/ops/rmsnorm.h"

#include <algorithm>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/ops/op_checks.h"

namespace ternvk::ops {
namespace {

void require_bytes(const BufferRange& r, uint64_t bytes, const char* what) {
  if (!r.buffer) throw Error(std::string("rmsnorm: ") + what + " buffer is missing");
  if (r.size < bytes)
    throw Error(std::string("rmsnorm: ") + what + " holds " + std::to_string(r.size) + " bytes but the shape needs " +
                std::to_string(bytes));
}

// A CPU device runs a whole workgroup on one thread: one subgroup per workgroup avoids serialized
// barrier steps. GPUs get 256 invocations (several subgroups) to cover a row quickly.
uint32_t row_workgroup(const DeviceInfo& info) {
  const uint32_t sg = std::max(1u, info.subgroup_size);
  if (info.is_cpu()) return sg;
  const uint32_t wg = std::max(sg, 256u);
  return std::min(wg, std::max(1u, info.max_workgroup_invocations));
}

}  // namespace

void record_rmsnorm(Recording& rec, const RmsNormArgs& a) {
  if (a.rows == 0 || a.cols == 0) throw Error("rmsnorm: rows and cols must be positive");
  const uint64_t row_bytes = uint64_t(a.cols) * 4;
  require_bytes(a.x, row_bytes * a.rows, "x");
  require_bytes(a.weight, row_bytes, "weight");
  require_bytes(a.y, row_bytes * a.rows, "y");
  if (overlaps(a.x, a.y)) throw Error("rmsnorm: y must not overlap x");
  if (!(a.eps >= 0.0f)) throw Error("rmsnorm: eps must be >= 0");
  Device& dev = rec.device();
  const DeviceInfo& info = dev.info();
  if (a.rows > info.max_workgroup_count_x)
    throw Error("rmsnorm: " + std::to_string(a.rows) + " rows exceed the device's workgroup count limit; split the batch");
  const uint32_t wg = a.workgroup ? a.workgroup : row_workgroup(info);
  if ((a.cols + wg - 1) / wg > 32768)  // lavapipe silently cuts a loop after 65535 iterations
    throw Error("rmsnorm: " + std::to_string(a.cols) + " columns over " + std::to_string(wg) +
                " invocations exceed the loop budget of 32768 per invocation; use a wider workgroup");
  // Subgroup arithmetic only over whole subgroups: lavapipe sums a partial last subgroup wrongly.
  const bool subgroup = info.subgroup_arithmetic && !a.force_shared_reduction && wg % info.subgroup_size == 0;
  const Pipeline& pipe = dev.pipeline(subgroup ? "rmsnorm" : "rmsnorm_shared", {.constants = {{0, wg}}});
  struct {
    uint32_t cols;
    float eps;
  } push{a.cols, a.eps};
  const double R = a.rows, K = a.cols;
  rec.dispatch(pipe, {a.x, a.weight, a.y}, push, a.rows, 1, 1, {"", DispatchWork{.bytes = 2 * R * K * 4 + K * 4}});
}

}  // namespace ternvk::ops
