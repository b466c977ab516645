#include "runtime/formats/safetensors_writer.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/formats/checked_math.h"
#include "runtime/formats/gguf_writer.h"

namespace ternvk {

void SafetensorsWriter::add(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
                            std::vector<uint8_t> data) {
  const auto size = safetensors_dtype_size(dtype);
  const auto n = checked_product(shape);
  if (!size || !n || *n * *size != data.size()) {
    throw Error("safetensors writer: tensor '" + name + "' (" +
                std::string(safetensors_dtype_name(dtype)) + ") has " +
                std::to_string(data.size()) + " bytes, which does not match its shape");
  }
  tensors_.push_back({std::move(name), dtype, std::move(shape), std::move(data)});
}

void SafetensorsWriter::add_floats(std::string name, SafetensorsDtype dtype,
                                   std::vector<int64_t> shape, std::span<const float> values) {
  std::vector<uint8_t> data;
  if (dtype == SafetensorsDtype::F32) {
    data.resize(values.size() * 4);
    if (!values.empty()) std::memcpy(data.data(), values.data(), data.size());
  } else if (dtype == SafetensorsDtype::F16 || dtype == SafetensorsDtype::BF16) {
    data.resize(values.size() * 2);
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t h =
          dtype == SafetensorsDtype::F16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
      std::memcpy(data.data() + 2 * i, &h, 2);
    }
  } else {
    throw Error("safetensors writer: add_floats('" + name + "') supports F32, F16, BF16");
  }
  add(std::move(name), dtype, std::move(shape), std::move(data));
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    header[t.name] = {{"dtype", std::string(safetensors_dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  // Sized once and filled with memcpy: GCC 12 warns falsely on the equivalent vector::insert chain.
  const uint64_t len = text.size();
  std::vector<uint8_t> out(8 + text.size() + offset);
  std::memcpy(out.data(), &len, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  size_t at = 8 + text.size();
  for (const Tensor& t : tensors_) {
    if (!t.data.empty()) std::memcpy(out.data() + at, t.data.data(), t.data.size());
    at += t.data.size();
  }
  return out;
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  write_file_bytes(path, to_bytes());
}

}  // namespace ternvk
