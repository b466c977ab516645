#include "runtime/server/openai_schema.h"

#include <cmath>
#include <limits>

namespace ternvk::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw RequestError(400, message, "invalid_request_error", param);
}

// Deeper bodies are refused before parsing. OpenAI requests nest a few levels (tool schemas a
// dozen or so); the bound keeps any recursion over the parsed value shallow.
constexpr int kMaxDepth = 64;

bool nested_too_deep(std::string_view body) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

json parse_object(std::string_view body) {
  if (nested_too_deep(body))
    throw RequestError(400, "the request body nests arrays and objects deeper than " + std::to_string(kMaxDepth) +
                                " levels");
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw RequestError(400, "the request body is not valid JSON");
  if (!j.is_object()) throw RequestError(400, "the request body must be a JSON object");
  return j;
}

// The field, or nullptr when absent or null (OpenAI treats null as "not given").
const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

// A finite number; `lo` and `hi` are the API's own range where it documents one.
std::optional<double> number(const json& j, const char* key, double lo = -std::numeric_limits<double>::max(),
                             double hi = std::numeric_limits<double>::max()) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad(key, std::string("'") + key + "' must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x)) bad(key, std::string("'") + key + "' must be a finite number");
  if (x < lo || x > hi)
    bad(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " + json(hi).dump());
  return x;
}

std::optional<int64_t> integer(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad(key, std::string("'") + key + "' must be an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad(key, std::string("'") + key + "' is out of range");
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    bad(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return x;
}

std::optional<bool> boolean(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad(key, std::string("'") + key + "' must be a boolean");
  return v->get<bool>();
}

// The fields /v1/chat/completions and /v1/completions share.
void parse_common(const json& j, GenerationRequest& r) {
  if (const json* m = field(j, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string");
    r.model = m->get<std::string>();
  }
  if (auto n = integer(j, "n", 1, std::numeric_limits<int>::max()); n && *n != 1)
    bad("n", "only n = 1 is supported");
  if (boolean(j, "logprobs").value_or(false)) bad("logprobs", "logprobs are not supported");
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  if (auto v = integer(j, "max_tokens", 1, kMaxInt)) r.max_tokens = int(*v);
  if (auto v = integer(j, "max_completion_tokens", 1, kMaxInt)) r.max_tokens = int(*v);

  SamplingParams& s = r.sampling;
  s.temperature = 1.0f;  // OpenAI's defaults; the extensions start switched off
  s.top_k = 0;
  s.top_p = 1.0f;
  s.min_p = 0.0f;
  // OpenAI documents ranges for temperature and the two penalties; top_k and repeat_last_n are
  // counts. Whatever else a value must be, the sampler says below.
  if (auto v = number(j, "temperature", 0, 2)) s.temperature = float(*v);
  if (auto v = number(j, "top_p")) s.top_p = float(*v);
  if (auto v = number(j, "frequency_penalty", -2, 2)) s.frequency_penalty = float(*v);
  if (auto v = number(j, "presence_penalty", -2, 2)) s.presence_penalty = float(*v);
  if (auto v = integer(j, "top_k", 0, kMaxInt)) s.top_k = int(*v);
  if (auto v = number(j, "min_p")) s.min_p = float(*v);
  if (auto v = number(j, "repeat_penalty")) s.repeat_penalty = float(*v);
  if (auto v = integer(j, "repeat_last_n", 0, kMaxInt)) s.repeat_last_n = int(*v);
  // Checked as the sampler will see them (floats): its own rule, so that whatever passes here the
  // sampler accepts (top_p 0, min_p 1 or 1e-60 rounded to 0 are refused here, not on its thread).
  if (auto e = invalid_sampling_param(s)) bad(e->field, "'" + e->field + "' " + e->rule);
  if (const json* seed = field(j, "seed")) {
    if (!seed->is_number_integer()) bad("seed", "'seed' must be an integer");
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : uint64_t(seed->get<int64_t>());
    r.seeded = true;
  }

  if (const json* stop = field(j, "stop")) {
    constexpr size_t kMaxStops = 16;
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > kMaxStops) bad("stop", "at most 16 stop strings");
      for (const auto& s : *stop) {
        if (!s.is_string()) bad("stop", "'stop' must be a string or an array of strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or an array of strings");
    }
    std::erase_if(r.stop, [](const std::string& s) { return s.empty(); });
  }

  r.stream = boolean(j, "stream").value_or(false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage").value_or(false);
  }
}

std::string message_content(const json& content, size_t index) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(param, "'content' must be a string or an array of text parts");
  std::string text;
  for (const auto& part : content) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      bad(param, "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

nlohmann::json error_body(const RequestError& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return {{"error", err}};
}

GenerationRequest parse_chat_request(std::string_view body) {
  const json j = parse_object(body);
  GenerationRequest r;
  r.endpoint = Endpoint::Chat;
  parse_common(j, r);
  const json* messages = field(j, "messages");
  if (!messages) bad("messages", "'messages' is required");
  if (!messages->is_array()) bad("messages", "'messages' must be an array");
  if (messages->empty()) bad("messages", "'messages' must not be empty");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(at, at + " must be an object");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad(at + ".role", at + ".role must be a string");
    std::string name = role->get<std::string>();
    if (name == "developer") name = "system";  // OpenAI's newer name for the system role
    if (name != "system" && name != "user" && name != "assistant")
      bad(at + ".role", "unknown role '" + role->get<std::string>() + "' (system, developer, user, assistant)");
    const json* content = field(m, "content");
    if (!content && name != "assistant") bad(at + ".content", at + ".content is required");
    r.messages.push_back({name, content ? message_content(*content, i) : std::string()});
  }
  return r;
}

GenerationRequest parse_completion_request(std::string_view body) {
  const json j = parse_object(body);
  GenerationRequest r;
  r.endpoint = Endpoint::Completion;
  parse_common(j, r);
  if (boolean(j, "echo").value_or(false)) bad("echo", "echo is not supported");
  if (auto b = integer(j, "best_of", 1, 1 << 20); b && *b != 1) bad("best_of", "only best_of = 1 is supported");
  const json* prompt = field(j, "prompt");
  if (!prompt) bad("prompt", "'prompt' is required");
  auto token_list = [&](const json& a) {
    for (const auto& t : a) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0) bad("prompt", "token ids must be non-negative integers");
      r.prompt_tokens.push_back(t.get<int64_t>());
    }
    if (r.prompt_tokens.empty()) bad("prompt", "'prompt' must not be empty");
  };
  if (prompt->is_string()) {
    r.prompt = prompt->get<std::string>();
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    r.prompt = (*prompt)[0].get<std::string>();
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_array()) {
    token_list((*prompt)[0]);
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
    token_list(*prompt);
  } else if (prompt->is_array() && prompt->size() > 1) {
    bad("prompt", "only one prompt per request is supported");
  } else {
    bad("prompt", "'prompt' must be a string, an array of one string, or an array of token ids");
  }
  return r;
}

nlohmann::json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

namespace {

json reason_or_null(const std::string& finish_reason) {
  return finish_reason.empty() ? json(nullptr) : json(finish_reason);
}

json head(const AnswerHeader& h, const char* object) {
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}, {"system_fingerprint", nullptr}};
}

}  // namespace

