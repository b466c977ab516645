// RMSNorm fused with per-token int8 absmax quantization (shaders/rmsnorm_quant.comp), one dispatch
// for all tokens: the input of every BitLinear in BitNet. Writes QuantizedActivations exactly as
// docs/architecture.md defines them (roundEven, s = max(max|v|, 1e-5) / 127, zero padding, sum_q).
// On CPU devices (prefers_texel_loads) the input and the norm weight are read as texel buffers, four
// floats a fetch, where K % 4 == 0 and the ranges suit a texel view; else as storage buffers.
#pragma once
#include <cstdint>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/gated_activation.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/ternary_matmul.h"

namespace ternvk::ops {

class RmsNormQuant {
 public:
  // `workgroup` 0 picks from the device: its subgroup size where the widest subgroup is <= 8
  // invocations (CPU devices: no barrier switches), else 256. `load` as for the matmuls
  // (MatmulLoad::Auto: texel loads where prefers_texel_loads()).
  explicit RmsNormQuant(Device& device, uint32_t workgroup = 0, MatmulLoad load = MatmulLoad::Auto);

  // out <- quantize(x * inversesqrt(mean(x^2) + eps) * norm_weight); x fp32 [tokens, out.cols],
  // norm_weight fp32 [out.cols].
  void record(Recording& rec, BufferRange x, BufferRange norm_weight, float eps, uint32_t tokens,
              const QuantizedActivations& out) const;
  // The FFN's gated activation fused in front of the norm (one dispatch instead of two, no
  // [tokens, F] fp32 round trip): v = act(g) * u as record_gated_activation computes it, from
  // gate_up fp32 [tokens, 2 * out.cols] (gate columns, then up columns), then as record().
  void record_gated(Recording& rec, BufferRange gate_up, Gating gating, BufferRange norm_weight, float eps,
                    uint32_t tokens, const QuantizedActivations& out) const;
  // out <- quantize(x), without the norm.
  void record_quantize(Recording& rec, BufferRange x, uint32_t tokens, const QuantizedActivations& out) const;

  uint32_t workgroup() const { return workgroup_; }
  bool uses_texel_loads() const { return texel_; }

 private:
  void record_impl(Recording& rec, BufferRange x, const BufferRange* norm_weight, float eps, uint32_t tokens,
                   uint32_t gating, const QuantizedActivations& out) const;
  Device& device_;
  uint32_t workgroup_ = 0;
  bool texel_ = false;
};

}  // namespace ternvk::ops
