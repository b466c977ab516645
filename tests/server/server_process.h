// `ternvk serve` as a child process on a free loopback port, for the integration tests.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace ternvk::test {

// The shipped model (TERNVK_DEFAULT_MODEL overrides it).
std::string server_model();

class ServerProcess {
 public:
  // Starts `ternvk serve --port 0 <args>` (with `env`, e.g. "TERNVK_FAULT=...", in its environment)
  // and waits until it listens (throws if it does not).
  explicit ServerProcess(const std::string& args, const std::string& env = {});
  ~ServerProcess();  // SIGKILL if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // The exit status within `seconds`; nullopt if still running (exit code, or 128 + signal).
  std::optional<int> wait(double seconds);
  std::string log() const;  // what it printed on stderr

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

// Runs a shell command; returns its exit status and stdout.
std::pair<int, std::string> shell(const std::string& command);

// A metric's value from Prometheus text (name with labels, e.g. ternvk_requests_finished_total{reason="stop"}).
double metric(const std::string& text, const std::string& name);

}  // namespace ternvk::test
