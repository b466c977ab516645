#include "runtime/formats/ternary_decode.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "runtime/core/error.h"
#include "runtime/core/half.h"

namespace ternvk {

namespace {

constexpr uint64_t kTqBlock = 256;
constexpr uint64_t kTq2BlockBytes = 64 + 2;
constexpr uint64_t kTq1BlockBytes = 48 + 4 + 2;
constexpr uint64_t kI2sBlock = 128;
// fp16 keeps 11 significant bits; scales rounded from one float agree far closer than this.
constexpr float kBlockScaleTolerance = 1e-3f;
constexpr float kFloatTernaryTolerance = 1e-3f;

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void require_size(const RawTensor& t, const char* layout, uint64_t expected) {
  if (t.bytes.size() != expected) {
    throw Error(t.where + ": " + layout + " data of " + std::to_string(t.rows) + "x" +
                std::to_string(t.cols) + " needs " + std::to_string(expected) + " bytes, found " +
                std::to_string(t.bytes.size()));
  }
}

void require_positive_scale(const RawTensor& t, float scale, const std::string& what) {
  if (!std::isfinite(scale) || scale <= 0.0f) {
    throw Error(t.where + ": " + what + " is " + fmt(scale) + ", expected a finite value > 0");
  }
}

TernaryMatrix make_matrix(int64_t rows, int64_t cols, uint64_t n) {
  TernaryMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.values.resize(n);
  return m;
}

// TQ1_0/TQ2_0 store a scale per block; BitNet tensors have ONE scale, so every block holding a
// non-zero value must carry (nearly) the same d. All-zero blocks may carry anything (llama.cpp
// writes d = 0 there).
class BlockScaleAgreement {
 public:
  BlockScaleAgreement(const RawTensor& t, const char* layout) : t_(t), layout_(layout) {}

  void add(uint64_t block, float d, bool block_has_nonzero) {
    if (!block_has_nonzero) return;
    require_positive_scale(t_, d, std::string(layout_) + " block " + std::to_string(block) + " scale d");
    if (!reference_) {
      reference_ = d;
      reference_block_ = block;
      return;
    }
    if (std::fabs(d - *reference_) > kBlockScaleTolerance * *reference_) {
      throw Error(t_.where + ": " + layout_ + " block " + std::to_string(block) + " has scale " +
                  fmt(d) + " but block " + std::to_string(reference_block_) + " has " +
                  fmt(*reference_) +
                  "; a BitNet tensor has one scale, so this is not a BitNet ternary weight");
    }
  }
  float scale() const { return reference_.value_or(1.0f); }  // all-zero tensor: any scale works

