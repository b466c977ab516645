// Helpers shared by the ops_attention tests: random data, error ratios, device buffers.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/gpu.h"
#include "common/random.h"
#include "runtime/core/half.h"

namespace ternvk::test {

inline std::vector<uint16_t> random_halves(size_t n, uint32_t seed) {
  auto f = random_floats(n, seed, -1.0f, 1.0f);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = float_to_half(f[i]);
  return h;
}

inline std::vector<uint32_t> consecutive(uint32_t first, uint32_t count) {
  std::vector<uint32_t> p(count);
  for (uint32_t i = 0; i < count; ++i) p[i] = first + i;
  return p;
}

struct Worst {
  double err = 0, ratio = 0;  // max abs error, max error / allowed
};

// Worst |got - want| over all elements, and its largest ratio to the element's bound (NaN or inf
// fails the REQUIRE).
inline Worst compare(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& bound) {
  REQUIRE(got.size() == want.size());
  REQUIRE(bound.size() == want.size());
  Worst w;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(double(got[i]) - want[i]);
    REQUIRE_MESSAGE(std::isfinite(got[i]), "element " << i << " is " << got[i]);
    w.err = std::max(w.err, d);
    w.ratio = std::max(w.ratio, d / bound[i]);
  }
  return w;
}

// The same with the bound abs_tol + rel_tol * |want|.
inline Worst compare(const std::vector<float>& got, const std::vector<float>& want, double abs_tol, double rel_tol) {
  std::vector<double> bound(want.size());
  for (size_t i = 0; i < want.size(); ++i) bound[i] = abs_tol + rel_tol * std::fabs(want[i]);
  return compare(got, want, bound);
}

inline Buffer device_buffer(uint64_t bytes, const char* what) {
  return test::device().create_buffer(std::max<uint64_t>(bytes, 16), MemoryKind::DeviceLocal, what);
}

inline int half_ulps(uint16_t a, uint16_t b) {
  auto key = [](uint16_t h) { return (h & 0x8000) ? -int(h & 0x7fff) : int(h); };
  return std::abs(key(a) - key(b));
}

}  // namespace ternvk::test
