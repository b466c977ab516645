// Small hand-built vocabularies: merge order, ignore_merges, and every way a file can be wrong
// (each must be a ternvk::Error that names the problem, never a crash).
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include "runtime/core/error.h"
#include "runtime/formats/gguf.h"
#include "runtime/formats/gguf_writer.h"
#include "runtime/tokenizer/byte_level_alphabet.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk::test {
namespace {

// Token b (0..255) is byte b; then the merge results. Merges in priority order.
struct TinyBpe {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  std::string pre = "gpt-2";
};

TinyBpe tiny_bpe(const std::vector<std::string>& merges) {
  const ByteLevelAlphabet alphabet;
  TinyBpe v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(alphabet.spelling(static_cast<uint8_t>(b)));
  for (const auto& m : merges) {
    const size_t space = m.find(' ');
    v.tokens.push_back(m.substr(0, space) + m.substr(space + 1));
  }
  v.types.assign(v.tokens.size(), 1);
  v.merges = merges;
  return v;
}

GgufFile to_gguf(const TinyBpe& v, const std::function<void(GgufWriter&)>& tweak = {}) {
  GgufWriter w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", v.pre);
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(v.tokens));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array(v.types));
  w.set("tokenizer.ggml.merges", GgufValue::string_array(v.merges));
  if (tweak) tweak(w);
  return GgufFile::from_bytes(w.to_bytes(), "tiny.gguf");
}

TokenId id_of(const Tokenizer& t, std::string_view spelling) { return *t.find_token(spelling); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool mentions(const std::string& message, std::string_view what) {
  return message.find(what) != std::string::npos;
}

std::filesystem::path temp_file(const std::string& name, const std::string& contents) {
  const auto dir = std::filesystem::path(TERNVK_BINARY_DIR) / "tokenizer_test_tmp";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << contents;
  return dir / name;
}

}  // namespace

TEST_CASE("BPE: merges apply lowest rank first, leftmost first on ties") {
  // "ab" outranks "bc": "abc" -> ab + c, not a + bc.
  const auto t = load_tokenizer_from_gguf(to_gguf(tiny_bpe({"a b", "b c"})));
  CHECK(t->encode("abc") == std::vector<TokenId>{id_of(*t, "ab"), 'c'});
  const auto u = load_tokenizer_from_gguf(to_gguf(tiny_bpe({"b c", "a b"})));
  CHECK(u->encode("abc") == std::vector<TokenId>{'a', id_of(*u, "bc")});
  // "aaa": the leftmost pair merges first.
  const auto v = load_tokenizer_from_gguf(to_gguf(tiny_bpe({"a a"})));
  CHECK(v->encode("aaa") == std::vector<TokenId>{id_of(*v, "aa"), 'a'});
  // Merges build on merges and never cross a pre-token boundary (" hello" is one word).
  const auto w = load_tokenizer_from_gguf(
      to_gguf(tiny_bpe({"h e", "l l", "he ll", "hell o", "\xC4\xA0 hello"})));
  CHECK(w->encode("hello hello") ==
        std::vector<TokenId>{id_of(*w, "hello"), id_of(*w, "\xC4\xA0hello")});
}

TEST_CASE("BPE: llama-bpe's ignore_merges emits a word that is itself a token whole") {
  // "abc" is a token that the merges cannot reach ("a b" then nothing).
  TinyBpe v = tiny_bpe({"a b"});
  v.tokens.push_back("abc");
  v.types.push_back(1);
  v.pre = "gpt-2";
  const auto merged_only = load_tokenizer_from_gguf(to_gguf(v));
  CHECK(merged_only->encode("abc").size() == 2);
  v.pre = "llama-bpe";
  const auto ignoring = load_tokenizer_from_gguf(to_gguf(v));
  CHECK(ignoring->encode("abc") == std::vector<TokenId>{id_of(*ignoring, "abc")});
}

TEST_CASE("BPE: a long word merges in reasonable time") {
  const auto t = load_tokenizer_from_gguf(to_gguf(tiny_bpe({"a a", "aa aa"})));
  const auto ids = t->encode(std::string(200000, 'a'));
  CHECK(ids.size() == 50000);
}

