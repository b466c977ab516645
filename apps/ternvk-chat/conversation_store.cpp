#include "apps/ternvk-chat/conversation_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace ternvk::chat {
namespace fs = std::filesystem;

void Settings::remember_model(const std::string& path) {
  recent_models.erase(std::remove(recent_models.begin(), recent_models.end(), path), recent_models.end());
  recent_models.insert(recent_models.begin(), path);
  if (recent_models.size() > 8) recent_models.resize(8);
}

nlohmann::json to_json(const Conversation& c) {
  nlohmann::json messages = nlohmann::json::array();
  for (const auto& m : c.messages) {
    nlohmann::json j = {{"role", m.role}, {"content", m.content}};
    if (m.role == "assistant") {
      j["stop_reason"] = m.stop_reason;
      j["tokens"] = m.tokens;
      j["tokens_per_second"] = m.tokens_per_second;
    }
    messages.push_back(j);
  }
  return {{"format", "ternvk-chat conversation 1"},
          {"id", c.id},
          {"title", c.title},
          {"model", c.model},
          {"system", c.system},
          {"created", c.created},
          {"updated", c.updated},
          {"messages", messages}};
}

Conversation conversation_from_json(const nlohmann::json& j) {
  Conversation c;
  c.id = j.at("id").get<std::string>();
  c.title = j.value("title", "");
  c.model = j.value("model", "");
  c.system = j.value("system", "");
  c.created = j.value("created", int64_t(0));
  c.updated = j.value("updated", c.created);
  for (const auto& m : j.at("messages")) {
    Message msg;
    msg.role = m.at("role").get<std::string>();
    msg.content = m.at("content").get<std::string>();
    msg.stop_reason = m.value("stop_reason", "");
    msg.tokens = m.value("tokens", 0);
    msg.tokens_per_second = m.value("tokens_per_second", 0.0);
    c.messages.push_back(std::move(msg));
  }
  return c;
}

nlohmann::json to_json(const Settings& s) {
  const auto& p = s.sampling;
  return {{"temperature", p.temperature}, {"top_k", p.top_k},   {"top_p", p.top_p},
          {"min_p", p.min_p},             {"repeat_penalty", p.repeat_penalty},
          {"seed", s.seed},               {"max_tokens", s.max_tokens},
          {"system", s.system},           {"recent_models", s.recent_models}};
}

Settings settings_from_json(const nlohmann::json& j) {
  Settings s;
  auto& p = s.sampling;
  p.temperature = j.value("temperature", p.temperature);
  p.top_k = j.value("top_k", p.top_k);
  p.top_p = j.value("top_p", p.top_p);
  p.min_p = j.value("min_p", p.min_p);
  p.repeat_penalty = j.value("repeat_penalty", p.repeat_penalty);
  s.seed = j.value("seed", s.seed);
  s.max_tokens = j.value("max_tokens", s.max_tokens);
  s.system = j.value("system", "");
  s.recent_models = j.value("recent_models", std::vector<std::string>{});
  return s;
}

void write_file_atomically(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + ".tmp-" + std::to_string(::getpid());
  auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot save " + path.string() + ": " + what + " (" + reason + ")");
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create " + tmp.string());
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      fail("write failed");
    }
    done += size_t(n);
  }
  // The data must be on disk before the rename makes it the file, or a crash could leave it empty.
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("fsync failed");
  }
  if (::close(fd) != 0) fail("close failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename failed");
}

fs::path ConversationStore::default_root() {
  if (const char* d = std::getenv("TERNVK_CHAT_DATA_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x && fs::path(x).is_absolute()) return fs::path(x) / "ternvk";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".local/share/ternvk";
  throw std::runtime_error("neither XDG_DATA_HOME nor HOME is set: nowhere to keep conversations");
}

ConversationStore::ConversationStore(fs::path root) : root_(std::move(root)) {
  std::error_code ec;
  fs::create_directories(conversations_dir(), ec);
  if (ec) throw std::runtime_error("cannot create " + conversations_dir().string() + ": " + ec.message());
}

namespace {
nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}
}  // namespace

std::vector<Conversation> ConversationStore::load_all(std::vector<std::string>& problems) const {
  std::vector<Conversation> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(conversations_dir(), ec)) {
    if (e.path().extension() != ".json") continue;  // also skips temporary files of an interrupted save
    try {
      out.push_back(conversation_from_json(read_json(e.path())));
    } catch (const std::exception& ex) {
      problems.push_back("skipped " + e.path().string() + ": " + ex.what());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.updated != b.updated ? a.updated > b.updated : a.id > b.id;
  });
  return out;
}

void ConversationStore::save(const Conversation& c) const {
  write_file_atomically(conversations_dir() / (c.id + ".json"), to_json(c).dump(2) + "\n");
}

void ConversationStore::remove(const std::string& id) const {
  std::error_code ec;
  fs::remove(conversations_dir() / (id + ".json"), ec);
}

Settings ConversationStore::load_settings(std::vector<std::string>& problems) const {
  const auto p = root_ / "settings.json";
  if (!fs::exists(p)) return {};
  try {
    return settings_from_json(read_json(p));
  } catch (const std::exception& ex) {
    problems.push_back("ignored " + p.string() + ": " + ex.what());
    return {};
  }
}

void ConversationStore::save_settings(const Settings& s) const {
  write_file_atomically(root_ / "settings.json", to_json(s).dump(2) + "\n");
}

std::string ConversationStore::new_id() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::random_device rd;
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x", unsigned(rd() & 0xffff));
  return std::to_string(ms) + "-" + suffix;
}

}  // namespace ternvk::chat
