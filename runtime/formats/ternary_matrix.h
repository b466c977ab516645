// The canonical host form of a BitNet linear weight: ternary values and one per-tensor multiplier.
#pragma once
#include <cstdint>
#include <vector>

namespace ternvk {

struct TernaryMatrix {
  int64_t rows = 0;            // output features
  int64_t cols = 0;            // input features (row length)
  std::vector<int8_t> values;  // row-major, rows * cols, each in {-1, 0, +1}
  float scale = 1.0f;          // the multiplier: effective weight = value * scale (finite, > 0)
};

// value * scale for every element, row-major (reference paths and tests).
std::vector<float> dequantize(const TernaryMatrix& m);

}  // namespace ternvk
