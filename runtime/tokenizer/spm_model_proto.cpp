#include "runtime/tokenizer/spm_model_proto.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/tokenizer/protobuf_wire.h"

namespace ternvk {

std::string build_spm_model_proto(const SpmVocab& vocab, std::string_view source) {
  using namespace spm_proto;
  const size_t n = vocab.pieces.size();
  if (vocab.scores.size() != n || vocab.types.size() != n) {
    throw Error(std::string(source) + ": the SentencePiece vocabulary arrays disagree: " +
                std::to_string(n) + " tokens, " + std::to_string(vocab.scores.size()) +
                " scores, " + std::to_string(vocab.types.size()) + " token types");
  }
  protobuf::Writer model;
  for (size_t i = 0; i < n; ++i) {
    protobuf::Writer piece;
    piece.add_bytes(kPiece, vocab.pieces[i]);
    piece.add_float(kScore, vocab.scores[i]);
    piece.add_varint(kType, static_cast<uint64_t>(vocab.types[i]));
    model.add_bytes(kPieces, piece.bytes());
  }

  protobuf::Writer trainer;
  trainer.add_varint(kModelType, kModelTypeBpe);
  trainer.add_int32(kVocabSize, static_cast<int32_t>(n));
  const bool has_bytes = std::find(vocab.types.begin(), vocab.types.end(), TokenType::kByte) !=
                         vocab.types.end();
  trainer.add_bool(kByteFallback, has_bytes);
  // -1 means "none" for every special id in sentencepiece.
  trainer.add_int32(kUnkId, vocab.unk.value_or(-1));
  trainer.add_int32(kBosId, vocab.bos.value_or(-1));
  trainer.add_int32(kEosId, vocab.eos.value_or(-1));
  trainer.add_int32(kPadId, vocab.pad.value_or(-1));
  model.add_bytes(kTrainerSpec, trainer.bytes());

  // The LLaMA-2 .model's normalizer: no Unicode normalization, whitespace kept as written (llama.cpp
  // never collapses spaces), spaces escaped to "▁".
  protobuf::Writer normalizer;
  normalizer.add_bytes(kName, "identity");
  normalizer.add_bool(kAddDummyPrefix, vocab.add_dummy_prefix);
  normalizer.add_bool(kRemoveExtraWhitespaces, false);
  normalizer.add_bool(kEscapeWhitespaces, true);
  model.add_bytes(kNormalizerSpec, normalizer.bytes());
  return model.bytes();
}

}  // namespace ternvk
