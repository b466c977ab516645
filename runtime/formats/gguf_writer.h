// Writes small GGUF files (v2 or v3): metadata of any type and tensors, each tensor's data aligned.
// Used by tests to build models in every weight format and by fuzzers as a source of valid files.
// Everything is built in memory: this is for test-sized models, not for converting 2B-weight files.
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/formats/ggml_types.h"
#include "runtime/formats/gguf_value.h"

namespace ternvk {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  // Sets (or replaces, keeping its place) a metadata key.
  void set(std::string key, GgufValue value);
  void set_string(std::string key, std::string v) { set(std::move(key), GgufValue::string(std::move(v))); }
  void set_u32(std::string key, uint32_t v) { set(std::move(key), GgufValue::u32(v)); }
  void set_i32(std::string key, int32_t v) { set(std::move(key), GgufValue::i32(v)); }
  void set_f32(std::string key, float v) { set(std::move(key), GgufValue::f32(v)); }
  void set_bool(std::string key, bool v) { set(std::move(key), GgufValue::boolean(v)); }
  // Also writes `general.alignment`; must be a power of two.
  void set_alignment(uint32_t alignment);

  // `ne` innermost first (ne[0] = row length), 1..4 dims. For a known ggml type the data size must
  // match the shape (throws ternvk::Error otherwise); an unknown type number takes the bytes as given.
  void add_tensor(std::string name, std::vector<int64_t> ne, uint32_t ggml_type,
                  std::vector<uint8_t> data);
  void add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type,
                  std::vector<uint8_t> data) {
    add_tensor(std::move(name), std::move(ne), static_cast<uint32_t>(type), std::move(data));
  }
  // Convenience: float data stored as F32, F16 or BF16.
  void add_float_tensor(std::string name, std::vector<int64_t> ne, GgmlType type,
                        std::span<const float> values);

  std::vector<uint8_t> to_bytes() const;
  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  uint32_t version_;
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

// Writes `bytes` to `path` (truncating), throwing ternvk::Error naming the path on failure.
void write_file_bytes(const std::filesystem::path& path, std::span<const uint8_t> bytes);

}  // namespace ternvk
