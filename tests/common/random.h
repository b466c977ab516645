// Seeded random test data shared by the op tests (uniform floats from std::mt19937).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace ternvk::test {

inline std::vector<float> random_floats(std::mt19937& rng, size_t count, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> out(count);
  for (auto& v : out) v = d(rng);
  return out;
}

inline std::vector<float> random_floats(size_t count, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  return random_floats(rng, count, lo, hi);
}

}  // namespace ternvk::test
