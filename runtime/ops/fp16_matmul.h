// FP16-weight GEMV / GEMM (shaders/fp16_matmul.comp): y[t, n] (=|+=) sum_k W[n,k] x[t,k] with fp32
// activations and accumulation. Runs the output head (the tied embedding, up to 128256 x 2560,
// larger than maxStorageBufferRange: split by rows into segments) and the FP16 baseline model.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/fp16_gemm.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk::ops {

// [rows N, cols K] fp16 on the device, rows padded to round_up(K, 8) with zeros (16-byte rows), split
// into segments that each fit maxStorageBufferRange and the texel-buffer limit (see TernaryMatrixGpu;
// or `max_segment_bytes` when smaller and non-zero).
class Fp16MatrixGpu {
 public:
  // `halves`: fp16 bits, row-major [rows, cols], unpadded.
  Fp16MatrixGpu(Device& device, std::span<const uint16_t> halves, uint32_t rows, uint32_t cols,
                const std::string& name, uint64_t max_segment_bytes = 0);

  uint32_t rows() const { return rows_; }
  uint32_t cols() const { return cols_; }
  uint32_t padded_cols() const { return round_up(cols_, 8); }
  const std::vector<MatrixSegment>& segments() const { return segments_; }
  const std::string& name() const { return name_; }
  uint64_t weight_bytes() const { return uint64_t(rows_) * padded_cols() * 2; }
  // Everything the matrix allocates on the device (its segments).
  static uint64_t device_bytes(uint32_t rows, uint32_t cols) { return uint64_t(rows) * round_up(cols, 8) * 2; }
  uint64_t device_bytes() const { return device_bytes(rows_, cols_); }

 private:
  std::string name_;
  uint32_t rows_ = 0;
  uint32_t cols_ = 0;
  std::vector<MatrixSegment> segments_;
};

struct Fp16MatmulOptions {
  std::optional<MatmulShape> shape;  // overrides MatmulShape::pick (tests, benchmarks)
  MatmulLoad load = MatmulLoad::Auto;  // weights (and 16-byte-aligned activations) as texel buffers
  MatmulKernel kernel = MatmulKernel::Auto;  // GEMV or tiled GEMM (fp16_gemm.h)
  std::optional<GemmShape> gemm_shape;       // overrides GemmShape::pick_fp16
  // The GEMM's multiply units. Vector by default: the matrix units (Auto, MatrixUnits) round the
  // activations to fp16 and add in their own order, so their results are not the GEMV's bits; a
  // matmul that records steps of several sequences must keep Vector (batched decode keeps each
  // sequence's bits), one that records prompt chunks alone may take them.
  GemmUnits gemm_units = GemmUnits::Vector;
};

class Fp16Matmul {
 public:
  explicit Fp16Matmul(Device& device, Fp16MatmulOptions options = {});

  // Records y = W x (or y += W x) for `tokens` rows of x (fp32 [tokens, w.cols()]), one dispatch
  // per segment of w. y receives N = w.rows() columns per token (see MatmulOutput). Many tokens may
  // take the tiled GEMM (options.kernel), whose sums equal the GEMV's with the same lanes reduced by
  // shuffles (the GPU shape), bit for bit; or, with options.gemm_units, the matrix units.
  void record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
              Epilogue epilogue = Epilogue::Store) const;

  MatmulShape shape_for(uint32_t tokens) const;
  bool uses_texel_loads() const { return texel_; }
  bool uses_gemm(uint32_t tokens) const {
    return use_gemm(options_.kernel, device_.info(), tokens, gemm_.uses_matrix_units());
  }
  const Fp16Gemm& gemm() const { return gemm_; }

 private:
  Device& device_;
  Fp16MatmulOptions options_;
  bool texel_ = false;
  Fp16Gemm gemm_;
};

}  // namespace ternvk::ops
