// The bytes of one tensor plus what a decoder needs to check them and to name them in errors.
// Format readers (GGUF, safetensors) build these; decoders never see the file they came from.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "runtime/core/error.h"
#include "runtime/formats/checked_math.h"

namespace ternvk {

struct RawTensor {
  std::string where;  // e.g. "model.gguf: tensor 'blk.0.attn_q.weight'", prefixed to every error
  int64_t rows = 0;   // product of the outer dims
  int64_t cols = 0;   // row length (innermost dim)
  std::span<const uint8_t> bytes;

  // rows * cols, checked: shapes come from untrusted headers, so a negative or overflowing shape
  // is an error here rather than a wrapped size that later passes a bounds check.
  uint64_t n_elements() const {
    const int64_t dims[] = {rows, cols};
    const auto n = checked_product(dims);
    constexpr int64_t kLimit = int64_t{1} << 60;  // keeps every later size product far from 2^64
    if (!n || *n > uint64_t{kLimit} || rows > kLimit || cols > kLimit) {
      throw Error(where + ": invalid shape " + std::to_string(rows) + "x" + std::to_string(cols));
    }
    return *n;
  }
};

}  // namespace ternvk
