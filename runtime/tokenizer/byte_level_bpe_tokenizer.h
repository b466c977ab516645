// Byte-level BPE (GPT-2, LLaMA 3 / BitNet b1.58 2B4T): regex pre-tokenization, GPT-2's byte alphabet,
// then merges applied lowest rank first within each word.
#pragma once
#include <array>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/tokenizer/byte_level_alphabet.h"
#include "runtime/tokenizer/pretokenizer_regex.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

// A byte-level BPE vocabulary as both GGUF and tokenizer.json describe it.
struct BpeVocab {
  // NORMAL tokens in the byte-level alphabet ("Ġworld"); CONTROL and USER_DEFINED tokens as plain
  // text ("<|eot_id|>"), as both file formats store them.
  std::vector<std::string> tokens;
  std::vector<TokenType> types;
  std::vector<std::pair<std::string, std::string>> merges;  // highest priority first
  std::string pattern;         // pre-tokenizer regex
  bool ignore_merges = false;  // LLaMA 3: a word that is itself a token is emitted whole
};

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  // Throws ternvk::Error naming `source` for an inconsistent vocabulary (a merge of unknown
  // tokens, a byte without a token, a spelling outside the byte alphabet).
  ByteLevelBpeTokenizer(BpeVocab vocab, TokenizerMetadata metadata, const std::string& source);

  int32_t vocab_size() const override { return static_cast<int32_t>(spellings_.size()); }
  std::string_view token_piece(TokenId id) const override;
  std::string_view token_bytes(TokenId id) const override;
  TokenType token_type(TokenId id) const override;
  std::optional<TokenId> find_token(std::string_view piece) const override;

 private:
  struct Merge {
    int32_t rank;
    TokenId result;
  };
  static uint64_t pair_key(TokenId left, TokenId right) {
    return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  }

  void encode_plain(std::string_view text, std::vector<TokenId>& out) const override;
  // Merges one pre-tokenized word and appends its ids.
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;

  ByteLevelAlphabet alphabet_;
  PretokenizerRegex regex_;
  bool ignore_merges_;
  std::vector<std::string> spellings_;
  std::vector<std::string> bytes_;  // token_bytes() per id
  std::vector<TokenType> types_;
  std::unordered_map<std::string, TokenId> id_of_spelling_;
  std::array<TokenId, 256> byte_token_{};  // the single-byte token of each byte
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace ternvk
