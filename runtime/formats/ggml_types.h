// ggml tensor types as numbered in GGUF files, with the block geometry needed to size a tensor.
// Only types whose layout ternvk knows get a size; any other number is kept as-is so a file with an
// exotic tensor still opens, and fails only if that tensor's data is read.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace ternvk {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  I2_S = 36,  // bitnet.cpp's fork numbering (mainline ggml has no type 36 in use)
};

struct GgmlBlockLayout {
  uint32_t elements_per_block;
  uint32_t bytes_per_block;
};

// nullopt for a type number ternvk does not know. I2_S has no block layout (see ggml_tensor_bytes).
std::optional<GgmlBlockLayout> ggml_block_layout(uint32_t type);

// "TQ2_0 (35)" or "unknown (99)", for error messages.
std::string ggml_type_label(uint32_t type);

// Byte size of a tensor of `type` with `n_elements` elements and row length `row_length` (ne[0]).
// nullopt when the type is unknown. Throws nothing; `why_not` (if given) explains other failures:
// a row length that is not a whole number of blocks, or a size that overflows 64 bits.
std::optional<uint64_t> ggml_tensor_bytes(uint32_t type, uint64_t n_elements, uint64_t row_length,
                                          std::string* why_not = nullptr);

}  // namespace ternvk
