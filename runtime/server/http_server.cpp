#include "runtime/server/http_server.h"

#include <httplib.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <random>
#include <utility>

#include "runtime/core/error.h"
#include "runtime/server/request_guard.h"

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

RequestError device_lost_error(const std::string& reason) {
  return RequestError(503, "the GPU was lost (" + reason + "); the server is exiting so that it can be restarted: retry shortly",
                      "server_error", {}, "device_lost");
}

RequestError outcome_error(const Outcome& o) {
  if (o.device_lost) return device_lost_error(o.error);
  if (o.finish_reason == "cancelled")
    return RequestError(503, "the request was cancelled because the server is shutting down", "server_error", {},
                        "shutting_down");
  return RequestError(500, "generation failed: " + o.error, "server_error");
}

// Counts a generation request as in flight while it lives.
std::shared_ptr<void> count_in_flight(std::atomic<int>& counter) {
  ++counter;
  return std::shared_ptr<void>(nullptr, [&counter](void*) { --counter; });
}

// Whether cpp-httplib reads a body for this method (what it does before any handler sees one).
bool method_takes_body(const std::string& method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE" || method == "PRI";
}

bool is_generation_route(const httplib::Request& req) {
  return req.method == "POST" && (req.path == "/v1/chat/completions" || req.path == "/v1/completions");
}

// After this response the library must read nothing more from the client: what follows a refused
// body would be parsed as further requests. cpp-httplib 0.11 keeps the connection open whatever the
// response says, so once the answer is written the socket is closed by hand (by the logger, which
// the library calls then, on the thread that ran the handler: hence a thread-local mark).
thread_local bool close_connection_after_response = false;

void close_after_response(httplib::Response& res) {
  res.set_header("Connection", "close");
  close_connection_after_response = true;
}

