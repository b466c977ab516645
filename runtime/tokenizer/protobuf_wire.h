// The few pieces of the protobuf wire format needed to talk to libsentencepiece, whose Debian
// package ships no .proto headers: a writer for building a ModelProto, and a reader that finds one
// field in a serialized message. https://protobuf.dev/programming-guides/encoding/
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ternvk::protobuf {

// Appends fields to a serialized message. Nested messages are written by serializing them into
// their own writer first and adding the bytes as a length-delimited field.
class Writer {
 public:
  void add_varint(uint32_t field, uint64_t value);
  // int32 fields encode negatives as 10-byte two's-complement varints (proto2 rule).
  void add_int32(uint32_t field, int32_t value) {
    add_varint(field, static_cast<uint64_t>(static_cast<int64_t>(value)));
  }
  void add_bool(uint32_t field, bool value) { add_varint(field, value ? 1 : 0); }
  void add_float(uint32_t field, float value);
  void add_bytes(uint32_t field, std::string_view bytes);  // strings and nested messages

  const std::string& bytes() const { return out_; }

 private:
  void put_varint(uint64_t value);
  std::string out_;
};

// The last occurrence of a field in a serialized message (proto2: the last one wins), as its raw
// payload: a varint's value, or a length-delimited field's bytes. nullopt when absent or when the
// message is malformed before the field is reached.
std::optional<uint64_t> find_varint(std::string_view message, uint32_t field);
std::optional<std::string_view> find_bytes(std::string_view message, uint32_t field);

}  // namespace ternvk::protobuf
