// Int8-weight GEMV / GEMM (shaders/int8_matmul.comp): y[t, n] (=|+=) scale[n] * sum_k q[n,k] x[t,k]
// with fp32 activations and accumulation. Runs the optional int8 output head (--head int8): the
// FP16 head quantized once at load, per row (scale = max|w| / 127, q = round(w / scale)), half the
// bytes of the FP16 head. The same rows serve the token embedding when the head is tied
// (record_embedding with EmbeddingTable::I8).
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk::ops {

// Row-wise int8 quantization of a matrix, on the host: what the GPU holds and the CPU references use.
struct Int8Rows {
  uint32_t rows = 0, cols = 0;
  std::vector<int8_t> q;      // [rows, cols], unpadded
  std::vector<float> scales;  // [rows]: w[n, k] ~ q[n, k] * scales[n]
};
// From fp16 bits (row-major [rows, cols]). Rows of zeros get scale 0.
Int8Rows quantize_rows_int8(std::span<const uint16_t> halves, uint32_t rows, uint32_t cols);

// [rows N, cols K] int8 on the device, rows padded to round_up(K, 16) with zeros (whole uvec4 per
// 16 weights), split into segments like the other matrices, plus one fp32 scale per row.
class Int8MatrixGpu {
 public:
  Int8MatrixGpu(Device& device, const Int8Rows& m, const std::string& name, uint64_t max_segment_bytes = 0);

  uint32_t rows() const { return rows_; }
  uint32_t cols() const { return cols_; }
  uint32_t padded_cols() const { return round_up(cols_, 16); }
  const std::vector<MatrixSegment>& segments() const { return segments_; }
  const Buffer& scales() const { return scales_; }  // fp32 [rows]
  const std::string& name() const { return name_; }
  uint64_t weight_bytes() const { return uint64_t(rows_) * padded_cols() + uint64_t(rows_) * 4; }
  // Everything the matrix allocates on the device: its segments and the row scales.
  static uint64_t device_bytes(uint32_t rows, uint32_t cols) {
    return uint64_t(rows) * round_up(cols, 16) + std::max<uint64_t>(uint64_t(rows) * 4, 16);
  }
  uint64_t device_bytes() const { return device_bytes(rows_, cols_); }

 private:
  std::string name_;
  uint32_t rows_ = 0;
  uint32_t cols_ = 0;
  std::vector<MatrixSegment> segments_;
  Buffer scales_;
};

struct Int8MatmulOptions {
  std::optional<MatmulShape> shape;    // overrides MatmulShape::pick (tests, benchmarks)
  MatmulLoad load = MatmulLoad::Auto;  // weights and activations as texel buffers
};

class Int8Matmul {
 public:
  explicit Int8Matmul(Device& device, Int8MatmulOptions options = {});

  // Records y = W x (or y += W x) for `tokens` rows of x (fp32 [tokens, w.cols()], w.cols() % 4 == 0,
  // 16-byte aligned), one dispatch per segment of w. y receives N = w.rows() columns per token.
  void record(Recording& rec, const Int8MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
              Epilogue epilogue = Epilogue::Store) const;

  MatmulShape shape_for(uint32_t tokens) const;
  bool uses_texel_loads() const { return texel_; }

 private:
  Device& device_;
  Int8MatmulOptions options_;
  bool texel_ = false;
};

}  // namespace ternvk::ops
