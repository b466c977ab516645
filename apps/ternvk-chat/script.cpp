#include "apps/ternvk-chat/script.h"

#include <imgui.h>

#include <fstream>
#include <set>
#include <stdexcept>

namespace ternvk::chat {
namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'n' || s[i + 1] == '\\')) {
      out += s[i + 1] == 'n' ? '\n' : '\\';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

const std::set<std::string> kNoArg = {"send", "wait", "stop", "regenerate", "new_chat", "close", "quit", "load",
                                      "release"};
const std::set<std::string> kArg = {"set",  "system", "type",  "wait_tokens", "edit_last", "screenshot",
                                    "save", "trace",  "timeout", "hold",       "frames"};

const char* model_state(SessionView::Model m) {
  switch (m) {
    case SessionView::Model::None: return "none";
    case SessionView::Model::Loading: return "loading";
    case SessionView::Model::Ready: return "ready";
    case SessionView::Model::Failed: return "failed";
  }
  return "?";
}

}  // namespace

ScriptRunner::ScriptRunner(const std::filesystem::path& file) : file_(file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read the script " + file.string());
  std::string raw;
  for (int line = 1; std::getline(in, raw); ++line) {
    const std::string text = trim(raw);
    if (text.empty() || text[0] == '#') continue;
    const size_t space = text.find_first_of(" \t");
    Command c{line, text.substr(0, space), space == std::string::npos ? "" : trim(text.substr(space))};
    const std::string where = file.string() + ":" + std::to_string(line) + ": ";
    if (!kNoArg.count(c.name) && !kArg.count(c.name)) throw std::runtime_error(where + "unknown command '" + c.name + "'");
    if (kArg.count(c.name) && c.arg.empty()) throw std::runtime_error(where + "'" + c.name + "' needs an argument");
    if (c.name != "load" && kNoArg.count(c.name) && !c.arg.empty())
      throw std::runtime_error(where + "'" + c.name + "' takes no argument");
    commands_.push_back(std::move(c));
  }
}

ScriptRunner::Status ScriptRunner::fail(const Command& c, const std::string& why) {
  failure_ = file_.string() + ":" + std::to_string(c.line) + ": " + c.name + ": " + why;
  return Status::Failed;
}

ScriptRunner::Status ScriptRunner::step(App& app, Window& window) {
  while (next_ < commands_.size()) {
    const Command& c = commands_[next_];
    if (!started_) {
      started_ = true;
      began_ = std::chrono::steady_clock::now();
      settle_frames_ = 0;
    }
    try {
      if (c.name == "quit") return Status::Done;
      if (!run(c, app, window)) {
        if (!failure_.empty()) return Status::Failed;
        if (std::chrono::steady_clock::now() - began_ > timeout_)
          return fail(c, "still waiting after " + std::to_string(timeout_.count()) + " s");
        return Status::Running;
      }
    } catch (const std::exception& e) {
      return fail(c, e.what());
    }
    started_ = false;
    ++next_;
    if (c.name == "close") return Status::Done;
  }
  return Status::Done;
}

