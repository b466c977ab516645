// The app's history on disk: saves replace files whole (temporary file + rename), leftovers of an
// interrupted save and damaged files never stop the others from loading.
#include <doctest/doctest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "apps/ternvk-chat/conversation_store.h"
#include "desktop/desktop_util.h"

namespace {
std::mutex g_synced_mutex;
std::vector<std::string> g_synced;  // the paths fsync() was called on, in order
}  // namespace

// Replaces libc's fsync in this test binary (the store is compiled into it), recording which file
// or folder each call syncs, then syncing it.
extern "C" int fsync(int fd) {
  char path[4096];
  const ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), path, sizeof path - 1);
  {
    std::lock_guard lock(g_synced_mutex);
    g_synced.push_back(n > 0 ? std::string(path, size_t(n)) : "?");
  }
  return int(syscall(SYS_fsync, fd));
}

using namespace ternvk::chat;
using ternvk::test::read_text;
using ternvk::test::scratch_dir;
using ternvk::test::write_text;
namespace fs = std::filesystem;

TEST_CASE("conversations round-trip, newest first, and damaged files are skipped with a reason") {
  const auto dir = scratch_dir("store");
  ConversationStore store(dir / "ternvk");
  Conversation a;
  a.id = "a";
  a.title = "first";
  a.updated = 100;
  a.messages = {{"user", "Grüß Gott — ça va?"}, {"assistant", " I am well.", "eos", 5, 12.5}};
  Conversation b = a;
  b.id = "b";
  b.updated = 200;
  store.save(a);
  store.save(b);
  // What a crash between write and rename leaves behind, and a file someone truncated.
  write_text(store.conversations_dir() / "c.json.tmp-999", "{\"id\": \"c\", \"mess");
  write_text(store.conversations_dir() / "d.json", "{\"id\": \"d\", \"mess");

  std::vector<std::string> problems;
  const auto all = store.load_all(problems);
  REQUIRE(all.size() == 2);
  CHECK(all[0].id == "b");  // most recently updated first
  CHECK(all[1].id == "a");
  CHECK(all[1].messages[0].content == "Grüß Gott — ça va?");
  CHECK(all[1].messages[1].stop_reason == "eos");
  CHECK(all[1].messages[1].tokens == 5);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("d.json") != std::string::npos);
}

TEST_CASE("a save replaces the file whole and leaves no temporary file") {
  const auto dir = scratch_dir("atomic");
  const auto path = dir / "x" / "file.json";
  write_file_atomically(path, "old contents");
  write_file_atomically(path, "new contents");
  CHECK(read_text(path) == "new contents");
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir / "x")) ++files;
  CHECK(files == 1);
  // A directory where the file should be: the error names the path, the old state is untouched.
  fs::create_directories(dir / "x" / "blocked.json");
  CHECK_THROWS_WITH_AS(write_file_atomically(dir / "x" / "blocked.json", "data"),
                       doctest::Contains("cannot save"), std::runtime_error);
}

TEST_CASE("a save syncs the file, then the folder that holds its new name") {
  const auto dir = std::filesystem::canonical(scratch_dir("dir-sync"));
  {
    std::lock_guard lock(g_synced_mutex);
    g_synced.clear();
  }
  write_file_atomically(dir / "x" / "file.json", "contents");
  std::lock_guard lock(g_synced_mutex);
  REQUIRE(g_synced.size() == 2);
  CHECK(g_synced[0].rfind((dir / "x" / "file.json.tmp-").string(), 0) == 0);  // the data, before the rename
  CHECK(g_synced[1] == (dir / "x").string());                                   // the rename, after it
}

