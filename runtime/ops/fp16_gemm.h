// The FP16-weight tiled GEMM (shaders/fp16_gemm.comp; shapes in ternary_gemm.h): Fp16Matmul::record
// checks the arguments and delegates here for many tokens.
#pragma once
#include <cstdint>
#include <optional>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/ternary_gemm.h"

namespace ternvk::ops {

class Fp16MatrixGpu;

class Fp16Gemm {
 public:
  // `lanes`: the lanes per row of the GEMV this GEMM stands in for (its results equal that GEMV's
  // with a shuffle reduction); `shape` overrides GemmShape::pick_fp16 (tests, benchmarks).
  Fp16Gemm(Device& device, uint32_t lanes, std::optional<GemmShape> shape);

  GemmShape shape_for(uint32_t rows, uint32_t tokens) const;
  // y (row stride `y_stride` floats) = or += W x for `tokens` rows of x; arguments already checked.
  void record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
              uint32_t y_stride, Epilogue epilogue) const;

 private:
  Device& device_;
  uint32_t lanes_ = 1;
  std::optional<GemmShape> shape_;
};

}  // namespace ternvk::ops
