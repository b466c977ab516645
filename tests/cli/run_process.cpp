#include "cli/run_process.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ternvk::test {

ProcessResult run_ternvk(const std::string& args, const std::string& input) { return run_ternvk_with("", args, input); }

ProcessResult run_ternvk_with(const std::string& prefix, const std::string& args, const std::string& input) {
  static int counter = 0;
  const auto dir = std::filesystem::path(TERNVK_BINARY_DIR) / "test-tmp" / "cli-io";
  std::filesystem::create_directories(dir);
  const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const auto in = dir / ("in-" + tag), out = dir / ("out-" + tag), err = dir / ("err-" + tag);
  std::ofstream(in) << input;
  const std::string cmd = prefix + " " + std::string(TERNVK_CLI) + " " + args + " <" + in.string() + " >" + out.string() + " 2>" +
                          err.string();
  const int status = std::system(cmd.c_str());
  ProcessResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(in);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

}  // namespace ternvk::test