void close_if_marked(const httplib::Request& req) {
  if (!std::exchange(close_connection_after_response, false)) return;
  const int fd = find_connection_socket(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  if (fd >= 0) close_gracefully(fd);
}

// Encodings cpp-httplib decodes before a content reader sees the bytes (so the limit counts
// decoded bytes).
bool decodable_encoding(const std::string& encoding) {
  return encoding.empty() || encoding == "identity" || encoding == "gzip" || encoding == "deflate" || encoding == "br";
}

std::string lower_trimmed(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  const size_t first = s.find_first_not_of(" \t");
  return first == std::string::npos ? std::string() : s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// What a streaming response needs between calls of its content provider.
struct StreamState {
  BatchScheduler* scheduler = nullptr;
  std::shared_ptr<void> in_flight;
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
  // The body, read piece by piece (decoded when compressed) up to the limit: cpp-httplib 0.11 bounds
  // only bodies with a Content-Length itself, not chunked ones nor what they decompress to.
  // `socket`: the connection's (-1 if unknown).
  static std::string read_body(const HttpServer& s, int socket, httplib::Response& res,
                               const httplib::ContentReader& reader) {
    // What the library may read around the body: chunk framing, or a chunk-size line that never
    // ends (see ReadWatchdog).
    constexpr uint64_t kFramingSlack = 4 << 20;
    std::unique_ptr<ReadWatchdog::Watch> watch;
    if (socket >= 0) watch = s.watchdog_->watch(socket, s.options_.max_body_bytes + kFramingSlack);
    std::string body;
    bool too_large = false;
    const bool ok = reader([&](const char* data, size_t n) {
      if (n > s.options_.max_body_bytes - body.size()) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (ok) return body;
    close_after_response(res);
    if (too_large)
      throw RequestError(413, "the request body is larger than " + std::to_string(s.options_.max_body_bytes) +
                                  " bytes (after decompression)", "invalid_request_error", {}, "request_too_large");
    if (watch && watch->tripped())
      throw RequestError(413, "the request body with its chunked framing is larger than " +
                                  std::to_string(s.options_.max_body_bytes + kFramingSlack) + " bytes",
                         "invalid_request_error", {}, "request_too_large");
    throw RequestError(400, "the request body could not be read (a malformed chunk, corrupt compressed data, or the "
                            "client stopped sending)");
  }

  // POST /v1/chat/completions and /v1/completions.
  static void generate(HttpServer& s, const httplib::Request& req, httplib::Response& res,
                       const httplib::ContentReader& reader, Endpoint endpoint) {
    const std::shared_ptr<void> in_flight = count_in_flight(s.in_flight_);
    const int socket = find_connection_socket(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
    const std::string body = read_body(s, socket, res, reader);
    GenerationRequest r = endpoint == Endpoint::Chat ? parse_chat_request(body) : parse_completion_request(body);
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
      if (auto lost = s.scheduler_.device_lost()) throw device_lost_error(*lost);
      if (!s.scheduler_.accepting())
        throw RequestError(503, "the server is shutting down", "server_error", {}, "shutting_down");
      s.metrics_.rejected_queue_full++;
      res.set_header("Retry-After", "1");
      throw RequestError(503, "the server is busy: every sequence slot and queue place is taken; retry later",
                         "server_error", {}, "queue_full");
    }
    AnswerHeader header{random_id(endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-"), unix_now(), s.options_.model_id};
    if (r.stream)
      return stream(res, std::make_shared<StreamState>(
                             StreamState{&s.scheduler_, in_flight, channel, header, endpoint, r.include_usage}));

    // Nothing is written until the answer is whole, so a client that leaves is noticed on its
    // socket (a FIN or reset), checked whenever text arrives and at least every 250 ms.
    std::string text;
    Outcome outcome;
    bool cancelled = false;
    while (true) {
      auto news = channel->wait(std::chrono::milliseconds(250));
      text += news.text;
      if (news.done) {
        outcome = *news.done;
        break;
      }
      if (!cancelled && (s.stopping_ || (socket >= 0 && peer_has_closed(socket)))) {
        s.scheduler_.cancel(channel);  // queued: gone now; running: freed at the next step
        cancelled = true;
      }
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
          st->scheduler->cancel(st->channel);  // the client is gone: free its place now
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
      if (!success) st->scheduler->cancel(st->channel);
    });
  }

  // A handler that answers every exception with an error object (any extra arguments, such as a
  // content reader, are passed on).
  template <class Fn>
  static auto guarded(Fn fn) {
    return [fn](const httplib::Request& req, httplib::Response& res, const auto&... rest) {
      try {
        fn(req, res, rest...);
      } catch (const RequestError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, RequestError(500, std::string("internal error: ") + e.what(), "server_error"));
      }
    };
  }

  // Everything decided from the request line and headers, before any body is read: throws the
  // RequestError that refuses the request.
  static void screen(const HttpServer& s, const httplib::Request& req) {
    if (auto why = refuse_host_or_origin(req.get_header_value("Host"), req.get_header_value("Origin"),
                                         s.options_.allowed_hosts))
      throw RequestError(403, *why, "invalid_request_error", {}, "forbidden_origin");
    const bool generation = is_generation_route(req);
    // Only the generation routes read a body; anything else that would carry one is answered
    // before the library reads it (it would read it whole, however large, before routing).
    if (!generation && method_takes_body(req.method))
      throw RequestError(404, "unknown path: " + req.method + " " + req.path, "invalid_request_error", {},
                         "unknown_url");
    if (!s.options_.api_key.empty() && req.path.rfind("/v1/", 0) == 0) {
      const std::string auth = req.get_header_value("Authorization");
      constexpr std::string_view kBearer = "Bearer ";
      if (auth.size() <= kBearer.size() || std::string_view(auth).substr(0, kBearer.size()) != kBearer ||
          !constant_time_equal(std::string_view(auth).substr(kBearer.size()), s.options_.api_key))
        throw RequestError(401, "missing or incorrect API key: send 'Authorization: Bearer <key>'",
                           "invalid_request_error", {}, "invalid_api_key");
    }
    if (!generation) return;
    if (!is_json_media_type(req.get_header_value("Content-Type")))
      throw RequestError(415, "the body must be JSON sent as 'Content-Type: application/json' (got '" +
                                  req.get_header_value("Content-Type") + "')",
                         "invalid_request_error", {}, "unsupported_media_type");
    const std::string encoding = lower_trimmed(req.get_header_value("Content-Encoding"));
    if (!decodable_encoding(encoding))
      throw RequestError(415, "Content-Encoding '" + encoding + "' is not supported (gzip, deflate or br)",
                         "invalid_request_error", {}, "unsupported_media_type");
    if (req.has_header("Content-Length")) {
      const std::string text = req.get_header_value("Content-Length");
      uint64_t length = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), length);
      if (ec != std::errc() || end != text.data() + text.size())
        throw RequestError(400, "the Content-Length '" + text + "' is not a number");
      if (length > s.options_.max_body_bytes)
        throw RequestError(413, "the request body is larger than " + std::to_string(s.options_.max_body_bytes) +
                                    " bytes", "invalid_request_error", {}, "request_too_large");
    }
    if (auto lost = s.scheduler_.device_lost()) throw device_lost_error(*lost);
  }
};

HttpServer::HttpServer(BatchScheduler& scheduler, const PromptEncoder& prompts, ServerOptions options, Metrics& metrics)
    : scheduler_(scheduler), prompts_(prompts), options_(std::move(options)), metrics_(metrics),
      watchdog_(std::make_unique<ReadWatchdog>()), http_(std::make_unique<httplib::Server>()), started_(unix_now()) {
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
    close_connection_after_response = false;  // a mark left by a response that was never logged
    try {
      Impl::screen(*this, req);
      return httplib::Server::HandlerResponse::Unhandled;
    } catch (const RequestError& e) {
      send_error(res, e);
      if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
      if (method_takes_body(req.method)) close_after_response(res);  // its body was not read
      return httplib::Server::HandlerResponse::Handled;
    }
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
  h.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_response(res.status);
    close_if_marked(req);
  });

  h.Get("/health", Impl::guarded([this](const httplib::Request&, httplib::Response& res) {
    json health = {{"status", "ok"}, {"slots", scheduler_.slots()}, {"load", scheduler_.load()}};
    if (auto lost = scheduler_.device_lost()) {
      health["status"] = "device lost";
      health["reason"] = *lost;
    } else if (draining_) {
      health["status"] = "shutting down";
    }
    res.status = health["status"] == "ok" ? 200 : 503;
    res.set_content(dump(health), "application/json");
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
  // Registered with a content reader, so that the body reaches read_body() piece by piece.
  for (auto [path, endpoint] : {std::pair{"/v1/chat/completions", Endpoint::Chat}, {"/v1/completions", Endpoint::Completion}}) {
    h.Post(path, httplib::Server::HandlerWithContentReader(Impl::guarded(
                     [this, endpoint](const httplib::Request& req, httplib::Response& res,
                                      const httplib::ContentReader& reader) {
                       Impl::generate(*this, req, res, reader, endpoint);
                     })));
  }
}

}  // namespace ternvk::server