TEST_CASE("GGUF vocabulary errors name the file and the key") {
  const TinyBpe good = tiny_bpe({"a b"});
  CHECK(mentions(error_of([&] {
    load_tokenizer_from_gguf(to_gguf(good, [](GgufWriter& w) {
      w.set_string("tokenizer.ggml.model", "bert");
    }));
  }), "'bert' is not supported"));
  CHECK(mentions(error_of([&] {
    TinyBpe v = good;
    v.pre = "qwen2";
    load_tokenizer_from_gguf(to_gguf(v));
  }), "tokenizer.ggml.pre = 'qwen2'"));
  CHECK(mentions(error_of([&] {
    TinyBpe v = good;
    v.types.pop_back();
    load_tokenizer_from_gguf(to_gguf(v));
  }), "tokenizer.ggml.token_type has 256 entries"));
  CHECK(mentions(error_of([&] {
    TinyBpe v = good;
    v.types[3] = 9;
    load_tokenizer_from_gguf(to_gguf(v));
  }), "tokenizer.ggml.token_type[3] = 9"));
  CHECK(mentions(error_of([&] {
    TinyBpe v = good;
    v.merges.push_back("x yz");
    load_tokenizer_from_gguf(to_gguf(v));
  }), "merge 1 'x yz'"));
  CHECK(mentions(error_of([&] {
    TinyBpe v = good;
    v.merges.push_back("nospace");
    load_tokenizer_from_gguf(to_gguf(v));
  }), "expected two tokens separated by a space"));
  CHECK(mentions(error_of([&] {
    TinyBpe v = good;
    v.tokens.erase(v.tokens.begin() + 10);
    v.types.pop_back();
    load_tokenizer_from_gguf(to_gguf(v));
  }), "no token for byte"));
  CHECK(mentions(error_of([&] {
    load_tokenizer_from_gguf(to_gguf(good, [](GgufWriter& w) {
      w.set_u32("tokenizer.ggml.bos_token_id", 5000);
    }));
  }), "BOS token id 5000 is outside"));
  CHECK(mentions(error_of([&] {
    load_tokenizer_from_gguf(to_gguf(good, [](GgufWriter& w) {
      w.set_string("tokenizer.ggml.model", "llama");  // no scores/unk: not a SentencePiece vocab
    }));
  }), "tiny.gguf"));
  // No BOS in this vocabulary: asking for one is an error, not a silent omission.
  const auto t = load_tokenizer_from_gguf(to_gguf(good));
  CHECK(mentions(error_of([&] { t->encode("a", /*add_bos=*/true); }), "no BOS"));
}

TEST_CASE("a directory loads the tokenizer file inside it") {
  const auto t = load_tokenizer_from_files(std::string(TERNVK_SHARED_DIR) + "/data/tokenizers/llama3");
  CHECK(t->vocab_size() == 128256);
  CHECK(mentions(error_of([] { load_tokenizer_from_files(TERNVK_SOURCE_DIR "/runtime/core"); }),
                 "no tokenizer.json or tokenizer.model"));
}

TEST_CASE("file loading errors") {
  CHECK(mentions(error_of([] { load_tokenizer_from_files("/nonexistent/tokenizer.json"); }),
                 "no such tokenizer file"));
  CHECK(mentions(error_of([] { load_tokenizer_from_files(temp_file("x.txt", "hi")); }),
                 "unknown tokenizer file type"));
  CHECK(mentions(error_of([] { load_tokenizer_from_files(temp_file("bad.model", "not a proto")); }),
                 "not a usable SentencePiece model"));
  CHECK(mentions(error_of([] { load_tokenizer_from_files(temp_file("broken.json", "{\"model\": ")); }),
                 "not valid JSON"));
  CHECK(mentions(error_of([] {
    load_tokenizer_from_files(temp_file("wp.json", R"({"model": {"type": "WordPiece", "vocab": {}}})"));
  }), "model.type = 'WordPiece' is not supported"));
  CHECK(mentions(error_of([] {
    load_tokenizer_from_files(
        temp_file("fb.json", R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {}}})"));
  }), "tokenizer.model"));
}

}  // namespace ternvk::test
