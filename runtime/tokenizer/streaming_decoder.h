// Detokenization for streaming generation: feed ids one at a time, get back only whole UTF-8
// characters. A character can span several tokens (SentencePiece byte fallback <0xE2><0x82><0xAC>,
// or byte-level BPE pieces that end mid-character); printing the halves would show mojibake.
#pragma once
#include <string>

#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

class StreamingDecoder {
 public:
  // render_special: write control tokens as their spelling; otherwise they produce no text.
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}

  // The text that became complete with this token (possibly empty). Bytes that can never be valid
  // UTF-8 are replaced by U+FFFD as soon as that is certain. Throws for ids out of range.
  std::string feed(TokenId id);

  // Ends the sequence: returns the held-back bytes, an incomplete character replaced by U+FFFD,
  // and resets the decoder for a new sequence (the next token is again "first").
  std::string flush();

  // Bytes held back waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  bool at_start_ = true;  // no text emitted yet: SentencePiece's dummy-prefix space is still due
  std::string pending_;
};

}  // namespace ternvk
