// safetensors reader over mmap: u64 header length, JSON header {name: {dtype, shape, data_offsets}},
// raw data. Every tensor's range and size is validated at open. SafetensorsModel opens a Hugging
// Face model folder: one model.safetensors, or shards listed by model.safetensors.index.json.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/formats/mapped_file.h"

namespace ternvk {

enum class SafetensorsDtype {
  BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2,
  Unknown,  // a dtype string ternvk does not know: the file opens, reading the tensor fails
};

// "BF16" -> BF16; anything else -> Unknown.
SafetensorsDtype safetensors_dtype_from_string(std::string_view s);
std::string_view safetensors_dtype_name(SafetensorsDtype d);  // "BF16"
// Bytes per element; nullopt for Unknown.
std::optional<uint32_t> safetensors_dtype_size(SafetensorsDtype d);

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::Unknown;
  std::string dtype_name;      // as written in the file (meaningful for Unknown)
  std::vector<int64_t> shape;  // outermost first (row-major, PyTorch order)
  uint64_t n_elements = 0;
  uint64_t begin = 0;          // data_offsets, relative to the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);
  static SafetensorsFile from_bytes(std::vector<uint8_t> bytes, std::string label);

  const std::string& path() const { return file_.name(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;
  const SafetensorsTensor& tensor(std::string_view name) const;  // missing: error
  // Throws for an Unknown dtype, naming the tensor and the dtype string.
  std::span<const uint8_t> tensor_bytes(const SafetensorsTensor& t) const;

 private:
  explicit SafetensorsFile(MappedFile file) : file_(std::move(file)) {}
  void parse();

  MappedFile file_;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

class SafetensorsModel {
 public:
  // A folder holding model.safetensors or model.safetensors.index.json (+ its shards), or a path
  // to a single .safetensors file.
  static SafetensorsModel open(const std::filesystem::path& path);

  const SafetensorsTensor* find(std::string_view name) const;
  const SafetensorsTensor& tensor(std::string_view name) const;  // missing: error naming the folder
  // The bytes of a tensor returned by find()/tensor() on this model.
  std::span<const uint8_t> tensor_bytes(const SafetensorsTensor& t) const;
  // "<shard path>: tensor '<name>'", for error messages.
  std::string describe(const SafetensorsTensor& t) const;
  std::vector<std::string> tensor_names() const;  // sorted
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  const std::string& path() const { return path_; }

 private:
  struct Location {
    size_t shard;
    const SafetensorsTensor* tensor;
  };
  std::string path_;
  std::vector<SafetensorsFile> shards_;
  std::unordered_map<std::string, Location> index_;
};

}  // namespace ternvk