 private:
  const RawTensor& t_;
  const char* layout_;
  std::optional<float> reference_;
  uint64_t reference_block_ = 0;
};

void require_block_multiple(const RawTensor& t, const char* layout, uint64_t block) {
  if (t.cols % static_cast<int64_t>(block) != 0) {
    throw Error(t.where + ": " + layout + " row length " + std::to_string(t.cols) +
                " is not a multiple of the block size " + std::to_string(block));
  }
}

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

}  // namespace

std::vector<float> dequantize(const TernaryMatrix& m) {
  std::vector<float> out(m.values.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(m.values[i]) * m.scale;
  return out;
}

TernaryMatrix decode_tq2_0(const RawTensor& t) {
  const uint64_t n = t.n_elements();
  require_block_multiple(t, "TQ2_0", kTqBlock);
  const uint64_t blocks = n / kTqBlock;
  require_size(t, "TQ2_0", blocks * kTq2BlockBytes);
  TernaryMatrix m = make_matrix(t.rows, t.cols, n);
  BlockScaleAgreement scales(t, "TQ2_0");
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint8_t* qs = t.bytes.data() + b * kTq2BlockBytes;
    int8_t* out = m.values.data() + b * kTqBlock;
    // Element i: byte g*32 + m of group g = i/128, bit pair l = (i%128)/32, m = i%32. (A bit pair
    // at a time, so the loop vectorizes; code 3 is looked for after the block.)
    uint8_t invalid = 0, nonzero_codes = 0;
    for (uint32_t g = 0; g < kTqBlock / 128; ++g)
      for (uint32_t l = 0; l < 4; ++l)
        for (uint32_t mm = 0; mm < 32; ++mm) {
          const uint8_t code = (qs[g * 32 + mm] >> (2 * l)) & 3;
          invalid |= code == 3;
          nonzero_codes |= code != 1;
          out[g * 128 + l * 32 + mm] = static_cast<int8_t>(code - 1);
        }
    if (invalid) {
      for (uint64_t i = 0; i < kTqBlock; ++i)
        if (out[i] == 2)
          throw Error(t.where + ": TQ2_0 block " + std::to_string(b) + " element " + std::to_string(i) +
                      " has code 3, which no ternary writer produces");
    }
    const bool nonzero = nonzero_codes != 0;
    scales.add(b, half_to_float(load_u16(qs + 64)), nonzero);
  }
  m.scale = scales.scale();
  return m;
}

TernaryMatrix decode_tq1_0(const RawTensor& t) {
  const uint64_t n = t.n_elements();
  require_block_multiple(t, "TQ1_0", kTqBlock);
  const uint64_t blocks = n / kTqBlock;
  require_size(t, "TQ1_0", blocks * kTq1BlockBytes);
  TernaryMatrix m = make_matrix(t.rows, t.cols, n);
  BlockScaleAgreement scales(t, "TQ1_0");
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  // Trit k of a byte (k = 0 most significant): the byte is a base-3 fraction scaled to 256, so
  // multiplying by 3^k (mod 256) shifts trit k to the top, and *3 >> 8 reads it.
  auto trit = [](uint8_t byte, int k) {
    const uint8_t q = static_cast<uint8_t>(byte * kPow3[k]);
    return static_cast<int8_t>(((static_cast<uint16_t>(q) * 3) >> 8) - 1);
  };
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint8_t* qs = t.bytes.data() + b * kTq1BlockBytes;
    const uint8_t* qh = qs + 48;
    int8_t* out = m.values.data() + b * kTqBlock;
    for (int mm = 0; mm < 32; ++mm) {
      for (int k = 0; k < 5; ++k) out[k * 32 + mm] = trit(qs[mm], k);
    }
    for (int mm = 0; mm < 16; ++mm) {
      for (int k = 0; k < 5; ++k) out[160 + k * 16 + mm] = trit(qs[32 + mm], k);
    }
    for (int j = 0; j < 4; ++j) {
      for (int k = 0; k < 4; ++k) out[240 + k * 4 + j] = trit(qh[j], k);
    }
    bool nonzero = false;
    for (uint64_t i = 0; i < kTqBlock; ++i) nonzero |= out[i] != 0;
    scales.add(b, half_to_float(load_u16(qs + 52)), nonzero);
  }
  m.scale = scales.scale();
  return m;
}

