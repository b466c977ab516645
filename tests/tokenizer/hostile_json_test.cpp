// tokenizer.json and tokenizer_config.json made to hurt the loader: deep nesting, ids that would
// size the vocabulary to gigabytes, values of the wrong type, and thousands of random mutations.
// Every failure must be a ternvk::Error naming the file and the JSON path of the value, with host
// memory bounded (common/heap_limit.h).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/heap_limit.h"
#include "common/json_fuzz.h"
#include "runtime/core/error.h"
#include "runtime/tokenizer/byte_level_alphabet.h"
#include "runtime/tokenizer/hf_tokenizer_json.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk::test {
namespace {

using nlohmann::json;

// A small byte-level BPE tokenizer.json in the LLaMA 3 layout: 256 byte tokens, two merges,
// special tokens, the Split + ByteLevel pre-tokenizer.
std::string tiny_tokenizer_json() {
  const ByteLevelAlphabet alphabet;
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[alphabet.spelling(static_cast<uint8_t>(b))] = b;
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  json added = json::array();
  added.push_back({{"id", 258}, {"content", "<|begin_of_text|>"}, {"special", true}});
  added.push_back({{"id", 259}, {"content", "<|end_of_text|>"}, {"special", true}});
  added.push_back({{"id", 260}, {"content", "<|eot_id|>"}, {"special", true}});
  const json pre = {{"type", "Sequence"},
                    {"pretokenizers",
                     {{{"type", "Split"}, {"pattern", {{"Regex", " ?\\p{L}+|\\p{N}{1,3}|\\s+"}}}, {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  const json root = {{"version", "1.0"},
                     {"added_tokens", added},
                     {"normalizer", nullptr},
                     {"pre_tokenizer", pre},
                     {"model",
                      {{"type", "BPE"},
                       {"byte_fallback", false},
                       {"ignore_merges", true},
                       {"vocab", vocab},
                       {"merges", json::array({"a b", json::array({"ab", "c"})})}}}};
  return root.dump(1);
}

const char* const kTinyConfig = R"({
  "bos_token": {"content": "<|begin_of_text|>", "special": true},
  "eos_token": "<|end_of_text|>",
  "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ messages }}"}],
  "model_max_length": 1000000000000000019884624838656
})";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(not a ternvk::Error: ") + e.what() + ")";
  }
  return "(no error)";
}

void require_mentions(const std::string& message, std::initializer_list<std::string> parts) {
  INFO("error: " << message);
  for (const auto& p : parts) CHECK_MESSAGE(message.find(p) != std::string::npos, "missing: " << p);
}

std::unique_ptr<Tokenizer> parse(const std::string& text, const std::optional<std::string>& config = std::nullopt) {
  std::optional<HfTokenizerConfig> c;
  if (config) c = parse_hf_tokenizer_config(*config, "t/tokenizer_config.json");
  return parse_hf_tokenizer_json(text, "t/tokenizer.json", c);
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::filesystem::path write_file(const std::string& dir_name, const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::path(TERNVK_BINARY_DIR) / "tokenizer_test_tmp" / dir_name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << text;
  return dir / name;
}

}  // namespace

TEST_CASE("the tiny tokenizer.json and its config load (the seed of every case below)") {
  const auto t = parse(tiny_tokenizer_json(), std::string(kTinyConfig));
  CHECK(t->vocab_size() == 261);
  CHECK(t->bos() == 258);
  CHECK(t->eos() == 259);
  CHECK(t->chat_template() == "{{ messages }}");
  CHECK(t->encode("abc", false) == std::vector<TokenId>{257});
}

TEST_CASE("tokenizer.json and tokenizer_config.json nested half a million levels deep name the file") {
  const std::string deep = std::string(500000, '[') + std::string(500000, ']');
  // model.merges[i] was printed with json::dump() (recursive) when it was not a pair.
  const auto file = write_file("deep", "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [" +
                                                            deep + "]}}");
  require_mentions(error_of([&] { load_tokenizer_from_files(file); }), {file.string(), "nested deeper than 64"});
  write_file("deep", "tokenizer.json", tiny_tokenizer_json());
  const auto config = write_file("deep", "tokenizer_config.json", "{\"bos_token\": " + deep + "}");
  require_mentions(error_of([&] { load_tokenizer_from_files(file); }), {config.string(), "nested deeper"});
}

