#include "desktop/desktop_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include <stb_image.h>

namespace ternvk::test {
namespace fs = std::filesystem;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json read_json(const fs::path& p) {
  const std::string text = read_text(p);
  if (text.empty()) throw std::runtime_error("missing or empty: " + p.string());
  return nlohmann::json::parse(text);
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

fs::path scratch_dir(const std::string& name) {
  const auto dir = fs::path(TERNVK_BINARY_DIR) / "test-tmp" / "desktop" / (name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Run run_shell(const std::string& command) {
  static int counter = 0;
  const auto dir = fs::path(TERNVK_BINARY_DIR) / "test-tmp" / "desktop-io";
  fs::create_directories(dir);
  const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const auto out = dir / ("out-" + tag), err = dir / ("err-" + tag);
  const std::string cmd = "(" + command + ") </dev/null >" + out.string() + " 2>" + err.string();
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text(out);
  r.err = read_text(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

Run run_chat_in_xvfb(const std::string& args, const std::string& env) {
  // timeout: a hung app fails the test instead of the whole ctest run.
  return run_shell(env + " timeout -k 10 120 xvfb-run -a -s '-screen 0 1280x1024x24 -nolisten tcp' " +
                   std::string(TERNVK_CHAT) + " " + args);
}

size_t Png::distinct_colors() const {
  std::map<uint32_t, int> seen;
  for (size_t i = 0; i + 2 < rgb.size(); i += 3) seen[uint32_t(rgb[i]) << 16 | uint32_t(rgb[i + 1]) << 8 | rgb[i + 2]]++;
  return seen.size();
}

double Png::foreground_fraction() const {
  std::map<uint32_t, size_t> count;
  for (size_t i = 0; i + 2 < rgb.size(); i += 3) count[uint32_t(rgb[i]) << 16 | uint32_t(rgb[i + 1]) << 8 | rgb[i + 2]]++;
  size_t most = 0;
  for (const auto& [_, n] : count) most = std::max(most, n);
  const size_t pixels = rgb.size() / 3;
  return pixels ? double(pixels - most) / double(pixels) : 0;
}

Png load_png(const fs::path& p) {
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(p.c_str(), &w, &h, &channels, 3);
  if (!data) throw std::runtime_error("cannot decode " + p.string() + ": " + stbi_failure_reason());
  Png png;
  png.width = w;
  png.height = h;
  png.rgb.assign(data, data + size_t(w) * size_t(h) * 3);
  stbi_image_free(data);
  return png;
}

}  // namespace ternvk::test
