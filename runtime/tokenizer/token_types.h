// Vocabulary terms shared by every tokenizer: ids and the per-token kind. The TokenType numbers
// are SentencePiece's ModelProto.SentencePiece.Type values, which GGUF's tokenizer.ggml.token_type
// reuses, so they pass through both formats unchanged.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace ternvk {

using TokenId = int32_t;

enum class TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // BOS, EOS, <|eot_id|>, ...: never produced from plain text
  kUserDefined = 4,  // always matched as a whole in text (HF "added tokens" that are not special)
  kUnused = 5,
  kByte = 6,         // SentencePiece byte fallback <0xAB>
};

// Human-readable name for error messages.
const char* token_type_name(TokenType type);
// Maps a raw number from a file; nullopt when it is not one of the six kinds.
std::optional<TokenType> token_type_from_int(int64_t raw);

// The ids a runtime needs to frame a conversation, plus the file's chat template (empty if none).
struct TokenizerMetadata {
  std::optional<TokenId> bos;
  std::optional<TokenId> eos;
  std::optional<TokenId> eot;  // end of turn; equals eos for models without a separate one
  std::string chat_template;
};

}  // namespace ternvk