TEST_CASE("a conversation id that is not a plain name never becomes a path") {
  const auto dir = scratch_dir("ids");
  ConversationStore store(dir / "data");
  const auto outside = dir / "victim.json";
  write_text(outside, "precious");
  // A file that names a conversation outside the folder, and one whose id is not its file name.
  write_text(store.conversations_dir() / "evil.json", R"({"id": "../../victim", "messages": []})");
  write_text(store.conversations_dir() / "a.json", R"({"id": "b", "messages": []})");
  write_text(store.conversations_dir() / "good.json", R"({"id": "good", "messages": []})");
  std::vector<std::string> problems;
  const auto all = store.load_all(problems);
  REQUIRE(all.size() == 1);
  CHECK(all[0].id == "good");
  REQUIRE(problems.size() == 2);
  std::string joined = problems[0] + "\n" + problems[1];
  CHECK(joined.find("evil.json") != std::string::npos);
  CHECK(joined.find("not a plain name") != std::string::npos);
  CHECK(joined.find("a.json") != std::string::npos);
  CHECK(joined.find("is not its file name") != std::string::npos);

  // Saving or removing such an id is refused: nothing outside the folder is written or deleted.
  Conversation c;
  c.id = "../../victim";
  c.messages = {{"user", "hi"}};
  CHECK_THROWS_WITH_AS(store.save(c), doctest::Contains("not a plain name"), std::runtime_error);
  CHECK_THROWS_WITH_AS(store.remove("../../victim"), doctest::Contains("not a plain name"), std::runtime_error);
  CHECK(read_text(outside) == "precious");
  for (const char* bad : {"", ".", "..", "a/b", "a b", "a\\b", "x.json"}) CHECK_FALSE(is_safe_conversation_id(bad));
  CHECK(is_safe_conversation_id(ConversationStore::new_id()));
  CHECK_FALSE(is_safe_conversation_id(std::string(65, 'a')));
}

TEST_CASE("settings of the wrong type or out of range keep their defaults and are named") {
  const auto dir = scratch_dir("bad-settings");
  ConversationStore store(dir);
  write_text(dir / "settings.json", R"({"temperature": -3, "top_p": 5, "top_k": "many", "min_p": 1,
    "repeat_penalty": 1000, "max_tokens": 1e20, "seed": 42, "system": 5, "recent_models": [1, 2],
    "unknown": {"deep": [[[]]]}})");
  std::vector<std::string> problems;
  const Settings s = store.load_settings(problems);
  const Settings defaults;
  CHECK(s.seed == 42);  // the one good value is kept
  CHECK(s.sampling.temperature == defaults.sampling.temperature);
  CHECK(s.sampling.top_p == defaults.sampling.top_p);
  CHECK(s.sampling.top_k == defaults.sampling.top_k);
  CHECK(s.sampling.min_p == defaults.sampling.min_p);
  CHECK(s.sampling.repeat_penalty == defaults.sampling.repeat_penalty);
  CHECK(s.max_tokens == defaults.max_tokens);
  CHECK(s.system.empty());
  CHECK(s.recent_models.empty());
  std::string joined;
  for (const auto& p : problems) joined += p + "\n";
  CAPTURE(joined);
  for (const char* key : {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "system",
                          "recent_models"})
    CHECK(joined.find(std::string("\"") + key + "\"") != std::string::npos);
  CHECK(problems.size() == 8);
  // Whatever settings.json held, the sampler accepts what was loaded.
  CHECK_NOTHROW(ternvk::Sampler(s.sampling));
}

TEST_CASE("settings keep the sampling choices and the most recent models first, without duplicates") {
  const auto dir = scratch_dir("settings");
  ConversationStore store(dir);
  Settings s;
  s.sampling.temperature = 0.3f;
  s.seed = 42;
  s.remember_model("/m/a.gguf");
  s.remember_model("/m/b.gguf");
  s.remember_model("/m/a.gguf");
  store.save_settings(s);
  std::vector<std::string> problems;
  const Settings back = store.load_settings(problems);
  CHECK(problems.empty());
  CHECK(back.sampling.temperature == doctest::Approx(0.3f));
  CHECK(back.seed == 42);
  CHECK(back.recent_models == std::vector<std::string>{"/m/a.gguf", "/m/b.gguf"});
}
