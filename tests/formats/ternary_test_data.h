// Seeded random ternary matrices for the round-trip and fuzz tests.
#pragma once
#include <random>

#include "runtime/formats/ternary_matrix.h"

namespace ternvk::test {

// Roughly 1/3 each of -1, 0, +1; fixed seed so failures reproduce.
inline TernaryMatrix random_ternary(int64_t rows, int64_t cols, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(-1, 1);
  TernaryMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.scale = scale;
  m.values.resize(static_cast<size_t>(rows * cols));
  for (auto& v : m.values) v = static_cast<int8_t>(pick(rng));
  return m;
}

}  // namespace ternvk::test