TernaryMatrix decode_i2_s(const RawTensor& t) {
  const uint64_t n = t.n_elements();
  if (n % kI2sBlock != 0) {
    throw Error(t.where + ": I2_S needs a multiple of 128 values, the tensor has " +
                std::to_string(n) + " (" + std::to_string(t.rows) + "x" + std::to_string(t.cols) + ")");
  }
  require_size(t, "I2_S", n / 4 + 32);
  TernaryMatrix m = make_matrix(t.rows, t.cols, n);
  const uint8_t* p = t.bytes.data();
  for (uint64_t block = 0; block < n / kI2sBlock; ++block) {
    const uint8_t* bytes = p + block * 32;
    int8_t* out = m.values.data() + block * kI2sBlock;
    // Value j sits in byte j % 32 at shift 6 - 2*(j / 32): the 4 quarters of a block share bytes.
    // (A quarter at a time, so the loop vectorizes; code 3 is looked for after the block.)
    uint8_t invalid = 0;
    for (uint32_t quarter = 0; quarter < 4; ++quarter)
      for (uint32_t b = 0; b < 32; ++b) {
        const uint8_t code = (bytes[b] >> (6 - 2 * quarter)) & 3;
        invalid |= code == 3;
        out[quarter * 32 + b] = static_cast<int8_t>(code - 1);
      }
    if (invalid) {
      uint64_t j = 0;
      while (out[j] != 2) ++j;  // code 3 was stored as 3 - 1
      throw Error(t.where + ": I2_S value " + std::to_string(block * kI2sBlock + j) +
                  " has code 3 (valid: 0=-1, 1=0, 2=+1); corrupt data or not the 128-block "
                  "x86 layout");
    }
  }
  float scale;
  std::memcpy(&scale, p + n / 4, 4);
  require_positive_scale(t, scale, "I2_S scale");
  m.scale = scale;
  return m;
}

TernaryMatrix ternary_from_floats(const RawTensor& t, std::span<const float> values) {
  const uint64_t n = t.n_elements();
  if (values.size() != n) {
    throw Error(t.where + ": expected " + std::to_string(n) + " values, got " +
                std::to_string(values.size()));
  }
  float s = 0.0f;
  for (uint64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) {
      throw Error(t.where + ": value " + std::to_string(i) + " is " + fmt(values[i]) +
                  "; a ternary weight must be finite");
    }
    s = std::max(s, std::fabs(values[i]));
  }
  TernaryMatrix m = make_matrix(t.rows, t.cols, n);
  if (s == 0.0f) return m;  // all zero: scale 1 is as good as any
  const float tol = kFloatTernaryTolerance * s;
  for (uint64_t i = 0; i < n; ++i) {
    const float v = values[i];
    const float a = std::fabs(v);
    if (a <= tol) {
      m.values[i] = 0;
    } else if (std::fabs(a - s) <= tol) {
      m.values[i] = v > 0 ? 1 : -1;
    } else {
      throw Error(t.where + ": value " + std::to_string(i) + " (row " +
                  std::to_string(i / static_cast<uint64_t>(t.cols)) + ", col " +
                  std::to_string(i % static_cast<uint64_t>(t.cols)) + ") is " + fmt(v) +
                  ", expected 0 or +-" + fmt(s) +
                  ": the weights are not ternary x one scale (not a BitNet b1.58 linear weight?)");
    }
  }
  m.scale = s;
  return m;
}

TernaryMatrix decode_hf_packed(const RawTensor& t, float multiplier) {
  const uint64_t packed_n = t.n_elements();
  require_size(t, "packed U8", packed_n);
  require_positive_scale(t, multiplier, "weight scale multiplier");
  const uint64_t quarter = static_cast<uint64_t>(t.rows);
  const uint64_t cols = static_cast<uint64_t>(t.cols);
  TernaryMatrix m = make_matrix(t.rows * 4, t.cols, packed_n * 4);
  for (uint64_t r = 0; r < quarter; ++r) {
    for (uint64_t c = 0; c < cols; ++c) {
      const uint8_t byte = t.bytes[r * cols + c];
      for (uint64_t i = 0; i < 4; ++i) {
        const int code = (byte >> (2 * i)) & 3;
        if (code == 3) {
          throw Error(t.where + ": packed byte at [" + std::to_string(r) + ", " +
                      std::to_string(c) + "] holds code 3 at bits " + std::to_string(2 * i) + ".." +
                      std::to_string(2 * i + 1) + " (valid: 0=-1, 1=0, 2=+1)");
        }
        m.values[(r + i * quarter) * cols + c] = static_cast<int8_t>(code - 1);
      }
    }
  }
  m.scale = multiplier;
  return m;
}

}  // namespace ternvk
