#include "runtime/formats/ggml_types.h"

#include "runtime/formats/checked_math.h"

namespace ternvk {

namespace {

struct TypeTraits {
  uint32_t type;
  const char* name;
  uint32_t elements_per_block;  // 0: no block layout (I2_S)
  uint32_t bytes_per_block;
};

// Block geometry from ggml's type_traits (ggml-common.h block_* structs).
constexpr TypeTraits kTypes[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},        {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},     {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110},  {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},  {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},      {27, "I64", 1, 8},       {28, "F64", 1, 8},      {30, "BF16", 1, 2},
    {34, "TQ1_0", 256, 54}, {35, "TQ2_0", 256, 66},  {36, "I2_S", 0, 0},
};

const TypeTraits* find_traits(uint32_t type) {
  for (const auto& t : kTypes) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

}  // namespace

std::optional<GgmlBlockLayout> ggml_block_layout(uint32_t type) {
  const TypeTraits* t = find_traits(type);
  if (t == nullptr || t->elements_per_block == 0) return std::nullopt;
  return GgmlBlockLayout{t->elements_per_block, t->bytes_per_block};
}

std::string ggml_type_label(uint32_t type) {
  const TypeTraits* t = find_traits(type);
  return std::string(t ? t->name : "unknown") + " (" + std::to_string(type) + ")";
}

std::optional<uint64_t> ggml_tensor_bytes(uint32_t type, uint64_t n_elements, uint64_t row_length,
                                          std::string* why_not) {
  const TypeTraits* t = find_traits(type);
  if (t == nullptr) {
    if (why_not) *why_not = "type " + ggml_type_label(type) + " is not known to ternvk";
    return std::nullopt;
  }
  if (type == static_cast<uint32_t>(GgmlType::I2_S)) {
    // bitnet.cpp sizes I2_S as 2 bits per value plus one 32-byte slot holding the float scale.
    return n_elements / 4 + 32;
  }
  if (row_length % t->elements_per_block != 0) {
    if (why_not) {
      *why_not = "row length " + std::to_string(row_length) + " is not a multiple of the " +
                 ggml_type_label(type) + " block size " + std::to_string(t->elements_per_block);
    }
    return std::nullopt;
  }
  auto bytes = checked_mul(n_elements / t->elements_per_block, t->bytes_per_block);
  if (!bytes && why_not) *why_not = "byte size overflows 64 bits";
  return bytes;
}

}  // namespace ternvk
