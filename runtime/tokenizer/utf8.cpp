#include "runtime/tokenizer/utf8.h"

#include <cstdint>

#include "runtime/core/error.h"

namespace ternvk {
namespace {

// Expected sequence length from the lead byte (0: not a lead byte).
size_t lead_length(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// The allowed range of the second byte depends on the lead byte: this is what rules out overlong
// forms, UTF-16 surrogates and code points above U+10FFFF (Unicode Table 3-7).
bool second_byte_ok(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

bool continuation(uint8_t b) { return b >= 0x80 && b <= 0xBF; }

// How many bytes from pos form a valid (possibly truncated) prefix of one sequence.
size_t valid_prefix(std::string_view text, size_t pos, size_t* expected) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  *expected = lead_length(lead);
  if (*expected == 0) return 0;
  size_t n = 1;
  while (n < *expected && pos + n < text.size()) {
    const auto b = static_cast<uint8_t>(text[pos + n]);
    if (n == 1 ? !second_byte_ok(lead, b) : !continuation(b)) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t utf8_sequence_length(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  size_t expected = 0;
  const size_t n = valid_prefix(text, pos, &expected);
  return (expected != 0 && n == expected) ? n : 0;
}

size_t utf8_incomplete_prefix_length(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  size_t expected = 0;
  const size_t n = valid_prefix(text, pos, &expected);
  // Incomplete only if the valid prefix runs into the end of the text before it is complete.
  return (expected != 0 && n < expected && pos + n == text.size()) ? n : 0;
}

size_t utf8_incomplete_tail_length(std::string_view text) {
  // A partial character is at most 3 bytes, and only its lead byte can start a prefix that
  // runs into the end of the text.
  for (size_t back = 1; back <= 3 && back <= text.size(); ++back) {
    const size_t pos = text.size() - back;
    if (utf8_incomplete_prefix_length(text, pos) == back) return back;
  }
  return 0;
}

std::optional<size_t> find_invalid_utf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = utf8_sequence_length(text, pos);
    if (n == 0) return pos;
    pos += n;
  }
  return std::nullopt;
}

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    if (const size_t n = utf8_sequence_length(text, pos); n != 0) {
      out.append(text.substr(pos, n));
      pos += n;
      continue;
    }
    // One U+FFFD per maximal subpart: a valid-but-broken prefix counts as one unit, a stray byte too.
    size_t expected = 0;
    const size_t prefix = valid_prefix(text, pos, &expected);
    out.append(kReplacementCharacter);
    pos += prefix == 0 ? 1 : prefix;
  }
  return out;
}

void require_valid_utf8(std::string_view text, std::string_view what) {
  if (const auto bad = find_invalid_utf8(text)) {
    throw Error(std::string(what) + " is not valid UTF-8: byte 0x" +
                "0123456789ABCDEF"[static_cast<uint8_t>(text[*bad]) >> 4] +
                "0123456789ABCDEF"[static_cast<uint8_t>(text[*bad]) & 15] + " at offset " +
                std::to_string(*bad) + " (pass text through sanitize_utf8() to replace bad bytes)");
  }
}

}  // namespace ternvk
