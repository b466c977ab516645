// `ternvk serve`: an OpenAI-compatible HTTP server with continuous batching (runtime/server).
// SIGTERM / SIGINT while the model loads: the load stops, exit 143 / 130 (load_engine). Later:
// stop taking requests, let running ones finish for --shutdown-timeout seconds,
// cancel the rest, exit 0. A second signal cancels at once. A lost GPU: every request fails with
// 503, and once their answers are written the process exits with kExitDeviceLost, for a
// supervisor to restart it.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "apps/ternvk/commands.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/core/error.h"
#include "runtime/server/engine_model.h"
#include "runtime/server/http_server.h"
#include "runtime/server/request_guard.h"

namespace ternvk::cli {
namespace {

struct ServeOptions {
  ModelFlags model;
  server::ServerOptions http;
  int parallel = 4;
  int queue = 16;
  double shutdown_timeout = 10;
  bool fp16_baseline = false;
  std::string alias;
};

// The id clients name the model by: --alias, else the file's stem ("model.gguf" in a folder
// named after the model: the folder's name).
std::string model_id(const std::string& alias, const std::filesystem::path& path) {
  if (!alias.empty()) return alias;
  auto p = std::filesystem::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "folder/"
  if (std::filesystem::is_directory(p)) return p.filename().string();  // a Hugging Face folder
  if (p.stem() == "model" && p.has_parent_path()) return p.parent_path().filename().string();
  return p.stem().string();
}

double mib(uint64_t bytes) { return double(bytes) / (1024.0 * 1024.0); }

constexpr int kExitDeviceLost = 3;

// The GPU is gone: the scheduler has failed every request; wait (boundedly) until their answers
// are written, then stop serving.
void exit_after_device_loss(const std::string& reason, server::HttpServer& http) {
  using Clock = std::chrono::steady_clock;
  std::fprintf(stderr,
               "ternvk serve: the GPU was lost: %s\nternvk serve: every request now gets 503; exiting with "
               "status %d once the %d answers in flight are written, so that a supervisor restarts the server\n",
               reason.c_str(), kExitDeviceLost, http.in_flight());
  http.stop_accepting();
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (http.in_flight() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  http.stop();
}

// Waits for SIGTERM/SIGINT (blocked in every thread, taken here with sigtimedwait), then drains;
// or for the GPU's loss. Returns the exit status.
int watch_signals(const sigset_t& set, std::atomic<bool>& done, server::HttpServer& http,
                  server::BatchScheduler& scheduler, double timeout_s) {
  const timespec tick{0, 50'000'000};
  int sig = -1;
  while (!done && sig < 0 && !scheduler.device_lost()) sig = sigtimedwait(&set, nullptr, &tick);
  if (done) return 0;
  if (auto lost = scheduler.device_lost()) {
    exit_after_device_loss(*lost, http);
    return kExitDeviceLost;
  }
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  std::fprintf(stderr, "ternvk serve: %s: no new requests; finishing %d running/queued (at most %.1f s)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", scheduler.load(), timeout_s);
  http.stop_accepting();
  bool again = false;
  while (scheduler.load() > 0 && Clock::now() < deadline && !again) again = sigtimedwait(&set, nullptr, &tick) > 0;
  if (scheduler.load() > 0) {
    std::fprintf(stderr, "ternvk serve: cancelling %d requests\n", scheduler.load());
    scheduler.cancel_all();
    const auto hard = Clock::now() + std::chrono::seconds(2);
    while (scheduler.load() > 0 && Clock::now() < hard) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Let the open streams write their last events before the sockets close.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  http.stop();
  return 0;
}

}  // namespace

Action add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  auto o = std::make_shared<ServeOptions>();
  o->model.add(*cmd);
  cmd->add_option("--host", o->http.host, "Address to listen on (default: loopback only)");
  cmd->add_option("--port", o->http.port, "Port (0: any free port, printed at start)")->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel,--np", o->parallel, "Sequences decoded together (KV cache slots)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--queue", o->queue, "Requests that may wait for a slot; beyond that: 503")->check(CLI::Range(0, 4096));
  cmd->add_option("--api-key", o->http.api_key, "Require 'Authorization: Bearer KEY' on /v1/ (default: $TERNVK_API_KEY)")
      ->envname("TERNVK_API_KEY");
  cmd->add_option("--allowed-hosts", o->http.allowed_hosts,
                  "Host names (comma-separated) that may reach the server beyond loopback names and IP "
                  "addresses, in the Host header and as a browser page's Origin; '*': any (behind a proxy "
                  "that checks them)")
      ->delimiter(',')
      ->check([](const std::string& name) {
        return name == "*" || server::host_of_host_header(name) ? std::string()
                                                                 : "'" + name + "' is not a host name";
      });
  cmd->add_option("--alias", o->alias, "Model id for /v1/models and requests (default: from the file name)");
  cmd->add_option("--max-body", o->http.max_body_bytes, "Largest request body in bytes (larger: 413)")
      ->check(CLI::Range(size_t(1024), size_t(1) << 30));
  cmd->add_option("--threads-http", o->http.threads, "HTTP worker threads (0: parallel + queue + 4)")->check(CLI::Range(0, 1024));
  cmd->add_option("--shutdown-timeout", o->shutdown_timeout,
                  "Seconds running requests may take to finish after SIGTERM before they are cancelled")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_flag("--fp16-baseline", o->fp16_baseline, "Linear weights in FP16 (the baseline, for benchmarks)");
  return [o] {
    // Block the stop signals before any thread starts, so only the watcher receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    Instance instance;
    EngineOptions eo = o->model.engine_options(int(instance.devices().size()));
    eo.sequences = o->parallel;
    eo.fp16_baseline = o->fp16_baseline;
    const std::string path = o->model.model_path();
    // Ctrl-C or SIGTERM during the load stop it (the signals stay blocked: a thread takes them).
    const auto loaded = load_engine(instance, path, eo, &stop_signals);
    Engine& engine = *loaded;
    const uint64_t kv = server::kv_cache_bytes(engine.config(), engine.context(), engine.sequences());
    std::fprintf(stderr, "%s", engine.describe_plan().c_str());
    std::fprintf(stderr, "ternvk serve: KV cache %d slots x %d positions = %.1f MiB, allocated up front%s\n",
                 engine.sequences(), engine.context(), mib(kv), o->fp16_baseline ? " (FP16 baseline weights)" : "");
    std::fprintf(stderr, "ternvk serve: GPU memory %.1f MiB in all (weights, KV cache, scratch)\n",
                 mib(engine.peak_gpu_bytes()));
    std::fprintf(stderr, "ternvk serve: layers chained %s\n", engine.layer_chain_note().c_str());
    std::fprintf(stderr, "ternvk serve: matrix splits %s\n", engine.matrix_split_note().c_str());

    server::Metrics metrics;
    metrics.kv_bytes = kv;
    server::EngineModel model(engine);
    const Tokenizer& tok = engine.tokenizer();
    server::SchedulerOptions so;
    so.queue_limit = o->queue;
    so.prefill_chunk = o->model.batch;
    for (auto id : {tok.eos(), tok.eot()})
      if (id) so.end_tokens.push_back(uint32_t(*id));
    server::PromptEncoder prompts(tok, engine.config().arch_name);
    server::BatchScheduler scheduler(model, tok, so, metrics);
    o->http.model_id = model_id(o->alias, path);
    // A worker thread for every slot and queue place, and a few for /health, /metrics and refusals.
    if (o->http.threads == 0) o->http.threads = o->parallel + o->queue + 4;
    server::HttpServer http(scheduler, prompts, o->http, metrics);
    const int port = http.bind();
    std::fprintf(stderr, "ternvk serve: model '%s', chat format %s, %d slots, queue %d%s\n", o->http.model_id.c_str(),
                 std::string(chat_format_name(prompts.format())).c_str(), engine.sequences(), o->queue,
                 o->http.api_key.empty() ? "" : ", API key required");
    std::fprintf(stderr, "ternvk serve: listening on http://%s:%d\n", o->http.host.c_str(), port);
    std::fflush(stderr);

    std::atomic<bool> done{false};
    int status = 0;
    std::thread watcher(
        [&] { status = watch_signals(stop_signals, done, http, scheduler, o->shutdown_timeout); });
    http.run();
    done = true;
    watcher.join();
    std::fprintf(stderr, "ternvk serve: stopped%s\n", status == kExitDeviceLost ? " (the GPU was lost)" : "");
    return status;
  };
}

}  // namespace ternvk::cli
