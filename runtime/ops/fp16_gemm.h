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
  // with a shuffle reduction); `shape` overrides GemmShape::pick_fp16 (tests, benchmarks). `units`:
  // Auto or MatrixUnits put matrices with K % 4 == 0 on the matrix units (matrix_unit_gemm.h), whose
  // results are not the GEMV's bits; a shape given with Auto means the tiled kernel.
  Fp16Gemm(Device& device, uint32_t lanes, std::optional<GemmShape> shape, GemmUnits units = GemmUnits::Vector);

  GemmShape shape_for(uint32_t rows, uint32_t tokens) const;
  // y (row stride `y_stride` floats) = or += W x for `tokens` rows of x; arguments already checked.
  void record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
              uint32_t y_stride, Epilogue epilogue) const;
  bool uses_matrix_units() const { return matrix_units_; }

 private:
  Device& device_;
  uint32_t lanes_ = 1;
  std::optional<GemmShape> shape_;
  bool matrix_units_ = false;
};

// The dispatches of an FP16 GEMM kernel (fp16_gemm.comp, gemm_matrix_unit.comp: the same bindings and
// push constants): one per segment of w, tiles of tile_rows x tile_tokens.
void record_fp16_gemm_dispatches(Recording& rec, const Pipeline& pipeline, const Fp16MatrixGpu& w, BufferRange x,
                                 uint32_t tokens, const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue,
                                 uint32_t tile_rows, uint32_t tile_tokens);

}  // namespace ternvk::ops
