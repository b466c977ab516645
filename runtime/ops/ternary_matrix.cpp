#include "runtime/ops/ternary_matrix.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "runtime/core/error.h"

namespace ternvk::ops {
namespace {

// Bit position of element e (0..15) of a word: element 4i + b sits at bits 8b + 2i.
constexpr uint32_t bit_of(uint32_t e) { return 8 * (e & 3) + 2 * (e >> 2); }

}  // namespace

PackedTernaryMatrix pack_ternary(std::span<const int8_t> values, uint32_t rows, uint32_t cols, float scale,
                                 const std::string& what) {
  if (rows == 0 || cols == 0) throw Error(what + ": cannot pack an empty matrix (" + std::to_string(rows) + " x " +
                                          std::to_string(cols) + ")");
  if (values.size() != uint64_t(rows) * cols)
    throw Error(what + ": " + std::to_string(values.size()) + " values given for a " + std::to_string(rows) + " x " +
                std::to_string(cols) + " matrix");
  if (!std::isfinite(scale) || scale <= 0.0f)
    throw Error(what + ": the weight scale must be finite and > 0, got " + std::to_string(scale));
  PackedTernaryMatrix m;
  m.rows = rows;
  m.cols = cols;
  const uint32_t wpr = m.words_per_row();
  // Code 1 (weight 0) everywhere, padding included: 0x55555555 is code 1 in every 2-bit field.
  m.words.assign(uint64_t(rows) * wpr, 0x55555555u);
  m.row_code_sums.assign(rows, 0);
  m.row_scales.assign(rows, scale);
  // A word at a time in a register (loading a 2B model packs ~2.4G weights): every field starts as
  // code 1, and XOR with (code ^ 1) turns it into the code. Invalid values are found after the word.
  for (uint32_t n = 0; n < rows; ++n) {
    const int8_t* src = values.data() + uint64_t(n) * cols;
    uint32_t* dst = m.words.data() + uint64_t(n) * wpr;
    int32_t code_sum = static_cast<int32_t>(m.padded_cols() - cols);  // padding codes are 1
    for (uint32_t k0 = 0; k0 < cols; k0 += 16) {
      const uint32_t len = std::min(16u, cols - k0);
      uint32_t word = 0x55555555u, invalid = 0;
      for (uint32_t e = 0; e < len; ++e) {
        const uint32_t code = static_cast<uint8_t>(src[k0 + e] + 1);  // 0, 1, 2 for -1, 0, +1
        invalid |= code > 2 ? 1u : 0u;
        word ^= ((code ^ 1u) & 3u) << bit_of(e);
        code_sum += static_cast<int32_t>(code);
      }
      if (invalid) {
        for (uint32_t k = k0; k < k0 + len; ++k)
          if (src[k] < -1 || src[k] > 1)
            throw Error(what + ": value " + std::to_string(int(src[k])) + " at row " + std::to_string(n) +
                        ", column " + std::to_string(k) + " is not ternary (-1, 0 or 1)");
      }
      dst[k0 >> 4] = word;
    }
    m.row_code_sums[n] = code_sum;
  }
  return m;
}

std::vector<int8_t> unpack_ternary(const PackedTernaryMatrix& m) {
  std::vector<int8_t> out(uint64_t(m.rows) * m.cols);
  const uint32_t wpr = m.words_per_row();
  for (uint32_t n = 0; n < m.rows; ++n)
    for (uint32_t k = 0; k < m.cols; ++k) {
      const uint32_t word = m.words[uint64_t(n) * wpr + (k >> 4)];
      out[uint64_t(n) * m.cols + k] = static_cast<int8_t>(static_cast<int>((word >> bit_of(k & 15)) & 3u) - 1);
    }
  return out;
}

PackedTernaryMatrix concat_rows(std::span<const PackedTernaryMatrix> parts) {
  if (parts.empty()) throw Error("concat_rows: no matrices given");
  PackedTernaryMatrix out;
  out.cols = parts[0].cols;
  for (const auto& p : parts) {
    if (p.cols != out.cols)
      throw Error("concat_rows: matrices of " + std::to_string(out.cols) + " and " + std::to_string(p.cols) +
                  " columns cannot share an input");
    out.rows += p.rows;
    out.words.insert(out.words.end(), p.words.begin(), p.words.end());
    out.row_code_sums.insert(out.row_code_sums.end(), p.row_code_sums.begin(), p.row_code_sums.end());
    out.row_scales.insert(out.row_scales.end(), p.row_scales.begin(), p.row_scales.end());
  }
  return out;
}

uint32_t rows_per_segment(const Device& device, uint64_t row_bytes, uint64_t max_segment_bytes,
                          const std::string& what) {
  const DeviceInfo& info = device.info();
  uint64_t limit = info.max_storage_buffer_range;
  // A segment must also fit one texel-buffer view where the matmuls may read it that way.
  if (info.texel_buffer_uint4) limit = std::min(limit, uint64_t(info.max_texel_buffer_elements) * 16);
  if (max_segment_bytes != 0) limit = std::min(limit, max_segment_bytes);
  const uint64_t rows = limit / row_bytes;
  if (rows == 0)
    throw Error(what + ": one row takes " + std::to_string(row_bytes) + " bytes, more than a segment may hold (" +
                std::to_string(limit) + " bytes: maxStorageBufferRange, maxTexelBufferElements x 16 or the " +
                "requested segment limit)");
  return static_cast<uint32_t>(std::min<uint64_t>(rows, UINT32_MAX));
}

TernaryMatrixGpu::TernaryMatrixGpu(Device& device, const PackedTernaryMatrix& m, const std::string& name,
                                   uint64_t max_segment_bytes)
    : name_(name), rows_(m.rows), cols_(m.cols) {
  const uint32_t wpr = m.words_per_row();
  if (m.rows == 0 || m.words.size() != uint64_t(m.rows) * wpr || m.row_code_sums.size() != m.rows ||
      m.row_scales.size() != m.rows)
    throw Error(name + ": the packed matrix is inconsistent (" + std::to_string(m.rows) + " rows, " +
                std::to_string(m.words.size()) + " words)");
  const uint32_t per_segment = rows_per_segment(device, m.row_bytes(), max_segment_bytes, name);
  for (uint32_t first = 0; first < m.rows; first += per_segment) {
    MatrixSegment s;
    s.first_row = first;
    s.rows = std::min(per_segment, m.rows - first);
    const uint64_t bytes = uint64_t(s.rows) * wpr * 4;
    s.weights = device.create_buffer(bytes, MemoryKind::DeviceLocal, name + " (ternary weights)");
    device.upload(s.weights, m.words.data() + uint64_t(first) * wpr, bytes);
    segments_.push_back(std::move(s));
  }
  // Padded to whole 16-byte texels (an even number of rows) so that it can also be a texel buffer.
  std::vector<uint32_t> info((uint64_t(m.rows) + 1) / 2 * 4, 0);
  for (uint32_t n = 0; n < m.rows; ++n) {
    info[2 * n] = static_cast<uint32_t>(m.row_code_sums[n]);
    info[2 * n + 1] = std::bit_cast<uint32_t>(m.row_scales[n]);
  }
  row_info_ = device.create_buffer(info.size() * 4, MemoryKind::DeviceLocal, name + " (row sums and scales)");
  device.upload(row_info_, info.data(), info.size() * 4);
}

}  // namespace ternvk::ops
