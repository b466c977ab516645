// RMSNorm over fp32 rows (the final norm before the head; the norm fused with int8 quantization
// lives in its own op): y[t, :] = x[t, :] * inversesqrt(mean(x[t, :]^2) + eps) * weight.
#pragma once
#include <cstdint>

#include "runtime/device/memory.h"
#include "runtime/device/recording.h"

namespace ternvk::ops {

struct RmsNormArgs {
  BufferRange x;       // fp32 [rows, cols]
  BufferRange weight;  // fp32 [cols]
  BufferRange y;       // fp32 [rows, cols], must not overlap x
  uint32_t rows = 0;   // tokens
  uint32_t cols = 0;   // hidden size
  float eps = 1e-5f;
  // Tuning for tests and benchmarks; 0 / unset picks from DeviceInfo.
  uint32_t workgroup = 0;
  bool force_shared_reduction = false;  // use the variant without subgroup arithmetic
};

// One workgroup per row. Throws ternvk::Error when a buffer is smaller than the shape needs.
void record_rmsnorm(Recording& rec, const RmsNormArgs& args);

}  // namespace ternvk::ops
