// Naive CPU references for the matmul ops, written from docs/architecture.md (not from the shaders).
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "common/random.h"
#include "runtime/core/half.h"

namespace ternvk::test {

// Quantized activations as the GPU stores them, plus the unpacked q and the pre-rounding values
// v / s (for the tie tolerance).
struct QuantRef {
  uint32_t tokens = 0, cols = 0;
  std::vector<int8_t> q;          // [tokens, cols]
  std::vector<float> scaled;      // v / s, [tokens, cols]
  std::vector<float> s;           // [tokens]
  std::vector<int32_t> sum_q;     // [tokens]

  uint32_t padded() const { return (cols + 63) / 64 * 64; }
  // values words [tokens, padded/4] and meta words [tokens, 2], the GPU layout.
  std::vector<uint32_t> values_words() const {
    std::vector<uint32_t> out(size_t(tokens) * padded() / 4, 0);
    for (uint32_t t = 0; t < tokens; ++t)
      for (uint32_t k = 0; k < cols; ++k)
        out[size_t(t) * padded() / 4 + k / 4] |= (uint32_t(uint8_t(q[size_t(t) * cols + k]))) << (8 * (k % 4));
    return out;
  }
  std::vector<uint32_t> meta_words() const {
    std::vector<uint32_t> out(size_t(tokens) * 2);
    for (uint32_t t = 0; t < tokens; ++t) {
      out[2 * t] = std::bit_cast<uint32_t>(s[t]);
      out[2 * t + 1] = static_cast<uint32_t>(sum_q[t]);
    }
    return out;
  }
};

// architecture.md: v = x * inversesqrt(mean(x^2) + eps) * weight (when `norm` is given), then
// s = max(max|v|, 1e-5) / 127, q = clamp(roundEven(v / s), -128, 127).
inline QuantRef quantize_ref(const std::vector<float>& x, uint32_t tokens, uint32_t cols, const float* norm,
                             float eps) {
  QuantRef r;
  r.tokens = tokens;
  r.cols = cols;
  r.q.resize(size_t(tokens) * cols);
  r.scaled.resize(size_t(tokens) * cols);
  r.s.resize(tokens);
  r.sum_q.resize(tokens);
  std::vector<float> v(cols);
  for (uint32_t t = 0; t < tokens; ++t) {
    const float* row = x.data() + size_t(t) * cols;
    float inv = 1.0f;
    if (norm) {
      float ss = 0.0f;
      for (uint32_t k = 0; k < cols; ++k) ss += row[k] * row[k];
      inv = 1.0f / std::sqrt(ss / float(cols) + eps);
    }
    float amax = 0.0f;
    for (uint32_t k = 0; k < cols; ++k) {
      v[k] = norm ? row[k] * inv * norm[k] : row[k];
      amax = std::max(amax, std::fabs(v[k]));
    }
    const float s = std::max(amax, 1e-5f) / 127.0f;
    int32_t sum = 0;
    for (uint32_t k = 0; k < cols; ++k) {
      const float scaled = v[k] / s;
      const int q = static_cast<int>(std::clamp(std::nearbyint(scaled), -128.0f, 127.0f));  // ties to even
      r.q[size_t(t) * cols + k] = static_cast<int8_t>(q);
      r.scaled[size_t(t) * cols + k] = scaled;
      sum += q;
    }
    r.s[t] = s;
    r.sum_q[t] = sum;
  }
  return r;
}

// Exact integer sums: acc[t, n] = sum_k w[n, k] q[t, k].
inline std::vector<int64_t> ternary_dot_ref(const std::vector<int8_t>& w, uint32_t n_rows, uint32_t cols,
                                            const QuantRef& x) {
  std::vector<int64_t> acc(size_t(x.tokens) * n_rows, 0);
  for (uint32_t t = 0; t < x.tokens; ++t)
    for (uint32_t n = 0; n < n_rows; ++n) {
      int64_t a = 0;
      for (uint32_t k = 0; k < cols; ++k) a += int64_t(w[size_t(n) * cols + k]) * x.q[size_t(t) * cols + k];
      acc[size_t(t) * n_rows + n] = a;
    }
  return acc;
}

// Random activations already quantized: q uniform in [-128, 127], s in [0.001, 0.1] (or 1).
inline QuantRef random_quantized(std::mt19937& rng, uint32_t tokens, uint32_t cols, bool unit_scale) {
  QuantRef r;
  r.tokens = tokens;
  r.cols = cols;
  std::uniform_int_distribution<int> dq(-128, 127);
  std::uniform_real_distribution<float> ds(0.001f, 0.1f);
  r.q.resize(size_t(tokens) * cols);
  for (auto& v : r.q) v = static_cast<int8_t>(dq(rng));
  r.s.resize(tokens);
  r.sum_q.resize(tokens);
  for (uint32_t t = 0; t < tokens; ++t) {
    r.s[t] = unit_scale ? 1.0f : ds(rng);
    r.sum_q[t] = std::accumulate(r.q.begin() + size_t(t) * cols, r.q.begin() + size_t(t + 1) * cols, 0);
  }
  return r;
}

// Random fp16 bits of values uniform in [lo, hi].
inline std::vector<uint16_t> random_halves(std::mt19937& rng, size_t count, float lo, float hi) {
  const auto values = random_floats(rng, count, lo, hi);
  std::vector<uint16_t> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = float_to_half(values[i]);
  return out;
}

inline std::vector<int8_t> random_ternary(std::mt19937& rng, size_t count) {
  std::uniform_int_distribution<int> d(-1, 1);
  std::vector<int8_t> out(count);
  for (auto& v : out) v = static_cast<int8_t>(d(rng));
  return out;
}

}  // namespace ternvk::test
