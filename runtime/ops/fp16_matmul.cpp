#include "runtime/ops/fp16_matmul.h"

#include <algorithm>
#include <cstring>

#include "runtime/core/error.h"

namespace ternvk::ops {

Fp16MatrixGpu::Fp16MatrixGpu(Device& device, std::span<const uint16_t> halves, uint32_t rows, uint32_t cols,
                             const std::string& name, uint64_t max_segment_bytes)
    : name_(name), rows_(rows), cols_(cols) {
  if (rows == 0 || cols == 0) throw Error(name + ": cannot upload an empty fp16 matrix");
  if (halves.size() != uint64_t(rows) * cols)
    throw Error(name + ": " + std::to_string(halves.size()) + " halves given for a " + std::to_string(rows) + " x " +
                std::to_string(cols) + " matrix");
  const uint32_t kp = padded_cols();
  const uint32_t per_segment = rows_per_segment(device, uint64_t(kp) * 2, max_segment_bytes, name);
  std::vector<uint16_t> padded;
  for (uint32_t first = 0; first < rows; first += per_segment) {
    MatrixSegment s;
    s.first_row = first;
    s.rows = std::min(per_segment, rows - first);
    const uint64_t bytes = uint64_t(s.rows) * kp * 2;
    s.weights = device.create_buffer(bytes, MemoryKind::DeviceLocal, name + " (fp16 weights)");
    const uint16_t* src = halves.data() + uint64_t(first) * cols;
    if (kp == cols) {
      device.upload(s.weights, src, bytes);
    } else {
      padded.assign(uint64_t(s.rows) * kp, 0);
      for (uint32_t r = 0; r < s.rows; ++r)
        std::memcpy(padded.data() + uint64_t(r) * kp, src + uint64_t(r) * cols, uint64_t(cols) * 2);
      device.upload(s.weights, padded.data(), bytes);
    }
    segments_.push_back(std::move(s));
  }
}

namespace {

// The lanes per row of the GEMV that the GEMM stands in for: its K split (see fp16_gemm.comp).
uint32_t gemv_lanes(const DeviceInfo& info, const Fp16MatmulOptions& options) {
  if (options.shape) return options.shape->lanes;
  if (!info.subgroup_arithmetic || !info.subgroup_shuffle) return 1;  // no GEMV here; record says why
  return float_row_lanes(info);
}

}  // namespace

Fp16Matmul::Fp16Matmul(Device& device, Fp16MatmulOptions options)
    : device_(device), options_(options), gemm_(device, gemv_lanes(device.info(), options), options.gemm_shape, options.gemm_units) {
  if (options.shape) options.shape->validate(device.info(), "fp16 matmul");
  texel_ = use_texel_loads(device.info(), options.load, "fp16 matmul");
}

MatmulShape Fp16Matmul::shape_for(uint32_t tokens) const {
  if (options_.shape) return *options_.shape;
  return MatmulShape::pick(device_.info(), tokens, false);
}

void Fp16Matmul::record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
                        Epilogue epilogue) const {
  const std::string what = "fp16 matmul of " + w.name();
  const uint32_t n = w.rows();
  const uint32_t k = w.cols();
  const uint32_t stride = check_dense_matmul_io(what, n, k, x, tokens, y);
  if (x.offset % 16 != 0 && k % 4 == 0)
    throw Error(what + ": the input range must start at a multiple of 16 bytes");
  if (uses_gemm(tokens)) return gemm_.record(rec, w, x, tokens, y, stride, epilogue);

  const MatmulShape shape = shape_for(tokens);
  PipelineOptions po = shape.pipeline_options(epilogue);
  // vec4 activation loads need every token row to start on 16 bytes. With texel loads the
  // activations are a texel buffer too when that holds and the offset suits a texel view; the
  // weights always are (segments start at 0 and hold 16-byte rows).
  const DeviceInfo& info = device_.info();
  const uint64_t x_bytes = uint64_t(tokens) * k * 4;
  const bool x_vec4 = k % 4 == 0;
  const bool x_texel = texel_ && x_vec4 && x.offset % info.min_texel_buffer_offset_alignment == 0 &&
                       x_bytes / 16 <= info.max_texel_buffer_elements;
  // (vec4 activations that cannot be a texel view, e.g. a stricter offset alignment: storage path)
  const char* shader = x_texel  ? "fp16_matmul_texel"
                       : x_vec4 ? "fp16_matmul"
                       : texel_ ? "fp16_matmul_xscalar_texel"
                                : "fp16_matmul_xscalar";
  const Pipeline& pipeline = device_.pipeline(shader, po);
  const BufferRange x_range = x_texel ? BufferRange{x.buffer, x.offset, x_bytes} : x;
  struct {
    uint32_t cols, chunks, rows, row_base, tokens, y_stride, y_offset;
  } push{k, w.padded_cols() / 8, 0, 0, tokens, stride, y.offset};
  const uint32_t rpw = shape.rows_per_workgroup();
  const uint32_t token_groups = (tokens + shape.tokens - 1) / shape.tokens;
  for (const MatrixSegment& seg : w.segments()) {
    push.rows = seg.rows;
    push.row_base = seg.first_row;
    const DispatchWork work =
        matmul_work(seg.rows, w.padded_cols() * 2.0, k, tokens, k * 4.0, epilogue == Epilogue::Accumulate);
    rec.dispatch(pipeline, {seg.weights.range(), x_range, y.buffer}, push, (seg.rows + rpw - 1) / rpw, token_groups, 1,
                 {w.name(), work});
  }
}

}  // namespace ternvk::ops
