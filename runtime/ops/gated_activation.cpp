#include "runtime/ops/gated_activation.h"

#include <algorithm>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/ops/op_checks.h"

namespace ternvk::ops {
void record_gated_activation(Recording& rec, const GatedActivationArgs& a) {
  if (a.tokens == 0 || a.features == 0) throw Error("gated_activation: tokens and features must be positive");
  const uint64_t out_bytes = uint64_t(a.tokens) * a.features * 4;
  if (!a.gate_up.buffer || a.gate_up.size < 2 * out_bytes)
    throw Error("gated_activation: gate_up holds " + std::to_string(a.gate_up.size) + " bytes but [" +
                std::to_string(a.tokens) + ", 2 x " + std::to_string(a.features) + "] fp32 needs " +
                std::to_string(2 * out_bytes));
  if (!a.out.buffer || a.out.size < out_bytes)
    throw Error("gated_activation: out holds " + std::to_string(a.out.size) + " bytes but [" +
                std::to_string(a.tokens) + ", " + std::to_string(a.features) + "] fp32 needs " +
                std::to_string(out_bytes));
  if (overlaps(a.gate_up, a.out)) throw Error("gated_activation: out must not overlap gate_up");
  if (a.tokens > 65535) throw Error("gated_activation: more than 65535 tokens in one dispatch; split the batch");
  Device& dev = rec.device();
  const uint32_t wg = a.workgroup ? a.workgroup : elementwise_workgroup(dev.info());
  const Pipeline& pipe =
      dev.pipeline("gated_activation", {.constants = {{0, wg}, {1, static_cast<uint32_t>(a.gating)}}});
  const double T = a.tokens, F = a.features;
  rec.dispatch(pipe, {a.gate_up, a.out}, a.features, (a.features + wg - 1) / wg, a.tokens, 1,
               {"", DispatchWork{.bytes = T * 2 * F * 4 + T * F * 4}});
}

}  // namespace ternvk::ops
