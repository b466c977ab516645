// SentencePiece tokenization (LLaMA 2 / 1bitLLM BitNet vocabularies) through libsentencepiece, from
// a .model file or from a ModelProto built out of a GGUF vocabulary (spm_model_proto.h).
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace ternvk {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `serialized_model` is a ModelProto (the bytes of a .model file). When `metadata` leaves
  // bos/eos unset they are taken from the model; eot defaults to eos. `source` names errors.
  SentencePieceTokenizer(std::string_view serialized_model, TokenizerMetadata metadata,
                         const std::string& source);
  ~SentencePieceTokenizer() override;

  int32_t vocab_size() const override;
  std::string_view token_piece(TokenId id) const override;
  std::string_view token_bytes(TokenId id) const override;
  TokenType token_type(TokenId id) const override;
  std::optional<TokenId> find_token(std::string_view piece) const override;
  bool adds_dummy_prefix() const override { return adds_dummy_prefix_; }

 private:
  void encode_plain(std::string_view text, std::vector<TokenId>& out) const override;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::vector<std::string> bytes_;  // token_bytes() per id, computed once
  std::vector<TokenType> types_;
  bool adds_dummy_prefix_ = true;
  std::string source_;
};

// Reads a .model file, plus the chat template of a tokenizer_config.json beside it if there is one.
// Throws ternvk::Error naming the path when it is missing or not a model.
std::unique_ptr<Tokenizer> load_sentencepiece_model_file(const std::filesystem::path& path);

}  // namespace ternvk
