// decode(encode(x)) == x on every test-vector input, through every vocabulary: SentencePiece's dummy
// prefix is dropped again, byte fallback and byte-level pieces are reassembled into UTF-8.
#include <doctest/doctest.h>

#include "tokenizer/fixtures.h"

namespace ternvk::test {
namespace {

void check_round_trips(const Tokenizer& tokenizer, const std::string& inp) {
  int passed = 0;
  const auto inputs = read_vocab_test_inputs(tokenizer_data(inp));
  for (size_t i = 0; i < inputs.size(); ++i) {
    INFO("case " << i << ": \"" << inputs[i] << "\"");
    // parse_special off: text that spells a control token must come back as that text.
    const auto ids = tokenizer.encode(inputs[i], /*add_bos=*/true, /*parse_special=*/false);
    const std::string back = tokenizer.decode(ids);
    CHECK(back == inputs[i]);
    passed += back == inputs[i];
  }
  MESSAGE(inp << ": " << passed << "/" << inputs.size() << " round trips exact");
}

}  // namespace

TEST_CASE("round trip: SentencePiece .model") {
  check_round_trips(llama2_model_file(), "ggml-vocab-llama-spm.gguf.inp");
}
TEST_CASE("round trip: SentencePiece from GGUF") {
  check_round_trips(llama_spm_gguf(), "ggml-vocab-llama-spm.gguf.inp");
}
TEST_CASE("round trip: GPT-2 from GGUF") {
  check_round_trips(gpt2_gguf(), "ggml-vocab-gpt-2.gguf.inp");
}
TEST_CASE("round trip: LLaMA 3 tokenizer.json and GGUF") {
  check_round_trips(llama3_json(), "llama3/llama3.inp");
  check_round_trips(llama3_gguf(), "llama3/llama3.inp");
}

TEST_CASE("decode renders control tokens only when asked") {
  const Tokenizer& t = llama3_json();
  const auto ids = t.encode("Hi<|eot_id|>", /*add_bos=*/true, /*parse_special=*/true);
  CHECK(t.decode(ids) == "Hi");
  CHECK(t.decode(ids, /*render_special=*/true) == "<|begin_of_text|>Hi<|eot_id|>");
  const Tokenizer& spm = llama2_model_file();
  CHECK(spm.decode(spm.encode("Hi", true)) == "Hi");
  CHECK(spm.decode(spm.encode("Hi", true), true) == "<s> Hi");  // as Hugging Face shows it
}

TEST_CASE("both sources of a vocabulary agree on metadata") {
  CHECK(llama3_json().vocab_size() == 128256);
  CHECK(llama3_gguf().vocab_size() == 128256);
  for (const Tokenizer* t : {&llama3_json(), &llama3_gguf()}) {
    CHECK(t->bos() == 128000);
    CHECK(t->eos() == 128001);
    CHECK(t->eot() == 128009);
    CHECK(t->is_special(128009));
    CHECK_FALSE(t->is_special(9906));
    CHECK(t->token_piece(128009) == "<|eot_id|>");
    CHECK(t->token_piece(1917) == "\xC4\xA0world");  // "Ġworld"
    CHECK(t->token_bytes(1917) == " world");
    CHECK(t->find_token("<|eot_id|>") == 128009);
    CHECK(t->chat_template().find("<|start_header_id|>") != std::string::npos);
  }
  for (const Tokenizer* t : {&llama2_model_file(), &llama_spm_gguf()}) {
    CHECK(t->vocab_size() == 32000);
    CHECK(t->bos() == 1);
    CHECK(t->eos() == 2);
    CHECK(t->eot() == 2);
    CHECK(t->token_type(0) == TokenType::kUnknown);
    CHECK(t->token_type(13) == TokenType::kByte);
    CHECK(t->token_bytes(13) == "\n");
    CHECK(t->token_piece(15043) == "\xE2\x96\x81Hello");
    CHECK(t->token_bytes(15043) == " Hello");
    CHECK(t->adds_dummy_prefix());
    CHECK(t->find_token("</s>") == 2);
    CHECK_FALSE(t->find_token("no such piece").has_value());
  }
  CHECK(gpt2_gguf().vocab_size() == 50257);
  CHECK(gpt2_gguf().eos() == 50256);
  CHECK_FALSE(gpt2_gguf().adds_dummy_prefix());
}

}  // namespace ternvk::test
