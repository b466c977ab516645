#include "runtime/server/http_server.h"

#include <httplib.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <random>

#include "runtime/core/error.h"

namespace ternvk::server {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, const RequestError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), "application/json");
}

// Debian's cpp-httplib 0.11 is a compiled library that listens with a backlog of 5, so a burst of
// clients connecting at once (the point of a batching server) overflows the accept queue and waits
// on SYN retransmits, or worse on a loaded machine. Linux lets a listening socket's backlog be
// raised by calling listen() again; the library does not expose its socket, so find it among the
// process's descriptors: a listening TCP socket bound to our port. Best effort: nothing changes if
// it is not found.
void widen_listen_backlog(int port) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    try {
      fd = std::stoi(entry.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (bound == port) ::listen(fd, SOMAXCONN);
  }
}

uint64_t random_u64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::string random_id(const char* prefix) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += kHex[random_u64() % 16];
  return id;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool finished_normally(const Outcome& o) { return o.finish_reason == "stop" || o.finish_reason == "length"; }

RequestError outcome_error(const Outcome& o) {
  if (o.finish_reason == "cancelled")
    return RequestError(503, "the request was cancelled because the server is shutting down", "server_error", {},
                        "shutting_down");
  return RequestError(500, "generation failed: " + o.error, "server_error");
}

// What a streaming response needs between calls of its content provider.
struct StreamState {
  std::shared_ptr<Channel> channel;
  AnswerHeader header;
  Endpoint endpoint = Endpoint::Chat;
  bool include_usage = false;
  bool started = false;
  Clock::time_point last_write = Clock::now();
};

}  // namespace

bool constant_time_equal(std::string_view given, std::string_view expected) {
  unsigned diff = given.size() == expected.size() ? 0u : 1u;
  for (size_t i = 0; i < expected.size(); ++i)
    diff |= unsigned(uint8_t(expected[i]) ^ uint8_t(i < given.size() ? given[i] : 0));
  return diff == 0;
}

