// A little-endian cursor over untrusted bytes: every read is bounds-checked and a short read
// throws ternvk::Error naming the file, the offset and what was being read.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "runtime/core/error.h"

namespace ternvk {

class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> bytes, std::string_view source_name)
      : bytes_(bytes), name_(source_name) {}

  uint64_t position() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }
  std::string_view source_name() const { return name_; }

  template <typename T>
  T read(std::string_view what) {
    require(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));  // the host is little-endian (x86/ARM)
    pos_ += sizeof(T);
    return value;
  }

  std::span<const uint8_t> read_bytes(uint64_t n, std::string_view what) {
    require(n, what);
    auto out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  [[noreturn]] void fail(std::string_view message) const {
    throw Error(std::string(name_) + ": " + std::string(message) + " (at byte offset " +
                std::to_string(pos_) + ")");
  }

  void require(uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      throw Error(std::string(name_) + ": file ends while reading " + std::string(what) +
                  " at byte offset " + std::to_string(pos_) + " (need " + std::to_string(n) +
                  " bytes, " + std::to_string(remaining()) + " left) — truncated or corrupt file?");
    }
  }

 private:
  std::span<const uint8_t> bytes_;
  std::string_view name_;
  uint64_t pos_ = 0;
};

}  // namespace ternvk
