// Requests to prompt tokens. Message text is always encoded with special-token parsing off, so
// "<|eot_id|>" or "</s>" typed by a user stays text and cannot forge a turn; only the chat
// template's own markers become control tokens (encode_chat). Where the markers are plain text
// (the plain and Llama-2 formats), a message that contains one is refused.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/server/openai_schema.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk::server {

class PromptEncoder {
 public:
  // The format is detected from the model's template and architecture; when the vocabulary lacks
  // a control token that format needs (a small model with a BitNet architecture but its own
  // vocabulary), the plain "User: ...\nAssistant:" format is used instead.
  PromptEncoder(const Tokenizer& tokenizer, const std::string& architecture);
  ChatFormat format() const { return format_; }
  // Throws RequestError (400) for token ids outside the vocabulary, and for chat messages that
  // contain a turn marker of a format whose markers are plain text (find_turn_marker).
  std::vector<uint32_t> encode(const GenerationRequest& request) const;

 private:
  const Tokenizer& tokenizer_;
  ChatFormat format_;
  ChatSpecialTokens special_;
  mutable std::mutex mutex_;  // the tokenizer is not documented as thread-safe
};

}  // namespace ternvk::server
