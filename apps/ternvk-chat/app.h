// The app's state and what a user (or a script) can do: load a model, send, stop, regenerate,
// edit the last message, start a new chat, open a saved one. The UI (ui_*.cpp) draws this state
// and calls these actions; the script runner calls the same actions.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "apps/ternvk-chat/chat_session.h"
#include "apps/ternvk-chat/conversation_store.h"

namespace ternvk::chat {

class App {
 public:
  App(Instance& instance, ConversationStore store, std::string default_model);
  ~App();  // stops an answer in progress, keeps what was written of it, saves

  // Every frame: takes the session's state and moves a finished answer into the conversation.
  void update();
  const SessionView& session() const { return view_; }
  Instance& instance() { return instance_; }

  // Actions.
  void load_model(const std::string& path);
  void send();  // the composer's text as the user's next message
  void stop();
  void regenerate();                            // the last answer again
  void edit_last(const std::string& new_text);  // replace the last user message and answer it again
  void new_chat();
  void open(const std::string& id);
  void remove(const std::string& id);
  void save_settings();
  void write_trace(const std::filesystem::path& path);

  bool can_send() const;
  bool generating() const { return pending_answer_.has_value(); }
  // The composer's text (the input box edits it).
  std::string compose;
  ModelRequest model_request;  // the side panel's model path and device choice
  Settings settings;
  std::string notice;  // the last message for the user (saved, errors outside the model)
  // Why the last send, regenerate or edit was refused without sending (a turn marker in the text,
  // find_turn_marker); cleared by the next one that goes out. The composer keeps the text.
  std::string refused;
  // The longest frame while the model was loading or answering (main loop): the UI never waits on it.
  double longest_busy_frame_ms = 0;
  uint64_t frames = 0;  // drawn so far (main loop)
  // Test hooks for the script (ChatSession::hold_after / release).
  void hold_answers_after(int tokens) { session_.hold_after(tokens); }
  void release_answer() { session_.release(); }

  const Conversation& conversation() const { return current_; }
  const std::vector<Conversation>& history() const { return history_; }
  const ConversationStore& store() const { return store_; }
  const std::string& default_model() const { return default_model_; }
  // The text of the assistant message being streamed (what the view shows for it).
  const std::string* streaming_text() const { return pending_answer_ ? &view_.answer : nullptr; }

 private:
  // Sets `refused` and returns true when what the user wrote (the system prompt, user messages)
  // holds a turn marker of the loaded model's chat format: it would open a turn of its own.
  bool refuse_turn_markers(const std::vector<Message>& messages);
  void start_answer();
  void finish_answer(bool stopped_by_exit);
  void save_current();

  Instance& instance_;
  ConversationStore store_;
  std::string default_model_;
  ChatSession session_;
  SessionView view_;
  Conversation current_;
  std::vector<Conversation> history_;
  std::optional<uint64_t> pending_answer_;  // the id of the answer being written
};

}  // namespace ternvk::chat
