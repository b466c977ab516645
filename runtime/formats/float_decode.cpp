#include "runtime/formats/float_decode.h"

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
      return out;
    case GgmlType::F16:
      require_size(t, type, n * 2);
      out.resize(n);
      for (uint64_t i = 0; i < n; ++i) out[i] = half_to_float(load<uint16_t>(p + 2 * i));
      return out;
    case GgmlType::BF16:
      require_size(t, type, n * 2);
      out.resize(n);
      for (uint64_t i = 0; i < n; ++i) out[i] = bf16_to_float(load<uint16_t>(p + 2 * i));
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
    return out;
  }
  const std::vector<float> f = decode_to_f32(type, t);
  std::vector<uint16_t> out(f.size());
  for (size_t i = 0; i < f.size(); ++i) out[i] = float_to_half(f[i]);
  return out;
}

}  // namespace ternvk
