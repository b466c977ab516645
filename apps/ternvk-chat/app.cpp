#include "apps/ternvk-chat/app.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

namespace ternvk::chat {
namespace {

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

std::string title_of(const std::string& text) {
  std::string t = text.substr(0, text.find('\n'));
  if (t.size() > 48) {
    size_t cut = 48;
    while (cut > 0 && (uint8_t(t[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
    t = t.substr(0, cut) + "…";
  }
  return t;
}

Conversation fresh_conversation() {
  Conversation c;
  c.id = ConversationStore::new_id();
  return c;
}

}  // namespace

App::App(Instance& instance, ConversationStore store, std::string default_model)
    : instance_(instance), store_(std::move(store)), default_model_(std::move(default_model)), session_(instance) {
  std::vector<std::string> problems;
  settings = store_.load_settings(problems);
  history_ = store_.load_all(problems);
  for (const auto& p : problems) std::fprintf(stderr, "ternvk-chat: %s\n", p.c_str());
  if (!problems.empty()) notice = problems.front();
  // Reopen the conversation the user was last in.
  current_ = history_.empty() ? fresh_conversation() : history_.front();
  if (!current_.system.empty()) settings.system = current_.system;
  model_request.path = default_model_;
}

App::~App() {
  if (pending_answer_) {
    // Closing mid-answer: stop after the current token and keep what was written.
    session_.stop();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      view_ = session_.view();
      if (!view_.generating) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::fprintf(stderr, "ternvk-chat: the window closed during an answer: stopped it after %d tokens and saved it\n",
                 view_.answer_tokens);
    finish_answer(true);
  }
}

void App::update() {
  const auto before = view_.model;
  view_ = session_.view();
  if (view_.model == SessionView::Model::Ready && before != SessionView::Model::Ready && !view_.model_path.empty()) {
    settings.remember_model(view_.model_path);
    save_settings();
  }
  if (pending_answer_ && view_.answer_id == *pending_answer_ && !view_.generating) finish_answer(false);
}

bool App::can_send() const {
  return view_.model == SessionView::Model::Ready && !generating() && !blank(compose);
}

void App::load_model(const std::string& path) {
  if (generating()) stop();
  model_request.path = path;
  session_.load(model_request);
  view_ = session_.view();
}

void App::send() {
  if (!can_send()) return;
  std::vector<Message> next = current_.messages;
  next.push_back({"user", compose});
  if (refuse_turn_markers(next)) return;
  if (current_.messages.empty()) current_.title = title_of(compose);
  current_.messages = std::move(next);
  compose.clear();
  start_answer();
}

void App::stop() { session_.stop(); }

void App::regenerate() {
  if (generating() || view_.model != SessionView::Model::Ready || current_.messages.empty()) return;
  std::vector<Message> next = current_.messages;
  if (next.back().role == "assistant") next.pop_back();
  if (refuse_turn_markers(next)) return;
  current_.messages = std::move(next);
  start_answer();
}

void App::edit_last(const std::string& new_text) {
  if (generating() || view_.model != SessionView::Model::Ready || blank(new_text)) return;
  auto it = std::find_if(current_.messages.rbegin(), current_.messages.rend(), [](const Message& m) { return m.role == "user"; });
  if (it == current_.messages.rend()) return;
  std::vector<Message> next(current_.messages.begin(), std::prev(it.base()));
  next.push_back({"user", new_text});
  if (refuse_turn_markers(next)) return;
  current_.messages = std::move(next);
  if (current_.messages.size() == 1) current_.title = title_of(new_text);
  start_answer();
}

void App::new_chat() {
  if (generating()) return;
  save_current();
  current_ = fresh_conversation();
}

void App::open(const std::string& id) {
  if (generating()) return;
  for (const auto& c : history_)
    if (c.id == id) {
      current_ = c;
      settings.system = c.system;
      return;
    }
}

void App::remove(const std::string& id) {
  if (generating() && id == current_.id) return;
  try {
    store_.remove(id);
  } catch (const std::exception& e) {
    notice = e.what();
    return;
  }
  history_.erase(std::remove_if(history_.begin(), history_.end(), [&](const auto& c) { return c.id == id; }), history_.end());
  if (id == current_.id) current_ = fresh_conversation();
}

void App::save_settings() {
  try {
    store_.save_settings(settings);
  } catch (const std::exception& e) {
    notice = e.what();
  }
}

void App::write_trace(const std::filesystem::path& path) {
  try {
    session_.write_trace(path);
    notice = "wrote the Chrome trace of the last answer to " + path.string() + " (open it in ui.perfetto.dev)";
  } catch (const std::exception& e) {
    notice = std::string("no trace written: ") + e.what();
  }
}

bool App::refuse_turn_markers(const std::vector<Message>& messages) {
  // Only what the user wrote: the model's own answers are not the user's to rephrase.
  std::vector<ChatMessage> written;
  std::vector<std::string> names;
  if (!blank(settings.system)) {
    written.push_back({"system", settings.system});
    names.push_back("the system prompt");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "user") continue;
    written.push_back({"user", messages[i].content});
    names.push_back(i + 1 == messages.size() ? "the message" : "an earlier message of this conversation");
  }
  refused.clear();
  if (auto m = find_turn_marker(view_.format, written)) refused = describe_turn_marker(view_.format, *m, names[m->message]);
  return !refused.empty();
}

void App::start_answer() {
  GenerationRequest r;
  if (!blank(settings.system)) r.messages.push_back({"system", settings.system});
  for (const auto& m : current_.messages) r.messages.push_back({m.role, m.content});
  r.sampling = settings.sampling;
  r.seed = settings.seed;
  r.max_tokens = settings.max_tokens;
  current_.system = settings.system;
  current_.model = view_.model_path;
  pending_answer_ = session_.generate(std::move(r));
  view_ = session_.view();
}

void App::finish_answer(bool stopped_by_exit) {
  pending_answer_.reset();
  if (view_.stop_reason == "error" && view_.answer.empty()) {
    notice = "the answer failed: " + view_.error;
  } else {
    Message m{"assistant", view_.answer, stopped_by_exit ? "stopped" : view_.stop_reason, view_.answer_tokens,
              view_.decode_tps};
    current_.messages.push_back(std::move(m));
  }
  save_current();
}

void App::save_current() {
  if (current_.messages.empty()) return;
  const int64_t now = now_seconds();
  if (current_.created == 0) current_.created = now;
  current_.updated = now;
  try {
    store_.save(current_);
  } catch (const std::exception& e) {
    notice = e.what();
    return;
  }
  history_.erase(std::remove_if(history_.begin(), history_.end(), [&](const auto& c) { return c.id == current_.id; }),
                 history_.end());
  history_.insert(history_.begin(), current_);
}

}  // namespace ternvk::chat
