#include "runtime/server/prompt.h"

#include "runtime/core/error.h"

namespace ternvk::server {

PromptEncoder::PromptEncoder(const Tokenizer& tokenizer, const std::string& architecture)
    // A format whose control tokens the vocabulary lacks falls back to the plain format.
    : tokenizer_(tokenizer), format_(detect_chat_format(tokenizer, architecture)),
      special_(chat_special_tokens(tokenizer)) {}

std::vector<uint32_t> PromptEncoder::encode(const GenerationRequest& r) const {
  std::lock_guard lock(mutex_);
  if (r.endpoint == Endpoint::Chat) {
    // Refused rather than rewritten: the model must see what the client sent, or nothing.
    if (auto m = find_turn_marker(format_, r.messages)) {
      const std::string param = "messages[" + std::to_string(m->message) + "].content";
      throw RequestError(400, describe_turn_marker(format_, *m, param), "invalid_request_error", param,
                         "turn_marker_in_content");
    }
    const auto ids = encode_chat(tokenizer_, render_chat(format_, r.messages, special_));
    return {ids.begin(), ids.end()};
  }
  if (!r.prompt_tokens.empty()) {
    std::vector<uint32_t> ids;
    for (int64_t t : r.prompt_tokens) {
      if (t >= tokenizer_.vocab_size())
        throw RequestError(400, "token id " + std::to_string(t) + " is outside the vocabulary of " +
                                    std::to_string(tokenizer_.vocab_size()), "invalid_request_error", "prompt");
      ids.push_back(uint32_t(t));
    }
    return ids;
  }
  const auto ids = tokenizer_.encode(r.prompt, /*add_bos=*/tokenizer_.bos().has_value(), /*parse_special=*/false);
  return {ids.begin(), ids.end()};
}

}  // namespace ternvk::server
