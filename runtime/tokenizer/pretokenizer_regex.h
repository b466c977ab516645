// Splits text into the words that byte-level BPE then merges within (merges never cross a word
// boundary). Uses PCRE2 in UTF + UCP mode so \s, \p{L} and \p{N} follow Unicode, as the Rust/Oniguruma
// regexes of Hugging Face tokenizers do.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ternvk {

// The published patterns, by the names GGUF's tokenizer.ggml.pre uses.
// GPT-2 (openai/gpt-2 src/encoder.py):
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// LLaMA 3 (meta-llama/llama3 llama/tokenizer.py, as in its tokenizer.json): contractions in any
// case, numbers in runs of 1-3 digits, punctuation keeps trailing newlines.
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The pattern for a tokenizer.ggml.pre name (gpt-2, llama-bpe); nullopt for other names.
std::optional<std::string_view> pretokenizer_pattern_for(std::string_view gguf_pre_name);

class PretokenizerRegex {
 public:
  // Throws ternvk::Error with PCRE2's message and offset when the pattern does not compile.
  explicit PretokenizerRegex(std::string_view pattern);
  ~PretokenizerRegex();
  PretokenizerRegex(PretokenizerRegex&&) noexcept;
  PretokenizerRegex& operator=(PretokenizerRegex&&) noexcept;

  // Matches in order; text between matches (none, for the patterns above) becomes a word of its
  // own, like Hugging Face's Split(behavior = Isolated). Throws ternvk::Error on invalid UTF-8.
  std::vector<std::string_view> split(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
  std::string pattern_;
};

}  // namespace ternvk
