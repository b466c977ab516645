// Writes small safetensors files (tests, fixtures): tensors in insertion order, header padded
// with spaces to a multiple of 8 bytes as the reference writer does.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "runtime/formats/safetensors.h"

namespace ternvk {

class SafetensorsWriter {
 public:
  // `shape` outermost first. For a known dtype the data size must match (else ternvk::Error).
  void add(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
           std::vector<uint8_t> data);
  // Floats stored as F32, F16 or BF16.
  void add_floats(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
                  std::span<const float> values);
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  std::vector<uint8_t> to_bytes() const;
  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ternvk
