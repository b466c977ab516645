// Runs ternvk-chat (and the ternvk CLI) as a user would, in a real X server: xvfb-run starts a
// private Xvfb for each run. Each test gets its own scratch directory (data dir, scripts, outputs).
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace ternvk::test {

struct Run {
  int exit_code = -1;
  std::string out, err;
  double seconds = 0;
};

// `command` is a shell command line; stdout and stderr are captured.
Run run_shell(const std::string& command);
// ternvk-chat under xvfb-run with a 1280x1024 screen; `env` is prepended (e.g. "TERNVK_CHAT_NO_PRESENT=1").
Run run_chat_in_xvfb(const std::string& args, const std::string& env = "");
// A fresh directory under the build tree for one test.
std::filesystem::path scratch_dir(const std::string& name);
std::string read_text(const std::filesystem::path& p);
nlohmann::json read_json(const std::filesystem::path& p);
void write_text(const std::filesystem::path& p, const std::string& text);
// Single quotes for sh.
std::string shell_quote(const std::string& s);

// A decoded PNG (RGB).
struct Png {
  int width = 0, height = 0;
  std::vector<unsigned char> rgb;
  size_t distinct_colors() const;
  // Fraction of pixels that differ from the most common colour (the background).
  double foreground_fraction() const;
};
Png load_png(const std::filesystem::path& p);

}  // namespace ternvk::test
