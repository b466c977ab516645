#include "runtime/ops/int8_matmul.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/error.h"
#include "runtime/core/half.h"

namespace ternvk::ops {

Int8Rows quantize_rows_int8(std::span<const uint16_t> halves, uint32_t rows, uint32_t cols) {
  if (halves.size() != uint64_t(rows) * cols)
    throw Error("int8 quantization: " + std::to_string(halves.size()) + " halves given for a " + std::to_string(rows) +
                " x " + std::to_string(cols) + " matrix");
  Int8Rows m;
  m.rows = rows;
  m.cols = cols;
  m.q.resize(halves.size());
  m.scales.resize(rows);
  std::vector<float> row(cols);
  for (uint32_t n = 0; n < rows; ++n) {
    float amax = 0;
    for (uint32_t k = 0; k < cols; ++k) {
      row[k] = half_to_float(halves[uint64_t(n) * cols + k]);
      if (!std::isfinite(row[k]))
        throw Error("int8 quantization: row " + std::to_string(n) + " holds a non-finite value at column " +
                    std::to_string(k));
      amax = std::max(amax, std::fabs(row[k]));
    }
    const float scale = amax / 127.0f;
    m.scales[n] = scale;
    for (uint32_t k = 0; k < cols; ++k)
      m.q[uint64_t(n) * cols + k] =
          scale == 0 ? 0 : int8_t(std::clamp(std::nearbyint(row[k] / scale), -127.0f, 127.0f));
  }
  return m;
}

Int8MatrixGpu::Int8MatrixGpu(Device& device, const Int8Rows& m, const std::string& name, uint64_t max_segment_bytes)
    : name_(name), rows_(m.rows), cols_(m.cols) {
  if (m.rows == 0 || m.cols == 0) throw Error(name + ": cannot upload an empty int8 matrix");
  if (m.q.size() != uint64_t(m.rows) * m.cols || m.scales.size() != m.rows)
    throw Error(name + ": the int8 matrix is inconsistent (" + std::to_string(m.rows) + " rows, " +
                std::to_string(m.q.size()) + " values, " + std::to_string(m.scales.size()) + " scales)");
  const uint32_t kp = padded_cols();
  const uint32_t per_segment = rows_per_segment(device, kp, max_segment_bytes, name);
  std::vector<int8_t> padded;
  for (uint32_t first = 0; first < m.rows; first += per_segment) {
    MatrixSegment s;
    s.first_row = first;
    s.rows = std::min(per_segment, m.rows - first);
    const uint64_t bytes = uint64_t(s.rows) * kp;
    s.weights = device.create_buffer(bytes, MemoryKind::DeviceLocal, name + " (int8 weights)");
    padded.assign(bytes, 0);
    for (uint32_t r = 0; r < s.rows; ++r)
      std::copy_n(m.q.data() + uint64_t(first + r) * m.cols, m.cols, padded.data() + uint64_t(r) * kp);
    device.upload(s.weights, padded.data(), bytes);
    segments_.push_back(std::move(s));
  }
  scales_ = device.create_buffer(uint64_t(m.rows) * 4, MemoryKind::DeviceLocal, name + " (row scales)");
  device.upload(scales_, m.scales.data(), uint64_t(m.rows) * 4);
}

Int8Matmul::Int8Matmul(Device& device, Int8MatmulOptions options) : device_(device), options_(options) {
  if (options.shape) options.shape->validate(device.info(), "int8 matmul");
  texel_ = use_texel_loads(device.info(), options.load, "int8 matmul");
}

MatmulShape Int8Matmul::shape_for(uint32_t tokens) const {
  if (options_.shape) return *options_.shape;
  // The FP16 tuning: like it, this kernel streams dense weights against float activations.
  return MatmulShape::pick(device_.info(), tokens, false);
}

void Int8Matmul::record(Recording& rec, const Int8MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
                        Epilogue epilogue) const {
  const std::string what = "int8 matmul of " + w.name();
  const uint32_t n = w.rows();
  const uint32_t k = w.cols();
  if (k % 4 != 0)
    throw Error(what + ": the int8 kernel reads activations as vec4 and needs a width divisible by 4, not " +
                std::to_string(k));
  const uint32_t stride = check_dense_matmul_io(what, n, k, x, tokens, y);
  const uint64_t x_bytes = uint64_t(tokens) * k * 4;
  if (x.offset % 16 != 0) throw Error(what + ": the input range must start at a multiple of 16 bytes");

  const MatmulShape shape = shape_for(tokens);
  const DeviceInfo& info = device_.info();
  // Texel loads need the activations' view aligned and within the texel limit; else storage loads.
  const bool texel = texel_ && x.offset % info.min_texel_buffer_offset_alignment == 0 &&
                     x_bytes / 16 <= info.max_texel_buffer_elements;
  const Pipeline& pipeline = device_.pipeline(texel ? "int8_matmul_texel" : "int8_matmul", shape.pipeline_options(epilogue));
  const BufferRange x_range = BufferRange{x.buffer, x.offset, x_bytes};
  struct {
    uint32_t cols, chunks, rows, row_base, tokens, y_stride, y_offset;
  } push{k, w.padded_cols() / 16, 0, 0, tokens, stride, y.offset};
  const uint32_t rpw = shape.rows_per_workgroup();
  const uint32_t token_groups = (tokens + shape.tokens - 1) / shape.tokens;
  for (const MatrixSegment& seg : w.segments()) {
    push.rows = seg.rows;
    push.row_base = seg.first_row;
    const DispatchWork work =
        matmul_work(seg.rows, w.padded_cols() + 4.0, k, tokens, k * 4.0, epilogue == Epilogue::Accumulate);
    rec.dispatch(pipeline, {seg.weights.range(), x_range, w.scales().range(), y.buffer}, push,
                 (seg.rows + rpw - 1) / rpw, token_groups, 1, {w.name(), work});
  }
}

}  // namespace ternvk::ops
