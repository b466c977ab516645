// Runs the ternvk binary as a user would and captures what it prints.
#pragma once
#include <string>

namespace ternvk::test {

struct ProcessResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// `args` is appended to the binary's path as-is (shell syntax); `input` is written to stdin.
ProcessResult run_ternvk(const std::string& args, const std::string& input = "");
// The same, with a shell prefix before the binary (e.g. "timeout --preserve-status -s INT 5").
ProcessResult run_ternvk_with(const std::string& prefix, const std::string& args, const std::string& input = "");

}  // namespace ternvk::test
