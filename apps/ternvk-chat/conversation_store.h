// Conversations and app settings as JSON files in the user's data directory:
// $XDG_DATA_HOME/ternvk (default ~/.local/share/ternvk): conversations/<id>.json and settings.json.
// Every file is written to a temporary file beside it, flushed to disk, then renamed over the old
// one, so a crash leaves either the old or the new file, never half of one.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/engine/sampler.h"

namespace ternvk::chat {

struct Message {
  std::string role;  // "user" or "assistant"
  std::string content;
  // Assistant messages: why generation ended ("eos", "length", "stopped", ...), tokens and speed.
  std::string stop_reason;
  int tokens = 0;
  double tokens_per_second = 0;
};

struct Conversation {
  std::string id;     // also the file name
  std::string title;  // the first user message, shortened
  std::string model;  // path of the model that answered
  std::string system;
  int64_t created = 0, updated = 0;  // Unix seconds
  std::vector<Message> messages;
};

// Sampling and model settings the side panel edits; saved in settings.json.
struct Settings {
  SamplingParams sampling;
  int64_t seed = -1;  // < 0: a new random seed for each answer
  int max_tokens = 256;
  std::string system;
  std::vector<std::string> recent_models;  // most recent first
  void remember_model(const std::string& path);
};

// Whether `id` can name a conversation's file: 1 to 64 letters, digits, '-' or '_'.
bool is_safe_conversation_id(std::string_view id);

nlohmann::json to_json(const Conversation& c);
// Throws for a missing field or an id that is not a plain name.
Conversation conversation_from_json(const nlohmann::json& j);
nlohmann::json to_json(const Settings& s);
// Settings of the wrong type or out of range keep their defaults and are named in `problems`.
Settings settings_from_json(const nlohmann::json& j, std::vector<std::string>& problems);

// Writes `text` to `path` through a temporary file, fsync, rename() and an fsync of the folder.
// Throws with the path and reason.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

class ConversationStore {
 public:
  // TERNVK_CHAT_DATA_DIR, else $XDG_DATA_HOME/ternvk, else ~/.local/share/ternvk.
  static std::filesystem::path default_root();
  explicit ConversationStore(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path conversations_dir() const { return root_ / "conversations"; }
  // Every readable conversation, most recently updated first. Files that do not parse, or whose id
  // is not their file name, are skipped and named in `problems`.
  std::vector<Conversation> load_all(std::vector<std::string>& problems) const;
  // Both throw for an id that is not a plain name (is_safe_conversation_id).
  void save(const Conversation& c) const;
  void remove(const std::string& id) const;
  Settings load_settings(std::vector<std::string>& problems) const;
  void save_settings(const Settings& s) const;
  // A new id: the creation time and a random suffix (sorts by time, never collides in practice).
  static std::string new_id();

 private:
  std::filesystem::path root_;
};

}  // namespace ternvk::chat
