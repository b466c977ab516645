// The app's history on disk: saves replace files whole (temporary file + rename), leftovers of an
// interrupted save and damaged files never stop the others from loading.
#include <doctest/doctest.h>

#include <filesystem>

#include "apps/ternvk-chat/conversation_store.h"
#include "desktop/desktop_util.h"

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
