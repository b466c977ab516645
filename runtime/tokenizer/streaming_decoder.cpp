#include "runtime/tokenizer/streaming_decoder.h"

#include "runtime/tokenizer/utf8.h"

namespace ternvk {

std::string StreamingDecoder::feed(TokenId id) {
  std::string_view bytes = tokenizer_.token_bytes(id);
  if (tokenizer_.is_special(id) && !render_special_) bytes = {};
  if (bytes.empty()) return {};
  // SentencePiece encodes "Hello" as "▁Hello": the first space of the sequence is not the user's.
  if (at_start_ && tokenizer_.adds_dummy_prefix() && bytes.front() == ' ') bytes.remove_prefix(1);
  at_start_ = false;
  pending_.append(bytes);
  const size_t hold = utf8_incomplete_tail_length(pending_);
  std::string ready = sanitize_utf8(std::string_view(pending_).substr(0, pending_.size() - hold));
  pending_.erase(0, pending_.size() - hold);
  return ready;
}

std::string StreamingDecoder::flush() {
  std::string rest = sanitize_utf8(pending_);
  pending_.clear();
  at_start_ = true;
  return rest;
}

}  // namespace ternvk
