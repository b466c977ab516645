#include "runtime/ops/fp16_gemm.h"

#include <algorithm>

#include "runtime/ops/fp16_matmul.h"

namespace ternvk::ops {

Fp16Gemm::Fp16Gemm(Device& device, uint32_t lanes, std::optional<GemmShape> shape)
    : device_(device), lanes_(std::max(1u, lanes)), shape_(shape) {
  if (shape_) shape_->validate_fp16(device.info());
}

GemmShape Fp16Gemm::shape_for(uint32_t rows, uint32_t tokens) const {
  if (shape_) return *shape_;
  return GemmShape::pick_fp16(device_.info(), lanes_, rows, tokens);
}

void Fp16Gemm::record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
                      uint32_t y_stride, Epilogue epilogue) const {
  const GemmShape shape = shape_for(w.rows(), tokens);
  const uint32_t k = w.cols();
  // vec4 loads need 16-byte token rows (K % 4 == 0); Fp16Matmul::record checked the offset.
  const Pipeline& pipeline =
      device_.pipeline(k % 4 == 0 ? "fp16_gemm" : "fp16_gemm_xscalar", shape.pipeline_options(epilogue));
  struct {
    uint32_t cols, chunks, rows, row_base, tokens, y_stride, y_offset;
  } push{k, w.padded_cols() / 8, 0, 0, tokens, y_stride, y.offset};
  const uint32_t token_tiles = (tokens + shape.tile_tokens() - 1) / shape.tile_tokens();
  for (const MatrixSegment& seg : w.segments()) {
    push.rows = seg.rows;
    push.row_base = seg.first_row;
    const DispatchWork work =
        matmul_work(seg.rows, w.padded_cols() * 2.0, k, tokens, k * 4.0, epilogue == Epilogue::Accumulate);
    rec.dispatch(pipeline, {seg.weights.range(), x, y.buffer}, push,
                 (seg.rows + shape.tile_rows() - 1) / shape.tile_rows(), token_tiles, 1, {w.name(), work});
  }
}

}  // namespace ternvk::ops
