// The model side of the app: one worker thread owns the ternvk::Engine, loads models (with
// progress) and generates answers (streamed token by token), so the window never waits on the GPU.
// The UI reads a copy of the session's state each frame (view()) and sends requests that the
// worker runs in order. Destroying the session stops an answer in progress, abandons a load at its
// next tensor, and joins the thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/device/instance.h"
#include "runtime/engine/engine.h"
#include "runtime/profiler/chrome_trace.h"
#include "runtime/tokenizer/chat_template.h"

namespace ternvk::chat {

struct ModelRequest {
  std::string path;
  std::optional<int> device;  // index from ternvk::Instance::devices(); empty: the best
  std::string devices;        // several devices as a pipeline ("0,1" or "all"); overrides device
  std::string split;          // layers per device with `devices` ("auto" or "12,18")
  int context = 0;            // 0: the model's, at most 4096
  bool int8_head = false;     // the output head (and tied embedding) as int8 rows (--head int8)
};

struct GenerationRequest {
  std::vector<ChatMessage> messages;  // system prompt first when there is one; ends with the user's turn
  SamplingParams sampling;
  int64_t seed = -1;  // < 0: random
  int max_tokens = 256;
};

struct ShaderTime {
  std::string label;
  double us = 0;
  int calls = 0;
};

// A copy of the session's state, taken under its lock.
struct SessionView {
  enum class Model { None, Loading, Ready, Failed } model = Model::None;
  std::string model_path, model_summary, device_summary, chat_format, error;
  ChatFormat format = ChatFormat::kPlain;  // the loaded model's (chat_format is its name)
  float load_progress = 0;  // 0..1 while loading
  int context_size = 0, context_used = 0;
  uint64_t gpu_bytes = 0;
  bool timestamps = false;  // the device measures per-dispatch GPU time

  // The answer being written (or the last one): id from generate(), text so far, and how it ended.
  uint64_t answer_id = 0;
  bool generating = false;
  std::string answer;
  int answer_tokens = 0;
  std::string stop_reason;  // set when the answer is finished: "eos", "length", "stopped", "context", "error"
  double prompt_tps = 0, decode_tps = 0;
  int prompt_tokens = 0;

  // GPU time per shader of the last token, largest first, and its total.
  std::vector<ShaderTime> last_token;
  double last_token_us = 0;
  std::string last_token_step;  // "decode" or "prefill (last chunk)"
  bool has_trace = false;
};

class ChatSession {
 public:
  explicit ChatSession(Instance& instance);
  ~ChatSession();
  ChatSession(const ChatSession&) = delete;
  ChatSession& operator=(const ChatSession&) = delete;

  // Replaces the loaded model (stops an answer in progress first).
  void load(ModelRequest request);
  // Starts an answer to `request.messages`; returns its id (SessionView::answer_id).
  uint64_t generate(GenerationRequest request);
  // Stops the answer in progress after its current token.
  void stop();
  // Test hook (the script's `hold`): the next answers pause after `tokens` tokens, still
  // generating, until release() (or stop()); 0 turns it off. Lets a test see the window keep
  // drawing while an answer is in progress, whatever the device's speed.
  void hold_after(int tokens);
  void release();
  SessionView view() const;
  // Writes the Chrome trace (Perfetto) of the last answer: every step's dispatches on the GPU.
  void write_trace(const std::filesystem::path& path) const;

 private:
  void run();
  void do_load(const ModelRequest& request);
  void do_generate(const GenerationRequest& request, uint64_t id);
  void record_timings(bool prefill, double host_us);

  Instance& instance_;
  mutable std::mutex mutex_;  // guards view_, jobs_ and trace_
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  SessionView view_;
  profiler::ChromeTrace trace_;
  std::atomic<bool> quitting_{false}, stop_requested_{false};
  uint64_t next_answer_id_ = 1;
  std::condition_variable held_;  // with mutex_: wakes a held answer
  int hold_after_ = 0;            // guarded by mutex_
  bool holding_ = false;          // guarded by mutex_

  // Worker-thread only, except engine_mutex_ + cancel() from stop().
  std::mutex engine_mutex_;
  std::unique_ptr<Engine> engine_;
  ChatFormat format_ = ChatFormat::kPlain;
  double trace_cursor_us_ = 0;
  int trace_step_ = 0;
  std::thread worker_;  // last: starts after everything it uses exists
};

}  // namespace ternvk::chat