bool ScriptRunner::run(const Command& c, App& app, Window& window) {
  const SessionView& s = app.session();
  if (c.name == "load") {
    if (settle_frames_++ == 0) app.load_model(c.arg.empty() ? app.default_model() : c.arg);
    return s.model == SessionView::Model::Ready || s.model == SessionView::Model::Failed;
  }
  if (c.name == "set") {
    const size_t space = c.arg.find_first_of(" \t");
    if (space == std::string::npos) throw std::runtime_error("use: set NAME VALUE");
    const std::string name = c.arg.substr(0, space), value = trim(c.arg.substr(space));
    auto& p = app.settings.sampling;
    if (name == "temperature") p.temperature = std::stof(value);
    else if (name == "top_k") p.top_k = std::stoi(value);
    else if (name == "top_p") p.top_p = std::stof(value);
    else if (name == "min_p") p.min_p = std::stof(value);
    else if (name == "repeat_penalty") p.repeat_penalty = std::stof(value);
    else if (name == "seed") app.settings.seed = std::stoll(value);
    else if (name == "max_tokens") app.settings.max_tokens = std::stoi(value);
    else throw std::runtime_error("unknown setting '" + name + "'");
    return true;
  }
  if (c.name == "system") return app.settings.system = unescape(c.arg), true;
  if (c.name == "type") return app.compose = unescape(c.arg), true;
  if (c.name == "send") {
    if (!app.can_send())
      throw std::runtime_error(s.model != SessionView::Model::Ready ? "no model is loaded" : "nothing to send, or still answering");
    app.send();
    return true;
  }
  if (c.name == "wait") return !app.generating();
  if (c.name == "wait_tokens") {
    if (!app.generating()) throw std::runtime_error("the answer ended after " + std::to_string(s.answer_tokens) + " tokens");
    return s.answer_tokens >= std::stoi(c.arg);
  }
  if (c.name == "stop") return app.stop(), true;
  if (c.name == "regenerate") return app.regenerate(), true;
  if (c.name == "new_chat") return app.new_chat(), true;
  if (c.name == "edit_last") return app.edit_last(unescape(c.arg)), true;
  if (c.name == "timeout") return timeout_ = std::chrono::seconds(std::stoi(c.arg)), true;
  if (c.name == "hold") return app.hold_answers_after(std::stoi(c.arg)), true;
  if (c.name == "release") return app.release_answer(), true;
  if (c.name == "frames") return ++settle_frames_ > std::stoi(c.arg);  // called once per frame
  if (c.name == "screenshot") {
    // A few frames first: ImGui sizes some widgets from the previous frame.
    if (++settle_frames_ < 4) return false;
    if (settle_frames_ == 4) {
      window.request_screenshot(c.arg);
      return false;
    }
    if (window.screenshot_pending()) return false;
    if (!window.screenshot_error().empty()) throw std::runtime_error(window.screenshot_error());
    return true;
  }
  if (c.name == "save") {
    write_file_atomically(c.arg, state_json(app, window).dump(2) + "\n");
    return true;
  }
  if (c.name == "trace") {
    app.write_trace(c.arg);
    if (!std::filesystem::exists(c.arg)) throw std::runtime_error(app.notice);
    return true;
  }
  if (c.name == "close") return window.request_close(), true;
  throw std::runtime_error("not implemented");
}

nlohmann::json state_json(const App& app, const Window& window) {
  const SessionView& s = app.session();
  nlohmann::json shaders = nlohmann::json::array();
  for (const auto& r : s.last_token) shaders.push_back({{"shader", r.label}, {"us", r.us}, {"calls", r.calls}});
  return {{"conversation", to_json(app.conversation())},
          {"model",
           {{"state", model_state(s.model)},
            {"path", s.model_path},
            {"error", s.error},
            {"summary", s.model_summary},
            {"device", s.device_summary},
            {"chat_format", s.chat_format}}},
          {"answer",
           {{"generating", app.generating()},
            {"tokens", s.answer_tokens},
            {"stop_reason", s.stop_reason},
            {"prompt_tokens", s.prompt_tokens},
            {"prompt_tokens_per_second", s.prompt_tps},
            {"decode_tokens_per_second", s.decode_tps}}},
          {"context", {{"used", s.context_used}, {"size", s.context_size}}},
          {"gpu_bytes", s.gpu_bytes},
          {"last_token_shaders", shaders},
          {"window", {{"width", window.extent().width}, {"height", window.extent().height}, {"device", window.device_name()}}},
          {"ui",
           {{"frames", app.frames},
            {"frames_per_second", ImGui::GetIO().Framerate},
            {"longest_busy_frame_ms", app.longest_busy_frame_ms}}},
          {"data_dir", app.store().root().string()},
          {"notice", app.notice},
          {"refused", app.refused},
          {"compose", app.compose}};
}

}  // namespace ternvk::chat
