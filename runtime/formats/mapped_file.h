// A read-only view of a whole file, mapped with mmap (move-only RAII). Model files are gigabytes:
// mapping lets the loader read only what it touches and hand spans straight to the upload path.
// `from_memory` wraps an in-memory buffer behind the same interface so tests and fuzzers can parse
// mutated files without touching the disk.
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace ternvk {

class MappedFile {
 public:
  // Throws ternvk::Error naming the path and the OS reason when the file is missing or unreadable.
  static MappedFile open(const std::filesystem::path& path);
  // `label` stands in for the path in error messages.
  static MappedFile from_memory(std::vector<uint8_t> bytes, std::string label);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  // The path (or label) to put in error messages.
  const std::string& name() const { return name_; }

 private:
  void release() noexcept;

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;           // true: data_ came from mmap and must be unmapped
  std::vector<uint8_t> owned_;    // the buffer behind from_memory()
  std::string name_;
};

}  // namespace ternvk
