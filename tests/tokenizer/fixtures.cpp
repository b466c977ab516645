#include "tokenizer/fixtures.h"

#include <fstream>
#include <memory>
#include <sstream>

#include "runtime/core/error.h"
#include "runtime/formats/gguf.h"

namespace ternvk::test {
namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open test data");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Tokenizer> from_gguf(const std::string& relative) {
  return load_tokenizer_from_gguf(GgufFile::open(tokenizer_data(relative)));
}

}  // namespace

std::string tokenizer_data(const std::string& relative) {
  return std::string(TERNVK_SHARED_DIR) + "/data/tokenizers/" + relative;
}

std::vector<std::string> read_vocab_test_inputs(const std::string& path) {
  constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";
  const std::string all = read_bytes(path);
  std::vector<std::string> cases;
  size_t start = 0;
  for (size_t sep; (sep = all.find(kSeparator, start)) != std::string::npos;) {
    cases.push_back(all.substr(start, sep - start));
    start = sep + kSeparator.size();
  }
  return cases;  // whatever follows the last separator is not a case
}

std::vector<std::vector<TokenId>> read_vocab_test_outputs(const std::string& path) {
  std::istringstream all(read_bytes(path));
  std::vector<std::vector<TokenId>> cases;
  for (std::string line; std::getline(all, line);) {
    std::istringstream ids(line);
    cases.emplace_back();
    for (TokenId id; ids >> id;) cases.back().push_back(id);
  }
  return cases;
}

const Tokenizer& llama2_model_file() {
  static const auto t = load_tokenizer_from_files(tokenizer_data("llama2-tokenizer.model"));
  return *t;
}
const Tokenizer& llama_spm_gguf() {
  static const auto t = from_gguf("ggml-vocab-llama-spm.gguf");
  return *t;
}
const Tokenizer& gpt2_gguf() {
  static const auto t = from_gguf("ggml-vocab-gpt-2.gguf");
  return *t;
}
const Tokenizer& llama3_json() {
  static const auto t = load_tokenizer_from_files(tokenizer_data("llama3/tokenizer.json"));
  return *t;
}
const Tokenizer& llama3_gguf() {
  static const auto t = from_gguf("llama3/llama3-vocab.gguf");
  return *t;
}

std::string ids_to_string(const std::vector<TokenId>& ids) {
  std::string s;
  for (const TokenId id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

}  // namespace ternvk::test