nlohmann::json chat_completion(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                               const Usage& u) {
  json j = head(h, "chat.completion");
  j["choices"] = json::array({{{"index", 0},
                               {"message", {{"role", "assistant"}, {"content", text}}},
                               {"logprobs", nullptr},
                               {"finish_reason", finish_reason}}});
  j["usage"] = usage_json(u);
  return j;
}

nlohmann::json text_completion(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                               const Usage& u) {
  json j = head(h, "text_completion");
  j["choices"] = json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}});
  j["usage"] = usage_json(u);
  return j;
}

nlohmann::json chat_chunk(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                          const std::optional<Usage>& usage, bool role_first) {
  json j = head(h, "chat.completion.chunk");
  json delta = json::object();
  if (role_first) delta["role"] = "assistant";
  if (!text.empty() || role_first) delta["content"] = text;
  j["choices"] = json::array(
      {{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", reason_or_null(finish_reason)}}});
  if (usage) j["usage"] = usage_json(*usage);
  return j;
}

nlohmann::json text_chunk(const AnswerHeader& h, const std::string& text, const std::string& finish_reason,
                          const std::optional<Usage>& usage) {
  json j = head(h, "text_completion");
  j["choices"] = json::array(
      {{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", reason_or_null(finish_reason)}}});
  if (usage) j["usage"] = usage_json(*usage);
  return j;
}

nlohmann::json usage_chunk(const AnswerHeader& h, Endpoint endpoint, const Usage& u) {
  json j = head(h, endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = json::array();
  j["usage"] = usage_json(u);
  return j;
}

nlohmann::json model_list(const std::string& model, int64_t created) {
  return {{"object", "list"},
          {"data", json::array({{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "ternvk"}}})}};
}

std::string sse_event(const nlohmann::json& j) {
  // dump() escapes control characters, so a newline in the text cannot end the event early.
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

}  // namespace ternvk::server
