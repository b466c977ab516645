#include "runtime/formats/gguf_writer.h"

#include <cstring>
#include <fstream>

#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/formats/checked_math.h"

namespace ternvk {

namespace {

class ByteSink {
 public:
  template <typename T>
  void put(T v) {
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  void pad_to(uint64_t alignment) {
    while (out.size() % alignment != 0) out.push_back(0);
  }
  std::vector<uint8_t> out;
};

void put_array(ByteSink& sink, const GgufArray& a);

void put_scalar(ByteSink& sink, const GgufValue& v) {
  switch (v.type) {
    case GgufType::U8: sink.put<uint8_t>(static_cast<uint8_t>(v.unsigned_value)); break;
    case GgufType::U16: sink.put<uint16_t>(static_cast<uint16_t>(v.unsigned_value)); break;
    case GgufType::U32: sink.put<uint32_t>(static_cast<uint32_t>(v.unsigned_value)); break;
    case GgufType::U64: sink.put<uint64_t>(v.unsigned_value); break;
    case GgufType::I8: sink.put<int8_t>(static_cast<int8_t>(v.signed_value)); break;
    case GgufType::I16: sink.put<int16_t>(static_cast<int16_t>(v.signed_value)); break;
    case GgufType::I32: sink.put<int32_t>(static_cast<int32_t>(v.signed_value)); break;
    case GgufType::I64: sink.put<int64_t>(v.signed_value); break;
    case GgufType::F32: sink.put<float>(static_cast<float>(v.float_value)); break;
    case GgufType::F64: sink.put<double>(v.float_value); break;
    case GgufType::BOOL: sink.put<uint8_t>(v.bool_value ? 1 : 0); break;
    case GgufType::STRING: sink.put_string(v.string_value); break;
    case GgufType::ARRAY: put_array(sink, v.array); break;
  }
}

void put_array(ByteSink& sink, const GgufArray& a) {
  sink.put<uint32_t>(static_cast<uint32_t>(a.element_type));
  sink.put<uint64_t>(a.size());
  GgufValue e;
  e.type = a.element_type;
  for (size_t i = 0; i < a.size(); ++i) {
    switch (a.element_type) {
      case GgufType::STRING: sink.put_string(a.strings[i]); continue;
      case GgufType::ARRAY: put_array(sink, a.arrays[i]); continue;
      case GgufType::BOOL: e.bool_value = a.unsigned_values[i] != 0; break;
      case GgufType::F32: case GgufType::F64: e.float_value = a.float_values[i]; break;
      case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64:
        e.signed_value = a.signed_values[i];
        break;
      default: e.unsigned_value = a.unsigned_values[i]; break;
    }
    put_scalar(sink, e);
  }
}

}  // namespace

void GgufWriter::set(std::string key, GgufValue value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::set_alignment(uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    throw Error("GGUF writer: alignment " + std::to_string(alignment) + " is not a power of two");
  }
  alignment_ = alignment;
  set_u32("general.alignment", alignment);
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> ne, uint32_t ggml_type,
                            std::vector<uint8_t> data) {
  if (ne.empty() || ne.size() > 4) {
    throw Error("GGUF writer: tensor '" + name + "' has " + std::to_string(ne.size()) +
                " dims, expected 1..4");
  }
  const auto n = checked_product(ne);
  if (!n) throw Error("GGUF writer: tensor '" + name + "' has invalid dims");
  if (ggml_block_layout(ggml_type) || ggml_type == static_cast<uint32_t>(GgmlType::I2_S)) {
    std::string why;
    const auto bytes = ggml_tensor_bytes(ggml_type, *n, static_cast<uint64_t>(ne[0]), &why);
    if (!bytes) throw Error("GGUF writer: tensor '" + name + "': " + why);
    if (*bytes != data.size()) {
      throw Error("GGUF writer: tensor '" + name + "' (" + ggml_type_label(ggml_type) + ") needs " +
                  std::to_string(*bytes) + " bytes, got " + std::to_string(data.size()));
    }
  }
  tensors_.push_back({std::move(name), std::move(ne), ggml_type, std::move(data)});
}

void GgufWriter::add_float_tensor(std::string name, std::vector<int64_t> ne, GgmlType type,
                                  std::span<const float> values) {
  std::vector<uint8_t> data;
  if (type == GgmlType::F32) {
    data.resize(values.size() * 4);
    std::memcpy(data.data(), values.data(), data.size());
  } else if (type == GgmlType::F16 || type == GgmlType::BF16) {
    data.resize(values.size() * 2);
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t h = type == GgmlType::F16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
      std::memcpy(data.data() + 2 * i, &h, 2);
    }
  } else {
    throw Error("GGUF writer: add_float_tensor('" + name + "') supports F32, F16 and BF16, not " +
                ggml_type_label(static_cast<uint32_t>(type)));
  }
  add_tensor(std::move(name), std::move(ne), static_cast<uint32_t>(type), std::move(data));
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  ByteSink sink;
  sink.put<uint32_t>(0x46554747);  // "GGUF"
  sink.put<uint32_t>(version_);
  sink.put<uint64_t>(tensors_.size());
  sink.put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    sink.put_string(key);
    sink.put<uint32_t>(static_cast<uint32_t>(value.type));
    put_scalar(sink, value);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    sink.put_string(t.name);
    sink.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) sink.put<uint64_t>(static_cast<uint64_t>(d));
    sink.put<uint32_t>(t.type);
    sink.put<uint64_t>(offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  sink.pad_to(alignment_);
  for (const Tensor& t : tensors_) {
    sink.out.insert(sink.out.end(), t.data.begin(), t.data.end());
    sink.pad_to(alignment_);
  }
  return std::move(sink.out);
}

void GgufWriter::write(const std::filesystem::path& path) const { write_file_bytes(path, to_bytes()); }

void write_file_bytes(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error("cannot create '" + path.string() + "'");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw Error("cannot write " + std::to_string(bytes.size()) + " bytes to '" + path.string() + "'");
}

}  // namespace ternvk
