#include "runtime/tokenizer/gguf_tokenizer.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/formats/gguf.h"
#include "runtime/tokenizer/byte_level_bpe_tokenizer.h"
#include "runtime/tokenizer/sentencepiece_tokenizer.h"
#include "runtime/tokenizer/spm_model_proto.h"

namespace ternvk {
namespace {

std::optional<TokenId> optional_id(const GgufFile& gguf, std::string_view key) {
  if (!gguf.has(key)) return std::nullopt;
  return static_cast<TokenId>(gguf.get_i32(key));
}

std::vector<TokenType> read_token_types(const GgufFile& gguf, size_t n_tokens) {
  constexpr std::string_view kKey = "tokenizer.ggml.token_type";
  if (!gguf.has(kKey)) return std::vector<TokenType>(n_tokens, TokenType::kNormal);
  const std::vector<int32_t> raw = gguf.get_i32_array(kKey);
  if (raw.size() != n_tokens) {
    throw Error(gguf.path() + ": " + std::string(kKey) + " has " + std::to_string(raw.size()) +
                " entries, expected one per token (" + std::to_string(n_tokens) + ")");
  }
  std::vector<TokenType> types(n_tokens);
  for (size_t i = 0; i < n_tokens; ++i) {
    const auto type = token_type_from_int(raw[i]);
    if (!type) {
      throw Error(gguf.path() + ": " + std::string(kKey) + "[" + std::to_string(i) + "] = " +
                  std::to_string(raw[i]) + ", expected 1..6 (NORMAL..BYTE)");
    }
    types[i] = *type;
  }
  return types;
}

TokenizerMetadata read_metadata(const GgufFile& gguf) {
  TokenizerMetadata meta;
  meta.bos = optional_id(gguf, "tokenizer.ggml.bos_token_id");
  meta.eos = optional_id(gguf, "tokenizer.ggml.eos_token_id");
  meta.eot = optional_id(gguf, "tokenizer.ggml.eot_token_id");
  if (!meta.eot) meta.eot = meta.eos;
  meta.chat_template = gguf.get_string("tokenizer.chat_template", "");
  return meta;
}

std::unique_ptr<Tokenizer> load_sentencepiece(const GgufFile& gguf) {
  SpmVocab vocab;
  vocab.pieces = gguf.get_string_array("tokenizer.ggml.tokens");
  vocab.types = read_token_types(gguf, vocab.pieces.size());
  vocab.scores = gguf.has("tokenizer.ggml.scores") ? gguf.get_f32_array("tokenizer.ggml.scores")
                                                   : std::vector<float>(vocab.pieces.size(), 0.f);
  vocab.unk = optional_id(gguf, "tokenizer.ggml.unknown_token_id");
  if (!vocab.unk) {
    const auto it = std::find(vocab.types.begin(), vocab.types.end(), TokenType::kUnknown);
    if (it != vocab.types.end()) vocab.unk = static_cast<TokenId>(it - vocab.types.begin());
  }
  vocab.bos = optional_id(gguf, "tokenizer.ggml.bos_token_id");
  vocab.eos = optional_id(gguf, "tokenizer.ggml.eos_token_id");
  vocab.pad = optional_id(gguf, "tokenizer.ggml.padding_token_id");
  vocab.add_dummy_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix", true);
  return std::make_unique<SentencePieceTokenizer>(build_spm_model_proto(vocab, gguf.path()),
                                                  read_metadata(gguf), gguf.path());
}

std::unique_ptr<Tokenizer> load_byte_level_bpe(const GgufFile& gguf) {
  BpeVocab vocab;
  vocab.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  vocab.types = read_token_types(gguf, vocab.tokens.size());
  const auto& merges = gguf.get_string_array("tokenizer.ggml.merges");
  vocab.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    // Split at the first space after the first character: the left part is never empty.
    const size_t space = merges[i].find(' ', 1);
    if (space == std::string::npos) {
      throw Error(gguf.path() + ": tokenizer.ggml.merges[" + std::to_string(i) + "] = '" +
                  merges[i] + "', expected two tokens separated by a space");
    }
    vocab.merges.emplace_back(merges[i].substr(0, space), merges[i].substr(space + 1));
  }
  const std::string pre = gguf.get_string("tokenizer.ggml.pre", "");
  if (pre.empty()) {
    throw Error(gguf.path() + ": tokenizer.ggml.pre is missing; the byte-level BPE pre-tokenizer "
                "is unknown (re-convert the model with a current llama.cpp converter)");
  }
  const auto pattern = pretokenizer_pattern_for(pre);
  if (!pattern) {
    throw Error(gguf.path() + ": tokenizer.ggml.pre = '" + pre +
                "' is not supported; supported pre-tokenizers: gpt-2, llama-bpe");
  }
  vocab.pattern = *pattern;
  vocab.ignore_merges = pre == "llama-bpe";  // as llama.cpp: LLaMA 3's tokenizer.json says so
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(vocab), read_metadata(gguf),
                                                 gguf.path());
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& gguf) {
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  if (model == "llama") return load_sentencepiece(gguf);
  if (model == "gpt2") return load_byte_level_bpe(gguf);
  throw Error(gguf.path() + ": tokenizer.ggml.model = '" + model +
              "' is not supported; supported: llama (SentencePiece), gpt2 (byte-level BPE)");
}

}  // namespace ternvk