struct HttpServer::Impl {
  // The body of POST /v1/chat/completions and /v1/completions.
  static void generate(HttpServer& s, const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    GenerationRequest r = endpoint == Endpoint::Chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
    if (!r.model.empty() && r.model != s.options_.model_id)
      throw RequestError(404, "the model '" + r.model + "' does not exist; this server has '" + s.options_.model_id + "'",
                         "invalid_request_error", "model", "model_not_found");
    if (s.draining_) throw RequestError(503, "the server is shutting down", "server_error", {}, "shutting_down");
    std::vector<uint32_t> prompt;
    try {
      prompt = s.prompts_.encode(r);
    } catch (const Error& e) {
      throw RequestError(400, std::string("could not tokenize the prompt: ") + e.what());
    }
    const int context = s.scheduler_.context();
    if (prompt.empty()) throw RequestError(400, "the prompt is empty", "invalid_request_error", "prompt");
    if (int(prompt.size()) >= context)
      throw RequestError(400, "this model's maximum context length is " + std::to_string(context) +
                                  " tokens, but the prompt is " + std::to_string(prompt.size()) + " tokens",
                         "invalid_request_error", endpoint == Endpoint::Chat ? "messages" : "prompt",
                         "context_length_exceeded");
    const int room = context - int(prompt.size());
    if (r.max_tokens && *r.max_tokens > room)
      throw RequestError(400, "this model's maximum context length is " + std::to_string(context) +
                                  " tokens; the prompt takes " + std::to_string(prompt.size()) + ", so max_tokens " +
                                  std::to_string(*r.max_tokens) + " does not fit (at most " + std::to_string(room) + ")",
                         "invalid_request_error", "max_tokens", "context_length_exceeded");
    Job job{std::move(prompt), r.max_tokens.value_or(room), r.sampling, r.stop};
    if (!r.seeded) job.sampling.seed = random_u64();
    auto channel = s.scheduler_.submit(std::move(job));
    if (!channel) {
      if (!s.scheduler_.accepting())
        throw RequestError(503, "the server is shutting down", "server_error", {}, "shutting_down");
      s.metrics_.rejected_queue_full++;
      res.set_header("Retry-After", "1");
      throw RequestError(503, "the server is busy: every sequence slot and queue place is taken; retry later",
                         "server_error", {}, "queue_full");
    }
    AnswerHeader header{random_id(endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-"), unix_now(), s.options_.model_id};
    if (r.stream) return stream(res, std::make_shared<StreamState>(StreamState{channel, header, endpoint, r.include_usage}));

    std::string text;
    Outcome outcome;
    while (true) {
      auto news = channel->wait(std::chrono::milliseconds(250));
      text += news.text;
      if (news.done) {
        outcome = *news.done;
        break;
      }
      if (s.stopping_) channel->cancel();  // the scheduler finishes it as "cancelled" at its next step
    }
    if (!finished_normally(outcome)) throw outcome_error(outcome);
    const Usage usage{outcome.prompt_tokens, outcome.completion_tokens};
    res.set_content(dump(endpoint == Endpoint::Chat ? chat_completion(header, text, outcome.finish_reason, usage)
                                                    : text_completion(header, text, outcome.finish_reason, usage)),
                    "application/json");
  }

  static void stream(httplib::Response& res, std::shared_ptr<StreamState> st) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto provider = [st](size_t, httplib::DataSink& sink) -> bool {
      auto write = [&](const std::string& data) {
        if (!sink.write(data.data(), data.size())) {
          st->channel->cancel();  // the client is gone: free its sequence at the next step
          return false;
        }
        st->last_write = Clock::now();
        return true;
      };
      // An event goes out in two writes: a peer that has gone answers the first with a reset, so
      // the second fails at once and the sequence is freed before the next step, not after it.
      auto event = [&](const json& j) {
        const std::string e = sse_event(j);
        return write(e.substr(0, e.size() - 1)) && write("\n");
      };
      const bool chat = st->endpoint == Endpoint::Chat;
      if (!st->started) {
        st->started = true;
        if (chat) return event(chat_chunk(st->header, "", "", std::nullopt, /*role_first=*/true));
      }
      auto news = st->channel->wait(std::chrono::milliseconds(100));
      if (!news.text.empty()) {
        const json chunk = chat ? chat_chunk(st->header, news.text, "", std::nullopt)
                                : text_chunk(st->header, news.text, "", std::nullopt);
        if (!event(chunk)) return false;
      }
      if (news.done) {
        const Outcome& o = *news.done;
        bool ok = true;
        if (finished_normally(o)) {
          const Usage u{o.prompt_tokens, o.completion_tokens};
          ok = write(sse_event(chat ? chat_chunk(st->header, "", o.finish_reason, u)
                                    : text_chunk(st->header, "", o.finish_reason, u)));
          if (ok && st->include_usage) ok = write(sse_event(usage_chunk(st->header, st->endpoint, u)));
        } else {
          ok = write(sse_event(error_body(outcome_error(o))));  // OpenAI streams errors as an event too
        }
        if (ok) ok = write(std::string(kSseDone));
        if (ok) sink.done();
        return ok;
      }
      // A comment line now and then, so that a client that left while queued is noticed too.
      if (Clock::now() - st->last_write > std::chrono::seconds(1)) return write(": keep-alive\n\n");
      return true;
    };
    res.set_chunked_content_provider("text/event-stream", provider, [st](bool success) {
      if (!success) st->channel->cancel();
    });
  }

  template <class Fn>
  static httplib::Server::Handler guarded(Fn fn) {
    return [fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const RequestError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, RequestError(500, std::string("internal error: ") + e.what(), "server_error"));
      }
    };
  }
};

