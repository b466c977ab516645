// The HTTP face of the server (cpp-httplib): OpenAI routes, server-sent events, bearer-token
// authentication, Host/Origin checks, a body size limit that holds for chunked and compressed
// bodies too, 503 + Retry-After when the scheduler's queue is full, 503 once the GPU is lost, and
// OpenAI-style JSON errors for everything that goes wrong.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/server/batch_scheduler.h"
#include "runtime/server/metrics.h"
#include "runtime/server/prompt.h"

namespace httplib {
class Server;
}

namespace ternvk::server {

class ReadWatchdog;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see HttpServer::bind)
  std::string api_key;              // empty: no authentication
  std::string model_id = "ternvk";  // what /v1/models lists and requests may name
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413 (counted after decompression)
  std::vector<std::string> allowed_hosts;  // Host/Origin names beyond loopback ones; "*": any
  int threads = 0;                  // HTTP worker threads; 0: enough for every slot and queue place
};

// Compares in time that depends only on the length of `expected` (API keys).
bool constant_time_equal(std::string_view given, std::string_view expected);

class HttpServer {
 public:
  HttpServer(BatchScheduler& scheduler, const PromptEncoder& prompts, ServerOptions options, Metrics& metrics);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port. Throws ternvk::Error when it cannot.
  int bind();
  // Serves until stop(); call bind() first.
  void run();
  // Draining: health answers 503 and new generation requests get 503; running ones go on.
  void stop_accepting();
  // Closes the listening socket and ends the open streams; run() returns.
  void stop();
  // Generation requests whose answer is not yet fully written.
  int in_flight() const { return in_flight_; }

 private:
  void routes();
  struct Impl;
  BatchScheduler& scheduler_;
  const PromptEncoder& prompts_;
  ServerOptions options_;
  Metrics& metrics_;
  std::unique_ptr<ReadWatchdog> watchdog_;  // outlives http_, whose handlers use it
  std::unique_ptr<httplib::Server> http_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0};
  int64_t started_ = 0;  // unix time, for "created"
};

}  // namespace ternvk::server
