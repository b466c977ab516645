#include "runtime/formats/tensor_decode.h"

#include "runtime/core/error.h"
#include "runtime/formats/float_decode.h"
#include "runtime/formats/ternary_decode.h"

namespace ternvk {

namespace {

bool is_ternary_layout(uint32_t type) {
  return type == static_cast<uint32_t>(GgmlType::TQ1_0) ||
         type == static_cast<uint32_t>(GgmlType::TQ2_0) ||
         type == static_cast<uint32_t>(GgmlType::I2_S);
}

}  // namespace

RawTensor raw_tensor(const GgufFile& file, const GgufTensorInfo& info) {
  RawTensor t;
  t.where = file.path() + ": tensor '" + info.name + "'";
  t.rows = info.rows();
  t.cols = info.cols();
  t.bytes = file.tensor_bytes(info);  // throws for unknown types, naming the tensor and type
  return t;
}

std::vector<float> read_f32(const GgufFile& file, const GgufTensorInfo& info) {
  const RawTensor t = raw_tensor(file, info);
  const auto type = static_cast<GgmlType>(info.type);
  if (is_ternary_layout(info.type)) return dequantize(read_ternary(file, info));
  if (!is_float_decodable(type)) {
    throw Error(t.where + " is " + ggml_type_label(info.type) +
                "; expected F32, F16, BF16, Q8_0 or a ternary type");
  }
  return decode_to_f32(type, t);
}

std::vector<uint16_t> read_f16_bits(const GgufFile& file, const GgufTensorInfo& info) {
  const RawTensor t = raw_tensor(file, info);
  const auto type = static_cast<GgmlType>(info.type);
  if (!is_float_decodable(type)) {
    throw Error(t.where + " is " + ggml_type_label(info.type) +
                "; expected F32, F16, BF16 or Q8_0 for an fp16 tensor");
  }
  return decode_to_f16_bits(type, t);
}

TernaryMatrix read_ternary(const GgufFile& file, const GgufTensorInfo& info) {
  const RawTensor t = raw_tensor(file, info);
  switch (static_cast<GgmlType>(info.type)) {
    case GgmlType::TQ2_0: return decode_tq2_0(t);
    case GgmlType::TQ1_0: return decode_tq1_0(t);
    case GgmlType::I2_S: return decode_i2_s(t);
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: {
      const std::vector<float> values = decode_to_f32(static_cast<GgmlType>(info.type), t);
      return ternary_from_floats(t, values);
    }
    default:
      throw Error(t.where + " is " + ggml_type_label(info.type) +
                  "; a ternary weight must be TQ1_0, TQ2_0, I2_S, or F32/F16/BF16 holding "
                  "ternary x one scale");
  }
}

}  // namespace ternvk
