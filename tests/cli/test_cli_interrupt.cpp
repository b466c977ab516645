// Ctrl-C while `ternvk` loads a model: the load stops at its next layer, the process says why and
// exits with 130 (the shell's code for SIGINT) by itself -- not killed by the signal, not after the
// whole model has loaded. `serve`, which keeps its stop signals blocked in every thread, stops its
// load for SIGTERM too (143). The load is held after a layer (TERNVK_TEST_PAUSE_LOAD) until the signal
// arrives, so the signal lands in the middle of the load however fast the machine loads.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kTiny = (fs::path(TERNVK_SHARED_DIR) / "data/models/tiny-random-tq2_0.gguf").string();

struct Ended {
  bool by_signal = false;  // killed by a signal rather than exiting
  int code = -1;           // the exit code, or the signal
  std::string out, err;
};

// Runs `ternvk args...` with TERNVK_TEST_PAUSE_LOAD=1, sends it `signal` once its stderr says the
// load is held, and reports exactly how it ended (waitpid, no shell in between).
Ended interrupt_while_loading(const std::vector<std::string>& args, const std::string& input = "",
                              int signal = SIGINT) {
  int in[2], out[2], err[2];
  REQUIRE(pipe(in) == 0);
  REQUIRE(pipe(out) == 0);
  REQUIRE(pipe(err) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
    setenv("TERNVK_TEST_PAUSE_LOAD", "1", 1);
    std::vector<char*> argv{const_cast<char*>(TERNVK_CLI)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(TERNVK_CLI, argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (!input.empty()) (void)!write(in[1], input.data(), input.size());
  close(in[1]);
  Ended e;
  bool signalled = false;
  // A guard against a hang only: a healthy run pauses within seconds.
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
    if (poll(fds, 2, 100) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? e.out : e.err).append(buf, size_t(n));
      }
    }
    if (!signalled && e.err.find("loading paused") != std::string::npos) {
      kill(pid, signal);
      signalled = true;
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  if (open_fds > 0) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  e.by_signal = WIFSIGNALED(status);
  e.code = e.by_signal ? WTERMSIG(status) : WEXITSTATUS(status);
  return e;
}

void expect_interrupted_load(const Ended& r, const std::string& message = "interrupted (Ctrl-C)", int code = 130) {
  CAPTURE(r.err);
  CHECK(r.err.find("loading paused after layer 1") != std::string::npos);  // the signal came mid-load
  CHECK(r.err.find("ternvk: " + message + " while loading the model") != std::string::npos);
  CHECK_FALSE(r.by_signal);  // it exited by itself; the signal did not kill it
  CHECK(r.code == code);
  CHECK(r.err.find("validation error") == std::string::npos);
}

}  // namespace

TEST_CASE("Ctrl-C while run loads a model stops the load and exits 130 with a message") {
  const auto r = interrupt_while_loading({"run", "-m", kTiny, "-p", "Once upon a time", "-n", "8", "--greedy"});
  expect_interrupted_load(r);
  CHECK(r.out.empty());  // nothing was generated, not even the prompt echoed
}

TEST_CASE("Ctrl-C while a pipeline of two devices loads frees both and exits 130") {
  const auto r = interrupt_while_loading({"run", "-m", kTiny, "-p", "hi", "-n", "4", "--devices", "0,0", "--split", "1,1"});
  expect_interrupted_load(r);
  CHECK(r.err.find("plan: stage 1") != std::string::npos);  // both stages were planned, the first loading
}

TEST_CASE("Ctrl-C while chat loads a model ends the chat before it starts") {
  const auto r = interrupt_while_loading({"chat", "-m", kTiny, "-n", "8"}, "hello\n");
  expect_interrupted_load(r);
  CHECK(r.err.find("Ctrl-C stops an answer") == std::string::npos);  // the chat never began
}

TEST_CASE("Ctrl-C while serve loads a model stops the load and exits 130, before it listens") {
  const auto r = interrupt_while_loading({"serve", "-m", kTiny, "--port", "0"});
  expect_interrupted_load(r);
  CHECK(r.err.find("listening on") == std::string::npos);
}

TEST_CASE("SIGTERM while serve loads a model stops the load and exits 143, before it listens") {
  const auto r = interrupt_while_loading({"serve", "-m", kTiny, "--port", "0"}, "", SIGTERM);
  expect_interrupted_load(r, "stopped by SIGTERM", 143);
  CHECK(r.err.find("listening on") == std::string::npos);
}
