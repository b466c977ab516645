// The OpenAI wire format, as pure functions: request bodies parsed and validated into a plain
// struct (a RequestError with the HTTP status and an OpenAI-style error object for anything wrong),
// and the JSON of answers, stream chunks and errors. No GPU, no sockets: unit-tested directly.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/engine/sampler.h"
#include "runtime/tokenizer/chat_template.h"

namespace ternvk::server {

// A request the server refuses: the HTTP status and the fields of OpenAI's error object.
class RequestError : public std::runtime_error {
 public:
  RequestError(int status, const std::string& message, std::string type = "invalid_request_error",
               std::string param = {}, std::string code = {})
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type;
  std::string param;  // the offending field, empty when none
  std::string code;   // e.g. "context_length_exceeded", empty when none
};

// {"error": {"message", "type", "param", "code"}} (param and code null when empty).
nlohmann::json error_body(const RequestError& e);

enum class Endpoint { Chat, Completion };

struct GenerationRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;                  // as sent; empty: the server's model
  std::vector<ChatMessage> messages;  // Chat
  std::string prompt;                 // Completion, as text ...
  std::vector<int64_t> prompt_tokens; // ... or as token ids (then `prompt` is empty)
  std::optional<int> max_tokens;      // none: until the end of the context
  SamplingParams sampling;            // OpenAI defaults: temperature 1, top_p 1; top_k, min_p off
  bool seeded = false;                // `seed` given: reproducible sampling
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage: OpenAI's extra usage chunk
};

// Throws RequestError (400) for malformed JSON, wrong types, values out of range, a missing or
// empty `messages`, an unknown role, n > 1. Unknown fields are ignored, as OpenAI clients send
// extras.
GenerationRequest parse_chat_request(std::string_view body);
GenerationRequest parse_completion_request(std::string_view body);

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// The fields every answer to one request shares.
struct AnswerHeader {
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
};

nlohmann::json usage_json(const Usage& u);
nlohmann::json chat_completion(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                               const Usage& u);
nlohmann::json text_completion(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                               const Usage& u);
// A stream chunk; `finish_reason` empty while the answer goes on. `usage` goes into the chunk that
// carries the finish reason. The first chat chunk carries the role (role_first).
nlohmann::json chat_chunk(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                          const std::optional<Usage>& usage, bool role_first = false);
nlohmann::json text_chunk(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                          const std::optional<Usage>& usage);
// OpenAI's stream_options.include_usage chunk: no choices, only usage.
nlohmann::json usage_chunk(const AnswerHeader& h, Endpoint endpoint, const Usage& u);
nlohmann::json model_list(const std::string& model, int64_t created);

// One server-sent event: "data: {json}\n\n"; and the stream's end, "data: [DONE]\n\n".
std::string sse_event(const nlohmann::json& j);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace ternvk::server
