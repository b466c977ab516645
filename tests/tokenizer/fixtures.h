// Shared test data for the tokenizer tests: the vocab files under TERNVK_SHARED_DIR, each loaded
// once per test binary (the LLaMA 3 tokenizer.json alone takes a good fraction of a second).
#pragma once
#include <string>
#include <vector>

#include "runtime/tokenizer/tokenizer.h"

namespace ternvk::test {

std::string tokenizer_data(const std::string& relative);  // path under data/tokenizers/

// A .inp file: cases separated by "\n__ggml_vocab_test__\n", read as bytes (some hold "\r\n").
std::vector<std::string> read_vocab_test_inputs(const std::string& path);
// A .out file: one line of space-separated ids per case (no BOS).
std::vector<std::vector<TokenId>> read_vocab_test_outputs(const std::string& path);

const Tokenizer& llama2_model_file();   // llama2-tokenizer.model
const Tokenizer& llama_spm_gguf();      // ggml-vocab-llama-spm.gguf
const Tokenizer& gpt2_gguf();           // ggml-vocab-gpt-2.gguf
const Tokenizer& llama3_json();         // llama3/tokenizer.json (+ tokenizer_config.json)
const Tokenizer& llama3_gguf();         // llama3/llama3-vocab.gguf

std::string ids_to_string(const std::vector<TokenId>& ids);

}  // namespace ternvk::test
