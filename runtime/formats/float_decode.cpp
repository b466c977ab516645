#include "runtime/formats/float_decode.h"

#include <cmath>
#include <cstring>

#include "runtime/core/error.h"
#include "runtime/core/half.h"

namespace ternvk {

namespace {

constexpr uint64_t kQ8Block = 32;
constexpr uint64_t kQ8BlockBytes = 2 + 32;

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

void require_size(const RawTensor& t, GgmlType type, uint64_t expected) {
  if (t.bytes.size() != expected) {
    throw Error(t.where + ": " + ggml_type_label(static_cast<uint32_t>(type)) + " data of " +
                std::to_string(t.rows) + "x" + std::to_string(t.cols) + " needs " +
                std::to_string(expected) + " bytes, found " + std::to_string(t.bytes.size()));
  }
}

// NaN or infinity in a norm or an embedding row would spread through every activation it meets
// and make the model's output meaningless without any error: refuse it at load, naming where.
[[noreturn]] void fail_not_finite(const RawTensor& t, uint64_t index, float value, const std::string& why = "") {
  const uint64_t cols = t.cols > 0 ? uint64_t(t.cols) : 1;
  throw Error(t.where + ": value " + std::to_string(index) + " (row " + std::to_string(index / cols) + ", col " +
              std::to_string(index % cols) + ") is " + (std::isnan(value) ? "NaN" : value > 0 ? "+inf" : "-inf") + why +
              "; a model's float tensors must hold finite numbers (a corrupt or badly converted file?)");
}

void require_finite(const RawTensor& t, const std::vector<float>& values) {
  for (uint64_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) fail_not_finite(t, i, values[i]);
}

}  // namespace

bool is_float_decodable(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 ||
         type == GgmlType::Q8_0;
}

std::vector<float> decode_to_f32(GgmlType type, const RawTensor& t) {
  const uint64_t n = t.n_elements();
  std::vector<float> out;
  const uint8_t* p = t.bytes.data();
  switch (type) {
    case GgmlType::F32:
      require_size(t, type, n * 4);
      out.resize(n);
      if (n != 0) std::memcpy(out.data(), p, n * 4);
      require_finite(t, out);
      return out;
    case GgmlType::F16:
      require_size(t, type, n * 2);
      out.resize(n);
      for (uint64_t i = 0; i < n; ++i) out[i] = half_to_float(load<uint16_t>(p + 2 * i));
      require_finite(t, out);
      return out;
    case GgmlType::BF16:
      require_size(t, type, n * 2);
      out.resize(n);
      for (uint64_t i = 0; i < n; ++i) out[i] = bf16_to_float(load<uint16_t>(p + 2 * i));
      require_finite(t, out);
      return out;
    case GgmlType::Q8_0: {
      if (t.cols % kQ8Block != 0) {
        throw Error(t.where + ": Q8_0 row length " + std::to_string(t.cols) +
                    " is not a multiple of 32");
      }
      const uint64_t blocks = n / kQ8Block;
      require_size(t, type, blocks * kQ8BlockBytes);
      out.resize(n);
      for (uint64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = p + b * kQ8BlockBytes;
        const float d = half_to_float(load<uint16_t>(block));
        if (!std::isfinite(d)) fail_not_finite(t, b * kQ8Block, d, " (the scale of its Q8_0 block)");
        const auto* q = reinterpret_cast<const int8_t*>(block + 2);
        for (uint64_t j = 0; j < kQ8Block; ++j) out[b * kQ8Block + j] = d * static_cast<float>(q[j]);
      }
      return out;
    }
    default:
      throw Error(t.where + ": cannot decode " + ggml_type_label(static_cast<uint32_t>(type)) +
                  " to float (supported: F32, F16, BF16, Q8_0)");
  }
}

std::vector<uint16_t> decode_to_f16_bits(GgmlType type, const RawTensor& t) {
  if (type == GgmlType::F16) {
    const uint64_t n = t.n_elements();
    require_size(t, type, n * 2);
    std::vector<uint16_t> out(n);
    if (n != 0) std::memcpy(out.data(), t.bytes.data(), n * 2);
    for (uint64_t i = 0; i < n; ++i)
      if ((out[i] & 0x7c00u) == 0x7c00u) fail_not_finite(t, i, half_to_float(out[i]));
    return out;
  }
  const std::vector<float> f = decode_to_f32(type, t);
  std::vector<uint16_t> out(f.size());
  for (size_t i = 0; i < f.size(); ++i) {
    out[i] = float_to_half(f[i]);
    if ((out[i] & 0x7c00u) == 0x7c00u) {
      fail_not_finite(t, i, half_to_float(out[i]), " in fp16 (" + std::to_string(f[i]) + " is beyond its range of 65504)");
    }
  }
  return out;
}

}  // namespace ternvk
