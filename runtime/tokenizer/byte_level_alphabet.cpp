#include "runtime/tokenizer/byte_level_alphabet.h"

#include "runtime/tokenizer/utf8.h"

namespace ternvk {
namespace {

std::string utf8_of(uint32_t cp) {  // only needs the 1- and 2-byte forms (cp < 0x800)
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

bool printable_as_itself(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

}  // namespace

ByteLevelAlphabet::ByteLevelAlphabet() {
  byte_of_code_point_.fill(-1);
  uint32_t next_unused = 256;  // the other bytes take code points 256, 257, ... in byte order
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = printable_as_itself(b) ? static_cast<uint32_t>(b) : next_unused++;
    spelling_[b] = utf8_of(cp);
    byte_of_code_point_[cp] = static_cast<int16_t>(b);
  }
}

std::string ByteLevelAlphabet::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += spelling_[static_cast<uint8_t>(c)];
  return out;
}

std::optional<std::string> ByteLevelAlphabet::decode(std::string_view spelling) const {
  std::string out;
  out.reserve(spelling.size());
  for (size_t pos = 0; pos < spelling.size();) {
    const size_t n = utf8_sequence_length(spelling, pos);
    if (n == 0 || n > 2) return std::nullopt;
    const auto b0 = static_cast<uint8_t>(spelling[pos]);
    const uint32_t cp =
        n == 1 ? b0 : ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(spelling[pos + 1]) & 0x3Fu);
    if (cp >= byte_of_code_point_.size() || byte_of_code_point_[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(byte_of_code_point_[cp]));
    pos += n;
  }
  return out;
}

}  // namespace ternvk