HttpServer::HttpServer(BatchScheduler& scheduler, const PromptEncoder& prompts, ServerOptions options, Metrics& metrics)
    : scheduler_(scheduler), prompts_(prompts), options_(std::move(options)), metrics_(metrics),
      http_(std::make_unique<httplib::Server>()), started_(unix_now()) {
  // A client that hangs up must cost a failed write, not the process.
  std::signal(SIGPIPE, SIG_IGN);
  const int threads = options_.threads > 0 ? options_.threads : scheduler_.slots() + 16 + 4;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_keep_alive_timeout(2);
  routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  int port = options_.port;
  if (port == 0) port = http_->bind_to_any_port(options_.host);
  else if (!http_->bind_to_port(options_.host, port)) port = -1;
  if (port <= 0)
    throw Error("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                " (in use, or not an address of this machine)");
  options_.port = port;
  widen_listen_backlog(port);
  return port;
}

void HttpServer::run() { http_->listen_after_bind(); }

void HttpServer::stop_accepting() {
  draining_ = true;
  scheduler_.stop_accepting();
}

void HttpServer::stop() {
  stopping_ = true;
  draining_ = true;
  if (http_->is_running()) http_->stop();
}

void HttpServer::routes() {
  auto& h = *http_;
  h.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (auth.size() > kBearer.size() && std::string_view(auth).substr(0, kBearer.size()) == kBearer &&
        constant_time_equal(std::string_view(auth).substr(kBearer.size()), options_.api_key)) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    send_error(res, RequestError(401, "missing or incorrect API key: send 'Authorization: Bearer <key>'",
                                 "invalid_request_error", {}, "invalid_api_key"));
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_header("Connection", "close");  // the body was not read
    return httplib::Server::HandlerResponse::Handled;
  });
  h.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // already an error object
    if (res.status == 404)
      send_error(res, RequestError(404, "unknown path: " + req.method + " " + req.path, "invalid_request_error", {},
                                   "unknown_url"));
    else if (res.status == 413)
      send_error(res, RequestError(413, "the request body is larger than " + std::to_string(options_.max_body_bytes) +
                                            " bytes", "invalid_request_error", {}, "request_too_large"));
    else
      send_error(res, RequestError(res.status, "the request could not be served (HTTP " + std::to_string(res.status) + ")",
                                   res.status >= 500 ? "server_error" : "invalid_request_error"));
    return httplib::Server::HandlerResponse::Handled;
  }));
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, RequestError(500, "internal error", "server_error"));
  });
  h.set_logger([this](const httplib::Request&, const httplib::Response& res) { metrics_.count_response(res.status); });

  h.Get("/health", Impl::guarded([this](const httplib::Request&, httplib::Response& res) {
    const bool ok = !draining_;
    res.status = ok ? 200 : 503;
    res.set_content(dump({{"status", ok ? "ok" : "shutting down"},
                          {"slots", scheduler_.slots()},
                          {"load", scheduler_.load()}}),
                    "application/json");
  }));
  h.Get("/metrics", Impl::guarded([this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.prometheus(), "text/plain; version=0.0.4");
  }));
  h.Get("/v1/models", Impl::guarded([this](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump(model_list(options_.model_id, started_)), "application/json");
  }));
  h.Get("/v1/models/(.+)", Impl::guarded([this](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (name != options_.model_id)
      throw RequestError(404, "the model '" + name + "' does not exist", "invalid_request_error", "model",
                         "model_not_found");
    res.set_content(dump(model_list(options_.model_id, started_)["data"][0]), "application/json");
  }));
  h.Post("/v1/chat/completions", Impl::guarded([this](const httplib::Request& req, httplib::Response& res) {
    Impl::generate(*this, req, res, Endpoint::Chat);
  }));
  h.Post("/v1/completions", Impl::guarded([this](const httplib::Request& req, httplib::Response& res) {
    Impl::generate(*this, req, res, Endpoint::Completion);
  }));
}

}  // namespace ternvk::server
