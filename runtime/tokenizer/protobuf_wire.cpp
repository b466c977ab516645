#include "runtime/tokenizer/protobuf_wire.h"

#include <cstring>

namespace ternvk::protobuf {
namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

uint64_t tag(uint32_t field, WireType type) { return (uint64_t{field} << 3) | type; }

bool read_varint(std::string_view in, size_t& pos, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && pos < in.size(); shift += 7) {
    const auto b = static_cast<uint8_t>(in[pos++]);
    value |= uint64_t{b & 0x7Fu} << shift;
    if (b < 0x80) return true;
  }
  return false;
}

struct Field {
  uint32_t number = 0;
  uint32_t type = 0;
  uint64_t varint = 0;
  std::string_view bytes;
};

// Walks every field; `visit` sees each one. Returns false on malformed input.
template <typename Visit>
bool for_each_field(std::string_view in, Visit visit) {
  for (size_t pos = 0; pos < in.size();) {
    uint64_t key = 0;
    if (!read_varint(in, pos, key)) return false;
    Field f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.type = static_cast<uint32_t>(key & 7);
    switch (f.type) {
      case kVarint:
        if (!read_varint(in, pos, f.varint)) return false;
        break;
      case kFixed64:
      case kFixed32: {
        const size_t n = f.type == kFixed64 ? 8 : 4;
        if (in.size() - pos < n) return false;
        f.bytes = in.substr(pos, n);
        pos += n;
        break;
      }
      case kLengthDelimited: {
        uint64_t n = 0;
        if (!read_varint(in, pos, n) || n > in.size() - pos) return false;
        f.bytes = in.substr(pos, n);
        pos += n;
        break;
      }
      default:
        return false;  // groups are deprecated and never used by sentencepiece
    }
    visit(f);
  }
  return true;
}

}  // namespace

void Writer::put_varint(uint64_t value) {
  while (value >= 0x80) {
    out_.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out_.push_back(static_cast<char>(value));
}

void Writer::add_varint(uint32_t field, uint64_t value) {
  put_varint(tag(field, kVarint));
  put_varint(value);
}

void Writer::add_float(uint32_t field, float value) {
  put_varint(tag(field, kFixed32));
  char raw[4];
  std::memcpy(raw, &value, 4);  // little-endian hosts only, like the rest of the runtime
  out_.append(raw, 4);
}

void Writer::add_bytes(uint32_t field, std::string_view bytes) {
  put_varint(tag(field, kLengthDelimited));
  put_varint(bytes.size());
  out_.append(bytes);
}

std::optional<uint64_t> find_varint(std::string_view message, uint32_t field) {
  std::optional<uint64_t> found;
  for_each_field(message, [&](const Field& f) {
    if (f.number == field && f.type == kVarint) found = f.varint;
  });
  return found;
}

std::optional<std::string_view> find_bytes(std::string_view message, uint32_t field) {
  std::optional<std::string_view> found;
  for_each_field(message, [&](const Field& f) {
    if (f.number == field && f.type == kLengthDelimited) found = f.bytes;
  });
  return found;
}

}  // namespace ternvk::protobuf
