#include "runtime/formats/ternary_encode.h"

#include <cstring>

#include "runtime/core/error.h"
#include "runtime/core/half.h"

namespace ternvk {

namespace {

void check_matrix(const TernaryMatrix& m, const char* layout) {
  if (m.rows < 0 || m.cols < 0 ||
      m.values.size() != static_cast<uint64_t>(m.rows) * static_cast<uint64_t>(m.cols)) {
    throw Error(std::string(layout) + " encoder: matrix " + std::to_string(m.rows) + "x" +
                std::to_string(m.cols) + " has " + std::to_string(m.values.size()) + " values");
  }
  for (size_t i = 0; i < m.values.size(); ++i) {
    if (m.values[i] < -1 || m.values[i] > 1) {
      throw Error(std::string(layout) + " encoder: value " + std::to_string(i) + " is " +
                  std::to_string(m.values[i]) + ", not ternary");
    }
  }
}

void require_cols_multiple(const TernaryMatrix& m, const char* layout, int64_t block) {
  if (m.cols % block != 0) {
    throw Error(std::string(layout) + " encoder: row length " + std::to_string(m.cols) +
                " is not a multiple of " + std::to_string(block));
  }
}

void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Base-3 digits, first most significant, scaled by 256/243 rounding up so that the decoder's
// multiply-by-3^k trick recovers each digit (llama.cpp quantize_row_tq1_0_ref).
uint8_t pack_trits(const int8_t* v, int count, int stride) {
  uint16_t q = 0;
  for (int k = 0; k < count; ++k) q = static_cast<uint16_t>(q * 3 + (v[k * stride] + 1));
  for (int k = count; k < 5; ++k) q = static_cast<uint16_t>(q * 3);
  return static_cast<uint8_t>((q * 256 + 242) / 243);
}

}  // namespace

std::vector<uint8_t> encode_tq2_0(const TernaryMatrix& m) {
  check_matrix(m, "TQ2_0");
  require_cols_multiple(m, "TQ2_0", 256);
  const size_t blocks = m.values.size() / 256;
  std::vector<uint8_t> out(blocks * 66, 0);
  const uint16_t d = float_to_half(m.scale);
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* qs = out.data() + b * 66;
    const int8_t* v = m.values.data() + b * 256;
    for (int i = 0; i < 256; ++i) {
      const int g = i / 128, l = (i % 128) / 32, mm = i % 32;
      qs[g * 32 + mm] |= static_cast<uint8_t>((v[i] + 1) << (2 * l));
    }
    store_u16(qs + 64, d);
  }
  return out;
}

std::vector<uint8_t> encode_tq1_0(const TernaryMatrix& m) {
  check_matrix(m, "TQ1_0");
  require_cols_multiple(m, "TQ1_0", 256);
  const size_t blocks = m.values.size() / 256;
  std::vector<uint8_t> out(blocks * 54, 0);
  const uint16_t d = float_to_half(m.scale);
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* qs = out.data() + b * 54;
    const int8_t* v = m.values.data() + b * 256;
    for (int mm = 0; mm < 32; ++mm) qs[mm] = pack_trits(v + mm, 5, 32);
    for (int mm = 0; mm < 16; ++mm) qs[32 + mm] = pack_trits(v + 160 + mm, 5, 16);
    for (int j = 0; j < 4; ++j) qs[48 + j] = pack_trits(v + 240 + j, 4, 4);
    store_u16(qs + 52, d);
  }
  return out;
}

std::vector<uint8_t> encode_i2_s(const TernaryMatrix& m) {
  check_matrix(m, "I2_S");
  const size_t n = m.values.size();
  if (n % 128 != 0) {
    throw Error("I2_S encoder: " + std::to_string(n) + " values is not a multiple of 128");
  }
  std::vector<uint8_t> out(n / 4 + 32, 0);
  for (size_t i = 0; i < n; ++i) {
    const size_t block = i / 128, j = i % 128;
    out[block * 32 + j % 32] |= static_cast<uint8_t>((m.values[i] + 1) << (6 - 2 * (j / 32)));
  }
  std::memcpy(out.data() + n / 4, &m.scale, 4);
  return out;
}

std::vector<uint8_t> pack_hf_ternary(const TernaryMatrix& m) {
  check_matrix(m, "HF packed");
  if (m.rows % 4 != 0) {
    throw Error("HF packed encoder: " + std::to_string(m.rows) + " rows is not a multiple of 4");
  }
  const size_t quarter = static_cast<size_t>(m.rows / 4), cols = static_cast<size_t>(m.cols);
  std::vector<uint8_t> out(quarter * cols, 0);
  for (size_t r = 0; r < static_cast<size_t>(m.rows); ++r) {
    for (size_t c = 0; c < cols; ++c) {
      out[(r % quarter) * cols + c] |=
          static_cast<uint8_t>((m.values[r * cols + c] + 1) << (2 * (r / quarter)));
    }
  }
  return out;
}

}  // namespace ternvk
