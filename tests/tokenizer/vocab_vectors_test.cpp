// llama.cpp's tokenizer test vectors (and the LLaMA 3 ones made by two independent tokenizers):
// every case must give exactly the reference ids. Each mismatch is reported with its case number.
#include <doctest/doctest.h>

#include "tokenizer/fixtures.h"

namespace ternvk::test {
namespace {

// Checks every case; returns how many matched (so the summary line says how far off a run is).
int check_vectors(const Tokenizer& tokenizer, const std::string& inp, const std::string& out) {
  const auto inputs = read_vocab_test_inputs(tokenizer_data(inp));
  const auto expected = read_vocab_test_outputs(tokenizer_data(out));
  REQUIRE(inputs.size() == expected.size());
  REQUIRE(!inputs.empty());
  int passed = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    // The reference tokenizers recognise special tokens written in the text.
    const auto ids = tokenizer.encode(inputs[i], /*add_bos=*/false, /*parse_special=*/true);
    INFO("case " << i << " of " << inp << ": \"" << inputs[i] << "\"");
    CHECK(ids_to_string(ids) == ids_to_string(expected[i]));
    passed += ids == expected[i];
  }
  MESSAGE(inp << ": " << passed << "/" << inputs.size() << " cases match");
  return passed;
}

}  // namespace

TEST_CASE("llama-spm vectors through the LLaMA-2 tokenizer.model") {
  check_vectors(llama2_model_file(), "ggml-vocab-llama-spm.gguf.inp",
                "ggml-vocab-llama-spm.gguf.out");
}

TEST_CASE("llama-spm vectors through the GGUF vocabulary") {
  check_vectors(llama_spm_gguf(), "ggml-vocab-llama-spm.gguf.inp", "ggml-vocab-llama-spm.gguf.out");
}

TEST_CASE("gpt-2 vectors through the GGUF vocabulary") {
  check_vectors(gpt2_gguf(), "ggml-vocab-gpt-2.gguf.inp", "ggml-vocab-gpt-2.gguf.out");
}

TEST_CASE("llama3 vectors through tokenizer.json") {
  check_vectors(llama3_json(), "llama3/llama3.inp", "llama3/llama3.out");
}

TEST_CASE("llama3 vectors through the GGUF vocabulary") {
  check_vectors(llama3_gguf(), "llama3/llama3.inp", "llama3/llama3.out");
}

}  // namespace ternvk::test
