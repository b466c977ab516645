// parse_special decides whether "<|eot_id|>" in text is the control token or just text: a chat
// runtime encodes user messages with it off, so users cannot forge turns.
#include <doctest/doctest.h>

#include <algorithm>

#include "tokenizer/fixtures.h"

namespace ternvk::test {

TEST_CASE("special tokens: recognised with parse_special, plain text without") {
  for (const Tokenizer* t : {&llama3_json(), &llama3_gguf()}) {
    const std::string text = "Hi<|eot_id|><|start_header_id|>assistant";
    const auto parsed = t->encode(text, false, /*parse_special=*/true);
    CHECK(std::count(parsed.begin(), parsed.end(), 128009) == 1);
    CHECK(std::count(parsed.begin(), parsed.end(), 128006) == 1);
    const auto plain = t->encode(text, false, /*parse_special=*/false);
    CHECK(std::none_of(plain.begin(), plain.end(), [&](TokenId id) { return t->is_special(id); }));
    CHECK(t->decode(plain) == text);
    CHECK(t->encode("<|eot_id|>", false, true) == std::vector<TokenId>{128009});
    CHECK(t->encode("<|begin_of_text|>", true, true) == std::vector<TokenId>{128000, 128000});
  }
  const Tokenizer& spm = llama2_model_file();
  const auto parsed = spm.encode("<s>Hi</s>", false, true);
  CHECK(parsed.front() == 1);
  CHECK(parsed.back() == 2);
  const auto plain = spm.encode("<s>Hi</s>", false, false);
  CHECK(std::count(plain.begin(), plain.end(), 1) == 0);
  CHECK(std::count(plain.begin(), plain.end(), 2) == 0);
  // GPT-2's only special token.
  CHECK(gpt2_gguf().encode("a<|endoftext|>", false, true).back() == 50256);
  CHECK(gpt2_gguf().encode("a<|endoftext|>", false, false).back() != 50256);
}

TEST_CASE("special tokens: SentencePiece text after a control token gets its own dummy prefix") {
  // llama.cpp's rule: each text fragment that follows a special token starts with "▁".
  const Tokenizer& spm = llama_spm_gguf();
  CHECK(spm.encode("<s>Hello", false, true) == std::vector<TokenId>{1, 15043});
  CHECK(spm.encode("Hello", true, false) == std::vector<TokenId>{1, 15043});
}

}  // namespace ternvk::test
