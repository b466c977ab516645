#include "runtime/ops/fp16_gemm.h"

#include <algorithm>

#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/matrix_unit_gemm.h"

namespace ternvk::ops {

Fp16Gemm::Fp16Gemm(Device& device, uint32_t lanes, std::optional<GemmShape> shape, GemmUnits units)
    : device_(device), lanes_(std::max(1u, lanes)), shape_(shape) {
  if (shape_) shape_->validate_fp16(device.info());
  matrix_units_ = !(shape_ && units == GemmUnits::Auto) && use_matrix_units(units, device, MatrixUnitOperands::Fp16);
}

GemmShape Fp16Gemm::shape_for(uint32_t rows, uint32_t tokens) const {
  if (shape_) return *shape_;
  return GemmShape::pick_fp16(device_.info(), lanes_, rows, tokens);
}

void Fp16Gemm::record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
                      uint32_t y_stride, Epilogue epilogue) const {
  const uint32_t k = w.cols();
  // (Fp16Matmul::record checked that x starts at a multiple of 16 bytes where K % 4 == 0.)
  if (matrix_units_ && k % 4 == 0) return MatrixUnitGemm(device_).record(rec, w, x, tokens, y, y_stride, epilogue);
  const GemmShape shape = shape_for(w.rows(), tokens);
  // vec4 loads need 16-byte token rows (K % 4 == 0).
  const Pipeline& pipeline =
      device_.pipeline(k % 4 == 0 ? "fp16_gemm" : "fp16_gemm_xscalar", shape.pipeline_options(epilogue));
  record_fp16_gemm_dispatches(rec, pipeline, w, x, tokens, y, y_stride, epilogue, shape.tile_rows(), shape.tile_tokens());
}

void record_fp16_gemm_dispatches(Recording& rec, const Pipeline& pipeline, const Fp16MatrixGpu& w, BufferRange x,
                                 uint32_t tokens, const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue,
                                 uint32_t tile_rows, uint32_t tile_tokens) {
  const uint32_t k = w.cols();
  struct {
    uint32_t cols, chunks, rows, row_base, tokens, y_stride, y_offset;
  } push{k, w.padded_cols() / 8, 0, 0, tokens, y_stride, y.offset};
  const uint32_t token_tiles = (tokens + tile_tokens - 1) / tile_tokens;
  for (const MatrixSegment& seg : w.segments()) {
    push.rows = seg.rows;
    push.row_base = seg.first_row;
    const DispatchWork work =
        matmul_work(seg.rows, w.padded_cols() * 2.0, k, tokens, k * 4.0, epilogue == Epilogue::Accumulate);
    rec.dispatch(pipeline, {seg.weights.range(), x, y.buffer}, push, (seg.rows + tile_rows - 1) / tile_rows,
                 token_tiles, 1, {w.name(), work});
  }
}

}  // namespace ternvk::ops
