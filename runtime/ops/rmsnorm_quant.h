// RMSNorm fused with per-token int8 absmax quantization (shaders/rmsnorm_quant.comp), one dispatch
// for all tokens: the input of every BitLinear in BitNet. Writes QuantizedActivations exactly as
// docs/architecture.md defines them (roundEven, s = max(max|v|, 1e-5) / 127, zero padding, sum_q).
#pragma once
#include <cstdint>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/quantized_activations.h"

namespace ternvk::ops {

class RmsNormQuant {
 public:
  // `workgroup` 0 picks from the device: its subgroup size where the widest subgroup is <= 8
  // invocations (CPU devices: no barrier switches), else 256.
  explicit RmsNormQuant(Device& device, uint32_t workgroup = 0);

  // out <- quantize(x * inversesqrt(mean(x^2) + eps) * norm_weight); x fp32 [tokens, out.cols],
  // norm_weight fp32 [out.cols].
  void record(Recording& rec, BufferRange x, BufferRange norm_weight, float eps, uint32_t tokens,
              const QuantizedActivations& out) const;
  // out <- quantize(x), without the norm.
  void record_quantize(Recording& rec, BufferRange x, uint32_t tokens, const QuantizedActivations& out) const;

  uint32_t workgroup() const { return workgroup_; }

 private:
  void record_impl(Recording& rec, BufferRange x, const BufferRange* norm_weight, float eps, uint32_t tokens,
                   const QuantizedActivations& out) const;
  Device& device_;
  uint32_t workgroup_ = 0;
};

}  // namespace ternvk::ops
