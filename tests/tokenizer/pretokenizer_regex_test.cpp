// The pre-tokenizer regexes against their published definitions (LLaMA 3 tokenizer.py / tokenizer.json,
// GPT-2 encoder.py): where words are cut decides which merges can happen.
#include <doctest/doctest.h>

#include "runtime/core/error.h"
#include "runtime/tokenizer/pretokenizer_regex.h"

namespace ternvk::test {
namespace {

std::vector<std::string> words(std::string_view pattern, std::string_view text) {
  const PretokenizerRegex regex(pattern);
  std::vector<std::string> out;
  for (const auto w : regex.split(text)) out.emplace_back(w);
  return out;
}

using W = std::vector<std::string>;

}  // namespace

TEST_CASE("llama3 pre-tokenizer: contractions in any case") {
  CHECK(words(kLlama3Pattern, "I'M SURE YOU'LL") == W{"I", "'M", " SURE", " YOU", "'LL"});
  CHECK(words(kLlama3Pattern, "we've they'd it'S") == W{"we", "'ve", " they", "'d", " it", "'S"});
  // Not a contraction: the apostrophe joins the following word as its optional prefix.
  CHECK(words(kLlama3Pattern, "'hello") == W{"'hello"});
}

TEST_CASE("llama3 pre-tokenizer: numbers split into runs of at most 3 digits") {
  CHECK(words(kLlama3Pattern, "1234567") == W{"123", "456", "7"});
  CHECK(words(kLlama3Pattern, " 42") == W{" ", "42"});  // the space is not glued to digits
  CHECK(words(kLlama3Pattern, "3.14159") == W{"3", ".", "141", "59"});
  CHECK(words(kLlama3Pattern, "x2") == W{"x", "2"});
  CHECK(words(kLlama3Pattern, "\xD9\xA3\xD9\xA4") == W{"\xD9\xA3\xD9\xA4"});  // Arabic-Indic digits
}

TEST_CASE("llama3 pre-tokenizer: whitespace") {
  CHECK(words(kLlama3Pattern, "hello world") == W{"hello", " world"});
  // Of a run of spaces the last one goes with the next word.
  CHECK(words(kLlama3Pattern, "a   b") == W{"a", "  ", " b"});
  CHECK(words(kLlama3Pattern, "a   ") == W{"a", "   "});
  // Newlines (with the whitespace before them) form their own word.
  CHECK(words(kLlama3Pattern, "a \n\n  b") == W{"a", " \n\n", " ", " b"});
  // Punctuation keeps the newlines that follow it.
  CHECK(words(kLlama3Pattern, "end.\n\nNext") == W{"end", ".\n\n", "Next"});
  CHECK(words(kLlama3Pattern, "\t\tx") == W{"\t", "\tx"});
  // Unicode spaces count as \s (UCP): NBSP, thin space, ideographic space.
  CHECK(words(kLlama3Pattern, "a\xC2\xA0" "b") == W{"a", "\xC2\xA0" "b"});
  CHECK(words(kLlama3Pattern, "a\xE3\x80\x80\xE3\x80\x80" "b") ==
        W{"a", "\xE3\x80\x80", "\xE3\x80\x80" "b"});
}

TEST_CASE("llama3 pre-tokenizer: letters of any script, one leading non-letter") {
  CHECK(words(kLlama3Pattern, "C\xE1\xBB\xAD" "a Vi\xE1\xBB\x87t") == W{"C\xE1\xBB\xAD" "a", " Vi\xE1\xBB\x87t"});
  CHECK(words(kLlama3Pattern, "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80") ==
        W{"\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", ",", " \xD0\xBC\xD0\xB8\xD1\x80"});
  CHECK(words(kLlama3Pattern, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E") == W{"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E"});
  CHECK(words(kLlama3Pattern, "$hello (x)") == W{"$hello", " (", "x", ")"});
  CHECK(words(kLlama3Pattern, "__init__") == W{"__", "init", "__"});
}

TEST_CASE("gpt-2 pre-tokenizer differs: lower-case contractions only, whole numbers") {
  CHECK(words(kGpt2Pattern, "I'M you'll") == W{"I", "'", "M", " you", "'ll"});
  CHECK(words(kGpt2Pattern, "1234567 42") == W{"1234567", " 42"});
  CHECK(words(kGpt2Pattern, "a   b") == W{"a", "  ", " b"});
}

TEST_CASE("pre-tokenizer: the words always cover the text exactly") {
  const std::string text = "Hello, y'all! 3.14 \xF0\x9F\xA6\x99\n\n\t end  ";
  for (const auto pattern : {kLlama3Pattern, kGpt2Pattern}) {
    std::string joined;
    for (const auto& w : words(pattern, text)) joined += w;
    CHECK(joined == text);
  }
}

TEST_CASE("pre-tokenizer: bad patterns and bad UTF-8 are errors, not crashes") {
  CHECK_THROWS_AS(PretokenizerRegex("(unclosed"), Error);
  const PretokenizerRegex regex(kLlama3Pattern);
  CHECK_THROWS_AS(regex.split("ab\xFF"), Error);
  CHECK(pretokenizer_pattern_for("llama-bpe") == kLlama3Pattern);
  CHECK(pretokenizer_pattern_for("gpt-2") == kGpt2Pattern);
  CHECK_FALSE(pretokenizer_pattern_for("qwen2").has_value());
}

}  // namespace ternvk::test
