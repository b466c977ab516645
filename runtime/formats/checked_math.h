// Overflow-safe size arithmetic: every offset and size in a model file is untrusted input, so a
// product of dims or an offset + length must never wrap around and pass a bounds check.
#pragma once
#include <cstdint>
#include <optional>
#include <span>

namespace ternvk {

inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Product of non-negative dims, nullopt on overflow or a negative dim.
inline std::optional<uint64_t> checked_product(std::span<const int64_t> dims) {
  uint64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return std::nullopt;
    auto next = checked_mul(n, static_cast<uint64_t>(d));
    if (!next) return std::nullopt;
    n = *next;
  }
  return n;
}

// True when [offset, offset + size) lies inside a buffer of `total` bytes.
inline bool range_inside(uint64_t offset, uint64_t size, uint64_t total) {
  auto end = checked_add(offset, size);
  return end && *end <= total;
}

}  // namespace ternvk
