#include "server/server_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ternvk::test {

std::string server_model() {
  const char* env = std::getenv("TERNVK_DEFAULT_MODEL");
  return env && *env ? env : std::string(TERNVK_SOURCE_DIR) + "/models/ternvk-shakespeare/model.gguf";
}

ServerProcess::ServerProcess(const std::string& args, const std::string& env) {
  ::signal(SIGPIPE, SIG_IGN);  // a client write to a server that just closed must fail, not kill the tests
  static std::atomic<int> counter{0};
  const auto dir = std::filesystem::path(TERNVK_BINARY_DIR) / "test-tmp" / "server";
  std::filesystem::create_directories(dir);
  log_path_ = (dir / ("serve-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".log")).string();
  const std::string command = std::string("exec ") + (env.empty() ? "" : "env " + env + " ") + TERNVK_CLI +
                              " serve --port 0 " + args + " 2>" + log_path_ +
                              " >/dev/null </dev/null";
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::regex listening("listening on http://[^:]+:([0-9]+)");
  for (int i = 0; i < 1200; ++i) {  // up to 60 s (a loaded machine compiles pipelines slowly)
    std::smatch m;
    const std::string text = log();
    if (std::regex_search(text, m, listening)) {
      port_ = std::stoi(m[1]);
      return;
    }
    if (auto status = wait(0)) throw std::runtime_error("ternvk serve exited (" + std::to_string(*status) + "):\n" + text);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("ternvk serve did not start listening:\n" + log());
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !wait(0)) {
    ::kill(pid_, SIGKILL);
    wait(10);
  }
}

void ServerProcess::signal(int sig) const { ::kill(pid_, sig); }

std::optional<int> ServerProcess::wait(double seconds) {
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string ServerProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::pair<int, std::string> shell(const std::string& command) {
  FILE* p = popen(command.c_str(), "r");
  if (!p) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

double metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  throw std::runtime_error("no metric " + name + " in:\n" + text);
}

}  // namespace ternvk::test
