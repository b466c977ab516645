// Ternary weights in the packed 2-bit layout of docs/architecture.md (codes c = w + 1, 16 per
// uint32 word, rows padded to a multiple of 64 with code 1) on the CPU and on the GPU. Weights stay
// 2-bit everywhere: nothing here expands them to float.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/memory.h"

namespace ternvk::ops {

// [rows N, cols K] packed. Each row carries its own multiplier so that matrices which share an input
// (Q, K and V; gate and up) can be concatenated into one matrix and one dispatch.
struct PackedTernaryMatrix {
  uint32_t rows = 0;
  uint32_t cols = 0;
  std::vector<uint32_t> words;          // rows * words_per_row()
  std::vector<int32_t> row_code_sums;   // per row: sum of the codes over the padded row
  std::vector<float> row_scales;        // per row: effective weight = w * row_scales[n]

  uint32_t padded_cols() const { return (cols + 63) / 64 * 64; }
  uint32_t words_per_row() const { return padded_cols() / 16; }
  uint64_t row_bytes() const { return uint64_t(words_per_row()) * 4; }
};

// Packs row-major int8 values in {-1, 0, 1}. Throws ternvk::Error naming `what` on any other value,
// a size mismatch, or a scale that is not finite and > 0.
PackedTernaryMatrix pack_ternary(std::span<const int8_t> values, uint32_t rows, uint32_t cols, float scale,
                                 const std::string& what = "ternary matrix");
// The values back, row-major [rows, cols] (padding dropped).
std::vector<int8_t> unpack_ternary(const PackedTernaryMatrix& m);
// Stacks matrices with the same cols: rows of parts[0], then parts[1], ...
PackedTernaryMatrix concat_rows(std::span<const PackedTernaryMatrix> parts);

// One piece of a matrix split by rows (ternary or fp16): its own buffer of rows
// [first_row, first_row + rows).
struct MatrixSegment {
  Buffer weights;  // the rows, in the layout of the matrix they come from
  uint32_t first_row = 0;
  uint32_t rows = 0;
};

// A packed matrix resident on a device, split into segments that each fit maxStorageBufferRange and,
// where the device reads R32G32B32A32_UINT texel buffers, maxTexelBufferElements x 16 bytes (or
// `max_segment_bytes` when that is smaller and non-zero: tests force several segments). Segment
// buffers start at offset 0 and hold whole 16-byte rows, so they bind as storage or texel buffers.
class TernaryMatrixGpu {
 public:
  TernaryMatrixGpu(Device& device, const PackedTernaryMatrix& m, const std::string& name,
                   uint64_t max_segment_bytes = 0);

  uint32_t rows() const { return rows_; }
  uint32_t cols() const { return cols_; }
  uint32_t padded_cols() const { return (cols_ + 63) / 64 * 64; }
  uint32_t words_per_row() const { return padded_cols() / 16; }
  const std::vector<MatrixSegment>& segments() const { return segments_; }
  // {int32 row_code_sum, float scale} per row of the whole matrix, padded to a multiple of 16 bytes
  // (readable as a uvec4 texel buffer, two rows per texel).
  const Buffer& row_info() const { return row_info_; }
  const std::string& name() const { return name_; }
  uint64_t weight_bytes() const { return uint64_t(rows_) * words_per_row() * 4; }
  // Everything the matrix allocates on the device: its 2-bit rows and the row info (16-byte texels).
  static uint64_t device_bytes(uint32_t rows, uint32_t cols) {
    return uint64_t(rows) * ((cols + 63) / 64 * 16) + (uint64_t(rows) + 1) / 2 * 16;
  }
  uint64_t device_bytes() const { return device_bytes(rows_, cols_); }

 private:
  std::string name_;
  uint32_t rows_ = 0;
  uint32_t cols_ = 0;
  std::vector<MatrixSegment> segments_;
  Buffer row_info_;
};

// How many rows of `row_bytes` fit one segment on this device (shared by the fp16 matrices).
uint32_t rows_per_segment(const Device& device, uint64_t row_bytes, uint64_t max_segment_bytes,
                          const std::string& what);

}  // namespace ternvk::ops