TEST_CASE("token ids far beyond the vocabulary are refused without sizing a vocabulary for them") {
  HeapLimit heap(size_t{64} << 20);  // 2^30 tokens would take 32 GiB
  // 60 bytes that once claimed a vocabulary of 2^30 entries.
  const std::string sixty = R"({"model":{"type":"BPE","vocab":{"a":1073741824},"merges":[]}})";
  require_mentions(error_of([&] { parse(sixty); }),
                   {"t/tokenizer.json", "model.vocab[\"a\"]", "token id 1073741824", "the 1 tokens the file defines"});
  require_mentions(error_of([&] { parse(replaced(tiny_tokenizer_json(), "\"id\": 259", "\"id\": 2147483648")); }),
                   {"t/tokenizer.json", "added_tokens[1].id", "token id 2147483648"});
  require_mentions(error_of([&] { parse(replaced(tiny_tokenizer_json(), "\"id\": 259", "\"id\": 18446744073709551615")); }),
                   {"added_tokens[1].id", "18446744073709551615", "beyond any vocabulary"});
  require_mentions(error_of([&] { parse(replaced(tiny_tokenizer_json(), "\"id\": 259", "\"id\": -3")); }),
                   {"added_tokens[1].id", "negative"});
  // A few holes are fine (ids no list defines become placeholders).
  const auto t = parse(replaced(tiny_tokenizer_json(), "\"id\": 260", "\"id\": 400"));
  CHECK(t->vocab_size() == 401);
  MESSAGE("peak host memory: " << heap.peak() << " bytes");
}

TEST_CASE("values of the wrong type name the file and the JSON path") {
  const std::string good = tiny_tokenizer_json();
  require_mentions(error_of([&] { parse(replaced(good, "\"abc\": 257", "\"abc\": \"x\"")); }),
                   {"t/tokenizer.json", "model.vocab[\"abc\"]", "must be an integer token id", "\"x\""});
  require_mentions(error_of([&] { parse(replaced(good, "\"content\": \"<|eot_id|>\"", "\"content\": 5")); }),
                   {"added_tokens[2].content", "must be a string"});
  require_mentions(error_of([&] { parse(replaced(good, "\"a b\"", "[1, 2]")); }), {"model.merges[0][0]", "must be a string"});
  require_mentions(error_of([&] { parse(replaced(good, "\"a b\"", "{\"x\": [[[1]]]}")); }),
                   {"model.merges[0]", "is an object of 1 key"});
  require_mentions(error_of([&] { parse(replaced(good, "\"ignore_merges\": true", "\"ignore_merges\": \"yes\"")); }),
                   {"model.ignore_merges", "true or false"});
  require_mentions(error_of([&] { parse(replaced(good, "\"Regex\": \"", "\"Regex\": \"(")); }),
                   {"t/tokenizer.json", "regex does not compile"});
  require_mentions(error_of([&] { parse(replaced(good, "\"vocab\": {", "\"vocab\": [{")); }), {"not valid JSON"});
  require_mentions(error_of([&] { parse(good, replaced(kTinyConfig, "\"special\": true", "\"content\": 5")); }),
                   {"t/tokenizer_config.json", "bos_token.content", "must be a string"});
  require_mentions(error_of([&] { parse(good, replaced(kTinyConfig, "\"template\": \"x\"", "\"template\": 7, \"name\": 3")); }),
                   {"t/tokenizer_config.json", "chat_template[0].name"});
  require_mentions(error_of([&] { parse(good, "[1]"); }), {"t/tokenizer_config.json", "must be an object"});
}

TEST_CASE("fuzz: mutated tokenizer.json files only ever produce ternvk::Error naming the file") {
  fuzz_json(tiny_tokenizer_json(), 5150, 6000, "t/tokenizer.json", [](const std::string& text) { (void)parse(text); });
}

TEST_CASE("fuzz: mutated tokenizer_config.json files only ever produce ternvk::Error naming the file") {
  const std::string tokenizer = tiny_tokenizer_json();
  fuzz_json(kTinyConfig, 2718, 6000, "t/tokenizer_config.json", [&](const std::string& text) {
    const HfTokenizerConfig config = parse_hf_tokenizer_config(text, "t/tokenizer_config.json");
    (void)parse_hf_tokenizer_json(tokenizer, "t/tokenizer.json", config);
  });
}

}  // namespace ternvk::test
