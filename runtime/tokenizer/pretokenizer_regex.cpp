#include "runtime/tokenizer/pretokenizer_regex.h"

#include <pcre2.h>

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/tokenizer/utf8.h"

namespace ternvk {

struct PretokenizerRegex::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

std::optional<std::string_view> pretokenizer_pattern_for(std::string_view name) {
  if (name == "gpt-2") return kGpt2Pattern;
  if (name == "llama-bpe") return kLlama3Pattern;
  return std::nullopt;
}

PretokenizerRegex::PretokenizerRegex(std::string_view pattern)
    : compiled_(std::make_unique<Compiled>()), pattern_(pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  compiled_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (compiled_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    throw Error("pre-tokenizer regex does not compile at offset " + std::to_string(offset) + ": " +
                reinterpret_cast<const char*>(message) + " (pattern: " + pattern_ + ")");
  }
  // The JIT makes splitting several times faster; where it is unavailable the interpreter is fine.
  pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);
}

PretokenizerRegex::~PretokenizerRegex() = default;
PretokenizerRegex::PretokenizerRegex(PretokenizerRegex&&) noexcept = default;
PretokenizerRegex& PretokenizerRegex::operator=(PretokenizerRegex&&) noexcept = default;

std::vector<std::string_view> PretokenizerRegex::split(std::string_view text) const {
  // PCRE2 in UTF mode has undefined behaviour on invalid UTF-8 once its own check is skipped, so
  // check once here and skip it per match (checking per match would be quadratic).
  require_valid_utf8(text, "text to pre-tokenize");
  std::vector<std::string_view> words;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(compiled_->code, nullptr), &pcre2_match_data_free);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match(compiled_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                               match.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw Error(std::string("pre-tokenizer regex failed: ") +
                  reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
    size_t start = span[0], end = span[1];
    if (start > pos) words.push_back(text.substr(pos, start - pos));
    if (end == start) {
      // An empty match cannot make progress: take one character as a word of its own.
      end = start + std::max<size_t>(1, utf8_sequence_length(text, start));
    }
    words.push_back(text.substr(start, end - start));
    pos = end;
  }
  if (pos < text.size()) words.push_back(text.substr(pos));
  return words;
}

}  // namespace ternvk
