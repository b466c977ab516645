// --script FILE: drives the real app in its real window, one command per line, for tests and for
// the screenshot in docs/. Commands act through the same App actions as the buttons. `#` starts a
// comment; in TEXT, "\n" is a new line and "\\" a backslash.
//
//   load [PATH]        load a model (default: the shipped one); waits until it is loaded or failed
//   set NAME VALUE     temperature | top_k | top_p | min_p | repeat_penalty | seed | max_tokens
//   system TEXT        the system prompt
//   type TEXT          put TEXT in the message box
//   send               press Send
//   wait               wait until the answer is finished
//   wait_tokens N      wait until the answer being written has N tokens
//   hold N             (tests) answers pause after N tokens, still generating, until `release`
//   release            let a held answer go on (and stop holding)
//   frames N           let the window draw N frames
//   stop | regenerate | new_chat | edit_last TEXT
//   screenshot FILE    write the window as a PNG (after the layout has settled)
//   save FILE          write the conversation and the app's state (model, error, speeds) as JSON
//   trace FILE         write the Chrome trace of the last answer
//   timeout SECONDS    how long a wait may take before the script fails (default 120)
//   close              close the window as the window manager would (stops an answer in progress)
//   quit               end the app (exit 0)
#pragma once
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/ternvk-chat/app.h"
#include "apps/ternvk-chat/window.h"

namespace ternvk::chat {

class ScriptRunner {
 public:
  // Throws std::runtime_error naming the line of an unknown command or a missing argument.
  explicit ScriptRunner(const std::filesystem::path& file);

  enum class Status { Running, Done, Failed };
  // Runs after each frame: the next commands until one has to wait for the app or the window.
  Status step(App& app, Window& window);
  const std::string& failure() const { return failure_; }

 private:
  struct Command {
    int line;
    std::string name, arg;
  };
  bool run(const Command& c, App& app, Window& window);  // false: not finished, call again next frame
  Status fail(const Command& c, const std::string& why);

  std::filesystem::path file_;
  std::vector<Command> commands_;
  size_t next_ = 0;
  bool started_ = false;  // the current command has begun (waits, screenshots)
  int settle_frames_ = 0;
  std::chrono::steady_clock::time_point began_;
  std::chrono::seconds timeout_{120};
  std::string failure_;
};

// The app's state as the script's `save` writes it.
nlohmann::json state_json(const App& app, const Window& window);

}  // namespace ternvk::chat
