// `ternvk serve` under load: aggregate decode throughput and per-request latency (p50, p99) at
// 1, 2, 4, 8, 16 concurrent streams, for the ternary model and its FP16 baseline (the same shape and
// values, linear weights in FP16) on the same device in one run; plus the largest --parallel each
// fits in a memory budget. The issue-8 benchmark: the paper's batch-size and throughput claims on
// the device at hand.
//
//   bench_server --ternvk build/apps/ternvk [-m model.gguf] [--streams 1,2,4,8,16] [--tokens 64]
//                [--rounds 2] [--budget-mib 1024] [--extra "--dot swar"]
//
// Every request is a greedy /v1/completions stream of up to --tokens tokens (an early end of text
// counts what was generated). Throughput = completion tokens / wall time of the level; latency =
// request start to its last event. The memory rows take the server's own report at start: GPU bytes
// beyond the KV cache (weights, scratch) are fixed, each slot adds its KV cache.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Server {
  pid_t pid = -1;
  int port = 0;
  std::string log;  // stderr at start
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Server start(const std::string& command, const std::string& log_path) {
  Server s;
  s.pid = fork();
  if (s.pid == 0) {
    const std::string c = "exec " + command + " 2>" + log_path + " >/dev/null </dev/null";
    execl("/bin/sh", "sh", "-c", c.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::regex listening("listening on http://[^:]+:([0-9]+)");
  for (int i = 0; i < 6000; ++i) {
    std::smatch m;
    s.log = slurp(log_path);
    if (std::regex_search(s.log, m, listening)) {
      s.port = std::stoi(m[1]);
      return s;
    }
    int status;
    if (waitpid(s.pid, &status, WNOHANG) == s.pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("the server did not start:\n" + s.log);
}

void stop(Server& s) {
  kill(s.pid, SIGTERM);
  int status;
  waitpid(s.pid, &status, 0);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5));
  return v[i];
}

struct Level {
  int streams = 0;
  double tokens_per_second = 0;
  double p50 = 0, p99 = 0, ttft50 = 0;  // seconds
  int tokens = 0;
};

// One stream: a greedy completion; returns {completion tokens, latency, time to first token}.
std::tuple<int, double, double> request(int port, const std::string& prompt, int max_tokens) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(600, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = {{"Content-Type", "application/json"}};
  req.body = json{{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", true}}.dump();
  const auto t0 = Clock::now();
  double first = -1;
  int tokens = 0;
  std::string buffer;
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    buffer.append(d, n);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: {", 0) != 0) continue;
      const json j = json::parse(event.substr(6), nullptr, false);
      if (j.is_discarded()) continue;
      if (first < 0 && !j["choices"].empty() && !j["choices"][0]["text"].get<std::string>().empty())
        first = std::chrono::duration<double>(Clock::now() - t0).count();
      if (j.contains("usage")) tokens = j["usage"]["completion_tokens"];
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err;
  c.send(req, res, err);
  return {tokens, std::chrono::duration<double>(Clock::now() - t0).count(), first};
}

Level run_level(int port, int streams, int rounds, int max_tokens) {
  const char* prompts[] = {"ROMEO:", "JULIET:", "First Citizen:", "KING RICHARD III:", "HAMLET:", "MENENIUS:"};
  std::vector<std::vector<std::tuple<int, double, double>>> results(static_cast<size_t>(streams));
  const auto t0 = Clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < streams; ++i)
    clients.emplace_back([&, i] {
      for (int r = 0; r < rounds; ++r) results[size_t(i)].push_back(request(port, prompts[(i + r) % 6], max_tokens));
    });
  for (auto& t : clients) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  Level l;
  l.streams = streams;
  std::vector<double> lat, ttft;
  for (auto& per : results)
    for (auto& [tokens, latency, first] : per) {
      l.tokens += tokens;
      lat.push_back(latency);
      if (first >= 0) ttft.push_back(first);
    }
  l.tokens_per_second = l.tokens / wall;
  l.p50 = percentile(lat, 0.5);
  l.p99 = percentile(lat, 0.99);
  l.ttft50 = percentile(ttft, 0.5);
  return l;
}

double mib_in(const std::string& log, const std::string& pattern) {
  std::smatch m;
  if (std::regex_search(log, m, std::regex(pattern))) return std::stod(m[1]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ternvk serve under concurrent load: ternary vs the FP16 baseline"};
  std::string bin = "build/apps/ternvk", model, extra;
  std::vector<int> levels = {1, 2, 4, 8, 16};
  int tokens = 64, rounds = 2;
  double budget_mib = 1024;
  app.add_option("--ternvk", bin, "The ternvk binary");
  app.add_option("-m,--model", model, "Model file (default: the shipped one)");
  app.add_option("--streams", levels, "Concurrent streams per level, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  app.add_option("--tokens", tokens, "max_tokens per request")->check(CLI::Range(1, 100000));
  app.add_option("--rounds", rounds, "Requests per stream and level")->check(CLI::Range(1, 10000));
  app.add_option("--budget-mib", budget_mib, "Memory budget for the largest --parallel")->check(CLI::Range(1.0, 1e7));
  app.add_option("--extra", extra, "More flags for ternvk serve");
  CLI11_PARSE(app, argc, argv);
  const int parallel = *std::max_element(levels.begin(), levels.end());

  std::printf("| weights | streams | decode tok/s (aggregate) | latency p50 (s) | latency p99 (s) | first token p50 (s) |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: |\n");
  std::vector<std::string> memory_rows;
  for (bool fp16 : {false, true}) {
    const std::string name = fp16 ? "FP16 baseline" : "ternary";
    const std::string cmd = bin + " serve --port 0 --parallel " + std::to_string(parallel) + " --queue 64" +
                            (model.empty() ? "" : " -m " + model) + (fp16 ? " --fp16-baseline" : "") + " " + extra;
    Server s = start(cmd, "/tmp/bench_server_" + std::to_string(getpid()) + (fp16 ? "_fp16" : "") + ".log");
    for (int n : levels) {
      // Untimed first: a device that compiles pipelines on first use (lavapipe) does so per batch size.
      run_level(s.port, n, 1, 8);
      const Level l = run_level(s.port, n, rounds, tokens);
      std::printf("| %s | %d | %.1f | %.2f | %.2f | %.3f |\n", name.c_str(), n, l.tokens_per_second, l.p50, l.p99,
                  l.ttft50);
      std::fflush(stdout);
    }
    stop(s);
    // Memory: what the engine holds beyond the KV cache is fixed; each slot adds its KV cache.
    const double kv = mib_in(s.log, "KV cache [0-9]+ slots x [0-9]+ positions = ([0-9.]+) MiB");
    const double total = mib_in(s.log, "GPU memory ([0-9.]+) MiB");
    const double per_slot = kv / parallel;
    const double fixed = total - kv;
    const int fits = per_slot > 0 ? int((budget_mib - fixed) / per_slot) : 0;
    char row[256];
    std::snprintf(row, sizeof row, "| %s | %.1f | %.3f | %d |", name.c_str(), fixed, per_slot, std::max(0, fits));
    memory_rows.push_back(row);
  }
  std::printf("\n| weights | GPU MiB without KV cache | KV MiB per slot | largest --parallel in %.0f MiB |\n"
              "| --- | ---: | ---: | ---: |\n", budget_mib);
  for (auto& r : memory_rows) std::printf("%s\n", r.c_str());
  return 0;
}
