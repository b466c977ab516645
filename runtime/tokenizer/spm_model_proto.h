// Builds a SentencePiece ModelProto from a bare vocabulary (the GGUF tokenizer.ggml.* arrays), so
// libsentencepiece can tokenize GGUF models exactly as it tokenizes their original .model file.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/token_types.h"

namespace ternvk {

struct SpmVocab {
  std::vector<std::string> pieces;  // "▁Hello", "<0x0A>", "<s>", ...
  std::vector<float> scores;        // higher merges first (BPE) / log-probability (unigram)
  std::vector<TokenType> types;
  std::optional<TokenId> unk, bos, eos, pad;
  bool add_dummy_prefix = true;  // LLaMA: "Hello" is encoded as "▁Hello"
};

// Field numbers from google/sentencepiece src/sentencepiece_model.proto (checked against the
// LLaMA-2 tokenizer.model, which sets the same fields).
namespace spm_proto {
// ModelProto
inline constexpr uint32_t kPieces = 1, kTrainerSpec = 2, kNormalizerSpec = 3;
// ModelProto.SentencePiece
inline constexpr uint32_t kPiece = 1, kScore = 2, kType = 3;
// TrainerSpec
inline constexpr uint32_t kModelType = 3, kVocabSize = 4, kByteFallback = 35;
inline constexpr uint32_t kUnkId = 40, kBosId = 41, kEosId = 42, kPadId = 43;
inline constexpr uint64_t kModelTypeBpe = 2;
// NormalizerSpec
inline constexpr uint32_t kName = 1, kAddDummyPrefix = 3, kRemoveExtraWhitespaces = 4,
                          kEscapeWhitespaces = 5;
}  // namespace spm_proto

// A serialized ModelProto for SentencePieceProcessor::LoadFromSerializedProto. The model type is
// BPE (merge by score), which is what llama.cpp runs for every tokenizer.ggml.model = "llama";
// byte fallback is on when the vocabulary has BYTE pieces. Throws ternvk::Error (naming `source`)
// when the arrays disagree in length.
std::string build_spm_model_proto(const SpmVocab& vocab, std::string_view source);

}  // namespace ternvk
