#include "runtime/ops/residual_add.h"

#include <algorithm>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/ops/op_checks.h"

namespace ternvk::ops {
void record_residual_add(Recording& rec, const ResidualAddArgs& a) {
  if (a.count == 0) throw Error("residual_add: count must be positive");
  const uint64_t bytes = uint64_t(a.count) * 4;
  if (!a.x.buffer || a.x.size < bytes)
    throw Error("residual_add: x holds " + std::to_string(a.x.size) + " bytes, " + std::to_string(a.count) +
                " floats need " + std::to_string(bytes));
  if (!a.y.buffer || a.y.size < bytes)
    throw Error("residual_add: y holds " + std::to_string(a.y.size) + " bytes, " + std::to_string(a.count) +
                " floats need " + std::to_string(bytes));
  if (overlaps(a.x, a.y)) throw Error("residual_add: x and y must not overlap");
  Device& dev = rec.device();
  const DeviceInfo& info = dev.info();
  const uint32_t wg = a.workgroup ? a.workgroup : elementwise_workgroup(info);
  // A 2-D grid: the x dimension alone may not hold count / wg workgroups.
  const uint64_t groups = (uint64_t(a.count) + wg - 1) / wg;
  const uint32_t gx = uint32_t(std::min<uint64_t>(groups, std::min(info.max_workgroup_count_x, 65535u)));
  const uint32_t gy = uint32_t((groups + gx - 1) / gx);
  const Pipeline& pipe = dev.pipeline("residual_add", {.constants = {{0, wg}}});
  rec.dispatch(pipe, {a.x, a.y}, a.count, gx, gy, 1, {"", DispatchWork{.bytes = 3.0 * a.count * 4}});
}

}  // namespace ternvk::ops
