// GPT-2's byte-to-unicode alphabet: byte-level BPE vocabularies spell every byte as one printable
// code point (space -> "Ġ" U+0120, newline -> "Ċ" U+010A, printable ASCII and most Latin-1 as
// themselves), so that the merges file never contains whitespace or control bytes.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ternvk {

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet();

  // The vocabulary spelling of raw bytes ("Hello world" -> "HelloĠworld").
  std::string encode(std::string_view bytes) const;
  // The bytes behind a vocabulary spelling; nullopt when it holds a code point outside the alphabet.
  std::optional<std::string> decode(std::string_view spelling) const;
  // The UTF-8 spelling of one byte.
  const std::string& spelling(uint8_t byte) const { return spelling_[byte]; }

 private:
  std::array<std::string, 256> spelling_;
  std::array<int16_t, 324> byte_of_code_point_;  // code points used are all below 324; -1: unused
};

}  // namespace ternvk
