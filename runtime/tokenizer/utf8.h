// UTF-8 helpers shared by the encoders (which need valid input) and the streaming decoder (which must
// hand out only complete characters). Validation follows the Unicode "maximal subpart" rule, so an
// invalid stretch becomes the same number of U+FFFD as in browsers and Python's errors="replace".
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace ternvk {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at text[pos], or 0 when the bytes there are not a
// complete valid sequence (invalid, or cut short by the end of `text`).
size_t utf8_sequence_length(std::string_view text, size_t pos);

// Length of the longest prefix of text[pos..] that could still become a valid sequence if more bytes
// followed (0 when the bytes there are already invalid). Used to hold back a partial character.
size_t utf8_incomplete_prefix_length(std::string_view text, size_t pos);

// Length of a trailing partial character of `text` (0..3): bytes to hold back until more arrive.
size_t utf8_incomplete_tail_length(std::string_view text);

// Byte offset of the first invalid byte, or nullopt when `text` is valid UTF-8.
std::optional<size_t> find_invalid_utf8(std::string_view text);

// `text` with every maximal invalid subpart replaced by U+FFFD (valid input comes back unchanged).
std::string sanitize_utf8(std::string_view text);

// Throws ternvk::Error naming `what` and the byte offset when `text` is not valid UTF-8.
void require_valid_utf8(std::string_view text, std::string_view what);

}  // namespace ternvk
