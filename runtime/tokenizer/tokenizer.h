// The tokenizer interface the engine uses, whatever the vocabulary format: SentencePiece (LLaMA 2,
// 1bitLLM BitNet) or byte-level BPE (GPT-2, LLaMA 3 / BitNet b1.58 2B4T).
//
// Text in and out is UTF-8. encode() rejects invalid UTF-8 with a ternvk::Error naming the byte
// offset (sanitize_utf8() in utf8.h turns bad bytes into U+FFFD first if that is wanted); decode()
// never fails on ids in range and replaces byte sequences that are not valid UTF-8 by U+FFFD.
#pragma once
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/tokenizer/special_token_splitter.h"
#include "runtime/tokenizer/token_types.h"

namespace ternvk {

class GgufFile;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // add_bos: prepend bos() (an error if the vocabulary has none). parse_special: recognise control
  // tokens written in the text (e.g. "<|eot_id|>"); leave it off for untrusted user input.
  std::vector<TokenId> encode(std::string_view text, bool add_bos = false,
                              bool parse_special = false) const;

  // Whole-sequence detokenization, identical to feeding a StreamingDecoder and flushing.
  // render_special: write control tokens as their text ("<|eot_id|>"); otherwise they vanish.
  std::string decode(std::span<const TokenId> ids, bool render_special = false) const;

  virtual int32_t vocab_size() const = 0;
  // The vocabulary spelling ("▁Hello", "Ġworld", "<0x0A>"). Throws for ids out of range.
  virtual std::string_view token_piece(TokenId id) const = 0;
  // The bytes the token stands for in text (" Hello", " world", "\n"); may be part of a UTF-8
  // character. Control tokens give their spelling. Throws for ids out of range.
  virtual std::string_view token_bytes(TokenId id) const = 0;
  virtual TokenType token_type(TokenId id) const = 0;
  // The id whose spelling is exactly `piece`, if any.
  virtual std::optional<TokenId> find_token(std::string_view piece) const = 0;
  // SentencePiece adds a space in front of the text when encoding ("dummy prefix"); decoding the
  // start of a sequence must drop it again.
  virtual bool adds_dummy_prefix() const { return false; }

  // Control tokens (BOS, EOS, <|eot_id|>, ...): structure, not text.
  bool is_special(TokenId id) const { return token_type(id) == TokenType::kControl; }
  std::optional<TokenId> bos() const { return metadata_.bos; }
  std::optional<TokenId> eos() const { return metadata_.eos; }
  std::optional<TokenId> eot() const { return metadata_.eot; }
  // The model's chat template text from the file (Jinja), empty when it has none.
  const std::string& chat_template() const { return metadata_.chat_template; }

 protected:
  explicit Tokenizer(TokenizerMetadata metadata) : metadata_(std::move(metadata)) {}
  // Encode plain text that holds no special tokens (already split out) and append the ids.
  virtual void encode_plain(std::string_view text, std::vector<TokenId>& out) const = 0;
  // Subclasses call this once their vocabulary is in place: indexes CONTROL/UNKNOWN/USER_DEFINED
  // spellings and checks that the metadata ids are in range.
  void finish_setup(const std::string& source);
  void check_id(TokenId id) const;
  // Sets bos/eos where the file's metadata left them unset; eot falls back to eos.
  void fill_missing_ids(std::optional<TokenId> bos, std::optional<TokenId> eos);

 private:
  TokenizerMetadata metadata_;
  SpecialTokenSplitter splitter_;
};

// tokenizer.ggml.model "llama" (SentencePiece) or "gpt2" (byte-level BPE).
std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GgufFile& gguf);
// A SentencePiece .model, a Hugging Face tokenizer.json (with tokenizer_config.json beside it for
// BOS/EOS/chat template), or a directory holding one of them (tokenizer.json preferred).
std::unique_ptr<Tokenizer> load_tokenizer_from_files(const std::filesystem::path& path);

}  // namespace ternvk
