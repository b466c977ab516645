#include "apps/ternvk-chat/conversation_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <type_traits>

#include "runtime/core/error.h"
#include "runtime/formats/json_input.h"

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

bool is_safe_conversation_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_';
  });
}

namespace {

// The id names a file in the conversations folder: anything but a plain name could reach outside it.
const std::string& checked_id(const std::string& id) {
  if (!is_safe_conversation_id(id)) {
    throw std::runtime_error("conversation id " + ternvk::json_preview(id) +
                             " is not a plain name (1 to 64 letters, digits, '-' or '_')");
  }
  return id;
}

}  // namespace

Conversation conversation_from_json(const nlohmann::json& j) {
  Conversation c;
  c.id = checked_id(j.at("id").get<std::string>());
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

namespace {

// One setting of settings.json: kept when it has the right type and range, else the default is
// kept and the key is named in `problems`. Numbers are range-checked before any conversion (a
// double outside an int's range does not convert).
template <class T>
void read_number(const nlohmann::json& j, const char* key, T& value, double lo, double hi, bool lo_open,
                 std::vector<std::string>& problems) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  const bool typed = std::is_integral_v<T> ? it->is_number_integer() : it->is_number();
  const double v = typed ? it->get<double>() : 0.0;
  if (typed && (lo_open ? v > lo : v >= lo) && v <= hi) {
    if constexpr (std::is_integral_v<T>) value = static_cast<T>(it->get<int64_t>());  // exact, unlike v
    else value = static_cast<T>(v);
    return;
  }
  problems.push_back("settings.json: \"" + std::string(key) + "\" is " + ternvk::json_preview(*it) + ", expected " +
                     (std::is_integral_v<T> ? "an integer" : "a number") + " in " + (lo_open ? "(" : "[") +
                     nlohmann::json(lo).dump() + ", " + nlohmann::json(hi).dump() + "]; using " +
                     nlohmann::json(value).dump());
}

}  // namespace

Settings settings_from_json(const nlohmann::json& j, std::vector<std::string>& problems) {
  Settings s;
  if (!j.is_object()) {
    problems.push_back("settings.json is " + ternvk::json_preview(j) + ", not an object; using the defaults");
    return s;
  }
  auto& p = s.sampling;
  // The ranges the sampler accepts.
  read_number(j, "temperature", p.temperature, 0, 10, false, problems);
  read_number(j, "top_k", p.top_k, 0, 1 << 20, false, problems);
  read_number(j, "top_p", p.top_p, 0, 1, true, problems);
  read_number(j, "min_p", p.min_p, 0, 0.99, false, problems);
  read_number(j, "repeat_penalty", p.repeat_penalty, 0, 10, true, problems);
  read_number(j, "seed", s.seed, -1, 9.0e18, false, problems);
  read_number(j, "max_tokens", s.max_tokens, 1, 1 << 20, false, problems);
  if (const auto it = j.find("system"); it != j.end() && !it->is_null()) {
    if (it->is_string()) s.system = it->get<std::string>();
    else problems.push_back("settings.json: \"system\" is " + ternvk::json_preview(*it) + ", expected a text");
  }
  if (const auto it = j.find("recent_models"); it != j.end() && !it->is_null()) {
    const bool paths = it->is_array() && std::all_of(it->begin(), it->end(), [](const auto& e) { return e.is_string(); });
    if (paths) s.recent_models = it->get<std::vector<std::string>>();
    else problems.push_back("settings.json: \"recent_models\" is " + ternvk::json_preview(*it) + ", expected a list of paths");
  }
  if (s.recent_models.size() > 8) s.recent_models.resize(8);
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
  // The rename is an entry of the folder: until the folder is on disk, a crash can still lose it.
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) fail("cannot open the folder " + dir.string() + " to sync it");
  const int synced = ::fsync(dir_fd);
  ::close(dir_fd);
  if (synced != 0) fail("fsync of the folder " + dir.string() + " failed");
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
// Conversations hold text the user typed and the model wrote: large, but not this large.
constexpr uint64_t kMaxFileBytes = uint64_t{64} << 20;
}  // namespace

std::vector<Conversation> ConversationStore::load_all(std::vector<std::string>& problems) const {
  std::vector<Conversation> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(conversations_dir(), ec)) {
    if (e.path().extension() != ".json") continue;  // also skips temporary files of an interrupted save
    try {
      Conversation c = conversation_from_json(ternvk::read_json_file(e.path(), kMaxFileBytes));
      if (c.id != e.path().stem().string()) {
        throw std::runtime_error("its id " + ternvk::json_preview(c.id) + " is not its file name");
      }
      out.push_back(std::move(c));
    } catch (const ternvk::Error& ex) {  // names the file itself
      problems.push_back(std::string("skipped ") + ex.what());
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
  write_file_atomically(conversations_dir() / (checked_id(c.id) + ".json"), to_json(c).dump(2) + "\n");
}

void ConversationStore::remove(const std::string& id) const {
  std::error_code ec;
  fs::remove(conversations_dir() / (checked_id(id) + ".json"), ec);
}

Settings ConversationStore::load_settings(std::vector<std::string>& problems) const {
  const auto p = root_ / "settings.json";
  if (!fs::exists(p)) return {};
  try {
    return settings_from_json(ternvk::read_json_file(p, kMaxFileBytes), problems);
  } catch (const ternvk::Error& ex) {  // names the file itself
    problems.push_back(std::string("ignored ") + ex.what());
    return {};
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
