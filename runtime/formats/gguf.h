// GGUF (v2 and v3) reader over a mapped file: header, metadata, tensor infos and the data section.
// Everything is validated at open (counts, string lengths, every known tensor's byte range), so a
// GgufFile that opened can hand out tensor spans without further bounds checks.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/formats/ggml_types.h"
#include "runtime/formats/gguf_value.h"
#include "runtime/formats/mapped_file.h"

namespace ternvk {

inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;

struct GgufTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  std::array<int64_t, kGgufMaxDims> ne{1, 1, 1, 1};  // innermost first: ne[0] is the row length
  uint32_t type = 0;                                 // raw ggml type number (see GgmlType)
  uint64_t offset = 0;                               // relative to the data section
  uint64_t n_elements = 0;
  std::optional<uint64_t> byte_size;                 // nullopt when the type is unknown

  int64_t cols() const { return ne[0]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }  // fits: n_elements was checked
  bool has_type(GgmlType t) const { return type == static_cast<uint32_t>(t); }
};

class GgufFile {
 public:
  static GgufFile open(const std::filesystem::path& path);
  // Parse a file already in memory (tests, fuzzing); `label` names it in errors.
  static GgufFile from_bytes(std::vector<uint8_t> bytes, std::string label);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const std::string& path() const { return file_.name(); }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. Without a default a missing key is an error; with one, only a wrong type is.
  // Integer getters accept any integer type whose value fits; get_f32 accepts f32, f64, integers.
  std::string get_string(std::string_view key) const;
  std::string get_string(std::string_view key, std::string fallback) const;
  uint32_t get_u32(std::string_view key) const;
  uint32_t get_u32(std::string_view key, uint32_t fallback) const;
  uint64_t get_u64(std::string_view key) const;
  uint64_t get_u64(std::string_view key, uint64_t fallback) const;
  int32_t get_i32(std::string_view key) const;
  int32_t get_i32(std::string_view key, int32_t fallback) const;
  int64_t get_i64(std::string_view key) const;
  int64_t get_i64(std::string_view key, int64_t fallback) const;
  float get_f32(std::string_view key) const;
  float get_f32(std::string_view key, float fallback) const;
  bool get_bool(std::string_view key) const;
  bool get_bool(std::string_view key, bool fallback) const;
  // Arrays: a missing key or another element type is an error.
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;      // f32/f64/integer elements
  std::vector<int32_t> get_i32_array(std::string_view key) const;    // any integer elements that fit

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // Like find_tensor, but a missing tensor is an error naming the file and the tensor.
  const GgufTensorInfo& tensor(std::string_view name) const;
  // The tensor's bytes. Throws for a tensor whose type is unknown (naming tensor and type number).
  std::span<const uint8_t> tensor_bytes(const GgufTensorInfo& info) const;

  // The whole data section (from the aligned start to the end of the file).
  std::span<const uint8_t> data_section() const;
  uint64_t data_offset() const { return data_offset_; }

 private:
  explicit GgufFile(MappedFile file) : file_(std::move(file)) {}
  void parse();
  const GgufValue& require(std::string_view key) const;
  [[noreturn]] void fail_key(std::string_view key, const GgufValue& v, std::string_view want) const;
  int64_t get_integer(std::string_view key, int64_t min, int64_t max, std::string_view want) const;
  uint64_t get_unsigned(std::string_view key, uint64_t max, std::string_view want) const;

  MappedFile file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace ternvk
