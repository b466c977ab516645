#include "runtime/formats/gguf_value.h"

#include <utility>

namespace ternvk {

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
  }
  return "invalid";
}

bool gguf_type_is_valid(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufType::F64); }

bool gguf_type_is_unsigned(GgufType t) {
  return t == GgufType::U8 || t == GgufType::U16 || t == GgufType::U32 || t == GgufType::U64;
}
bool gguf_type_is_signed(GgufType t) {
  return t == GgufType::I8 || t == GgufType::I16 || t == GgufType::I32 || t == GgufType::I64;
}
bool gguf_type_is_float(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

size_t GgufArray::size() const {
  if (element_type == GgufType::STRING) return strings.size();
  if (element_type == GgufType::ARRAY) return arrays.size();
  if (gguf_type_is_float(element_type)) return float_values.size();
  if (gguf_type_is_signed(element_type)) return signed_values.size();
  return unsigned_values.size();
}

namespace {
GgufValue make_unsigned(GgufType t, uint64_t v) {
  GgufValue out;
  out.type = t;
  out.unsigned_value = v;
  return out;
}
GgufValue make_signed(GgufType t, int64_t v) {
  GgufValue out;
  out.type = t;
  out.signed_value = v;
  return out;
}
GgufValue make_float(GgufType t, double v) {
  GgufValue out;
  out.type = t;
  out.float_value = v;
  return out;
}
}  // namespace

GgufValue GgufValue::u8(uint8_t v) { return make_unsigned(GgufType::U8, v); }
GgufValue GgufValue::i8(int8_t v) { return make_signed(GgufType::I8, v); }
GgufValue GgufValue::u16(uint16_t v) { return make_unsigned(GgufType::U16, v); }
GgufValue GgufValue::i16(int16_t v) { return make_signed(GgufType::I16, v); }
GgufValue GgufValue::u32(uint32_t v) { return make_unsigned(GgufType::U32, v); }
GgufValue GgufValue::i32(int32_t v) { return make_signed(GgufType::I32, v); }
GgufValue GgufValue::f32(float v) { return make_float(GgufType::F32, v); }
GgufValue GgufValue::u64(uint64_t v) { return make_unsigned(GgufType::U64, v); }
GgufValue GgufValue::i64(int64_t v) { return make_signed(GgufType::I64, v); }
GgufValue GgufValue::f64(double v) { return make_float(GgufType::F64, v); }

GgufValue GgufValue::boolean(bool v) {
  GgufValue out;
  out.type = GgufType::BOOL;
  out.bool_value = v;
  return out;
}

GgufValue GgufValue::string(std::string v) {
  GgufValue out;
  out.type = GgufType::STRING;
  out.string_value = std::move(v);
  return out;
}

GgufValue GgufValue::of_array(GgufArray a) {
  GgufValue out;
  out.type = GgufType::ARRAY;
  out.array = std::move(a);
  return out;
}

GgufValue GgufValue::string_array(std::vector<std::string> v) {
  GgufArray a;
  a.element_type = GgufType::STRING;
  a.strings = std::move(v);
  return of_array(std::move(a));
}

GgufValue GgufValue::f32_array(const std::vector<float>& v) {
  GgufArray a;
  a.element_type = GgufType::F32;
  a.float_values.assign(v.begin(), v.end());
  return of_array(std::move(a));
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  GgufArray a;
  a.element_type = GgufType::I32;
  a.signed_values.assign(v.begin(), v.end());
  return of_array(std::move(a));
}

GgufValue GgufValue::u32_array(const std::vector<uint32_t>& v) {
  GgufArray a;
  a.element_type = GgufType::U32;
  a.unsigned_values.assign(v.begin(), v.end());
  return of_array(std::move(a));
}

std::string GgufValue::describe_type() const {
  if (type != GgufType::ARRAY) return std::string(gguf_type_name(type));
  return "array of " + std::string(gguf_type_name(array.element_type));
}

}  // namespace ternvk
