#include "runtime/formats/hf_tensor_decode.h"

#include <cmath>

#include "runtime/core/error.h"
#include "runtime/formats/float_decode.h"
#include "runtime/formats/ternary_decode.h"

namespace ternvk {

namespace {

std::optional<GgmlType> float_type(SafetensorsDtype d) {
  switch (d) {
    case SafetensorsDtype::F32: return GgmlType::F32;
    case SafetensorsDtype::F16: return GgmlType::F16;
    case SafetensorsDtype::BF16: return GgmlType::BF16;
    default: return std::nullopt;
  }
}

// A 1-D or 2-D tensor as rows x cols (1-D: one row; 0-D: 1x1).
RawTensor raw(const SafetensorsModel& model, const SafetensorsTensor& t) {
  RawTensor r;
  r.where = model.describe(t);
  if (t.shape.size() > 2) {
    throw Error(r.where + ": expected at most 2 dimensions, found " + std::to_string(t.shape.size()));
  }
  r.rows = t.shape.size() == 2 ? t.shape[0] : 1;
  r.cols = t.shape.empty() ? 1 : t.shape.back();
  r.bytes = model.tensor_bytes(t);
  return r;
}

std::vector<float> floats(const SafetensorsModel& model, const SafetensorsTensor& t) {
  const RawTensor r = raw(model, t);
  const auto type = float_type(t.dtype);
  if (!type) {
    throw Error(r.where + " has dtype " + t.dtype_name + "; expected F32, F16 or BF16");
  }
  return decode_to_f32(*type, r);
}

std::string scale_name_for(std::string_view weight_name) {
  constexpr std::string_view kSuffix = ".weight";
  std::string_view prefix = weight_name;
  if (prefix.size() > kSuffix.size() && prefix.substr(prefix.size() - kSuffix.size()) == kSuffix) {
    prefix.remove_suffix(kSuffix.size());
  }
  return std::string(prefix) + ".weight_scale";
}

}  // namespace

std::vector<float> read_hf_f32(const SafetensorsModel& model, std::string_view name) {
  return floats(model, model.tensor(name));
}

std::vector<uint16_t> read_hf_f16_bits(const SafetensorsModel& model, std::string_view name) {
  const SafetensorsTensor& t = model.tensor(name);
  const RawTensor r = raw(model, t);
  const auto type = float_type(t.dtype);
  if (!type) throw Error(r.where + " has dtype " + t.dtype_name + "; expected F32, F16 or BF16");
  return decode_to_f16_bits(*type, r);
}

TernaryMatrix read_hf_ternary(const SafetensorsModel& model, std::string_view weight_name,
                              WeightScaleConvention convention) {
  const SafetensorsTensor& w = model.tensor(weight_name);
  if (w.shape.size() != 2) {
    throw Error(model.describe(w) + ": a linear weight must be 2-D, found " +
                std::to_string(w.shape.size()) + " dims");
  }
  if (float_type(w.dtype)) {
    const RawTensor r = raw(model, w);
    return ternary_from_floats(r, floats(model, w));
  }
  if (w.dtype != SafetensorsDtype::U8) {
    throw Error(model.describe(w) + " has dtype " + w.dtype_name +
                "; a BitNet linear weight is packed U8 (or F32/F16/BF16 ternary)");
  }
  const std::string scale_name = scale_name_for(weight_name);
  const SafetensorsTensor* s = model.find(scale_name);
  if (s == nullptr) {
    throw Error(model.describe(w) + " is packed ternary but its scale '" + scale_name +
                "' is missing");
  }
  if (s->n_elements != 1) {
    throw Error(model.describe(*s) + ": expected one scalar weight scale, found " +
                std::to_string(s->n_elements) + " elements");
  }
  const float stored = floats(model, *s).at(0);
  if (!(stored > 0.0f) || !std::isfinite(stored)) {
    throw Error(model.describe(*s) + ": weight scale is " + std::to_string(stored) +
                ", expected a finite value > 0");
  }
  return decode_hf_packed(raw(model, w), effective_multiplier(stored, convention));
}

}  // namespace ternvk
