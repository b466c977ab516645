// A GGUF metadata value: one of the 13 GGUF value types, arrays possibly nested. Arrays keep their
// elements in one typed vector (not one GgufValue each) because tokenizer arrays hold 100k+ entries.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ternvk {

enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

std::string_view gguf_type_name(GgufType type);
bool gguf_type_is_valid(uint32_t raw);
bool gguf_type_is_unsigned(GgufType type);  // U8..U64 (not BOOL)
bool gguf_type_is_signed(GgufType type);    // I8..I64
bool gguf_type_is_float(GgufType type);     // F32, F64

struct GgufArray {
  GgufType element_type = GgufType::U8;
  // Exactly one vector is used, chosen by element_type:
  std::vector<uint64_t> unsigned_values;  // U8, U16, U32, U64, and BOOL as 0/1
  std::vector<int64_t> signed_values;     // I8, I16, I32, I64
  std::vector<double> float_values;       // F32, F64
  std::vector<std::string> strings;       // STRING
  std::vector<GgufArray> arrays;          // ARRAY (nested)

  size_t size() const;
};

struct GgufValue {
  GgufType type = GgufType::U8;
  // Exactly one field is used, chosen by type:
  uint64_t unsigned_value = 0;  // U8, U16, U32, U64
  int64_t signed_value = 0;     // I8, I16, I32, I64
  double float_value = 0;       // F32, F64
  bool bool_value = false;      // BOOL
  std::string string_value;     // STRING
  GgufArray array;              // ARRAY

  // Factories, mostly for writers and tests. Each stores the value in the field its type uses.
  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f64(double v);
  static GgufValue of_array(GgufArray a);
  static GgufValue string_array(std::vector<std::string> v);
  static GgufValue f32_array(const std::vector<float>& v);
  static GgufValue i32_array(const std::vector<int32_t>& v);
  static GgufValue u32_array(const std::vector<uint32_t>& v);

  // "u32", "array of string", ... for error messages.
  std::string describe_type() const;
};

}  // namespace ternvk
