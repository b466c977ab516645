#include "apps/ternvk-chat/chat_session.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>

#include "apps/common/placement_flags.h"
#include "runtime/profiler/pass_record.h"
#include "runtime/tokenizer/streaming_decoder.h"

namespace ternvk::chat {
namespace {

using Clock = std::chrono::steady_clock;

// Thrown from the load progress callback to abandon a load when the app is closing.
struct LoadAbandoned {};

std::string format_mib(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", double(bytes) / 1048576.0);
  return b;
}

}  // namespace

ChatSession::ChatSession(Instance& instance) : instance_(instance) { worker_ = std::thread([this] { run(); }); }

ChatSession::~ChatSession() {
  quitting_ = true;
  stop();
  {
    std::lock_guard lock(mutex_);
    jobs_.clear();
  }
  wake_.notify_all();
  worker_.join();
  std::lock_guard lock(engine_mutex_);
  engine_.reset();  // GPU memory goes before the Instance it was allocated from
}

void ChatSession::run() {
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return quitting_ || !jobs_.empty(); });
      if (quitting_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void ChatSession::load(ModelRequest request) {
  stop();
  {
    std::lock_guard lock(mutex_);
    // Shown at once, so the progress bar appears on the frame the user clicked.
    view_.model = SessionView::Model::Loading;
    view_.model_path = request.path;
    view_.load_progress = 0;
    view_.error.clear();
    jobs_.push_back([this, request] { do_load(request); });
  }
  wake_.notify_one();
}

uint64_t ChatSession::generate(GenerationRequest request) {
  uint64_t id;
  {
    std::lock_guard lock(mutex_);
    id = next_answer_id_++;
    stop_requested_ = false;
    view_.answer_id = id;
    view_.generating = true;
    view_.answer.clear();
    view_.answer_tokens = 0;
    view_.stop_reason.clear();
    view_.error.clear();
    jobs_.push_back([this, request = std::move(request), id] { do_generate(request, id); });
  }
  wake_.notify_one();
  return id;
}

void ChatSession::hold_after(int tokens) {
  std::lock_guard lock(mutex_);
  hold_after_ = tokens;
}

void ChatSession::release() {
  {
    std::lock_guard lock(mutex_);
    hold_after_ = 0;
    holding_ = false;
  }
  held_.notify_all();
}

void ChatSession::stop() {
  stop_requested_ = true;
  {
    std::lock_guard lock(mutex_);  // a held answer sees the request: it may not miss the wake-up
  }
  held_.notify_all();
  std::lock_guard lock(engine_mutex_);
  if (engine_) engine_->cancel();
}

SessionView ChatSession::view() const {
  std::lock_guard lock(mutex_);
  return view_;
}

void ChatSession::write_trace(const std::filesystem::path& path) const {
  std::lock_guard lock(mutex_);
  if (trace_.size() == 0) throw std::runtime_error("no answer has been timed yet (the trace is written after one)");
  trace_.write(path);
}

void ChatSession::do_load(const ModelRequest& request) {
  {
    std::lock_guard lock(engine_mutex_);
    engine_.reset();  // free the old model's GPU memory before the new one is uploaded
  }
  {
    std::lock_guard lock(mutex_);
    view_.context_size = view_.context_used = 0;
    view_.gpu_bytes = 0;
    view_.last_token.clear();
    view_.has_trace = false;
    trace_ = {};
  }
  try {
    EngineOptions o;
    if (!request.devices.empty()) {
      o.devices = parse_device_list(request.devices, int(instance_.devices().size()));
      o.split = parse_split(request.split.empty() ? "auto" : request.split);
    }
    o.device = request.device;
    o.context = request.context;
    o.head = request.int8_head ? HeadPrecision::Int8 : HeadPrecision::F16;
    const DeviceInfo& first = instance_.select(o.devices.empty() ? request.device : std::optional<int>(o.devices.front()));
    o.timestamps = first.timestamps ? TimestampMode::Dispatch : TimestampMode::None;  // per-dispatch GPU times for the performance panel
    o.progress = [this](int done, int total) {
      if (quitting_) throw LoadAbandoned{};
      std::lock_guard lock(mutex_);
      view_.load_progress = total > 0 ? float(done) / float(total) : 0.0f;
    };
    auto engine = std::make_unique<Engine>(instance_, request.path, o);
    const ModelConfig& c = engine->config();
    // Formats whose control tokens the vocabulary lacks fall back to the plain format.
    format_ = detect_chat_format(engine->tokenizer(), c.arch_name);
    std::string devices;
    for (size_t i = 0; i < engine->stage_count(); ++i) {
      const auto& s = engine->stage(i);
      if (!devices.empty()) devices += " + ";
      devices += s.device().info().name;
      if (engine->stage_count() > 1)
        devices += " (layers " + std::to_string(s.spec().first_layer) + "-" + std::to_string(s.spec().end_layer - 1) + ")";
    }
    std::lock_guard lock(mutex_);
    view_.model = SessionView::Model::Ready;
    view_.load_progress = 1;
    view_.model_summary = c.arch_name + ", " + std::to_string(c.n_layers) + " layers, dim " + std::to_string(c.dim) +
                          ", vocab " + std::to_string(c.vocab) + ", " + format_mib(engine->peak_gpu_bytes()) + " on the GPU";
    view_.device_summary = devices;
    view_.chat_format = std::string(chat_format_name(format_));
    view_.format = format_;
    view_.context_size = engine->context();
    view_.gpu_bytes = engine->peak_gpu_bytes();
    view_.timestamps = o.timestamps != TimestampMode::None;
    std::lock_guard elock(engine_mutex_);
    engine_ = std::move(engine);
  } catch (const LoadAbandoned&) {
    return;
  } catch (const std::exception& e) {
    std::lock_guard lock(mutex_);
    view_.model = SessionView::Model::Failed;
    view_.error = e.what();
  }
}

void ChatSession::record_timings(bool prefill, double host_us) {
  std::map<std::string, ShaderTime> by_shader;
  double total = 0;
  std::vector<DispatchTiming> named;
  for (size_t s = 0; s < engine_->stage_count(); ++s) {
    named.clear();
    const Recording* pass = engine_->stage(s).last_pass();
    // Without per-dispatch times there is nothing to show (a device without timestamps, whose
    // greedy steps may also run as chains of several tokens a pass).
    if (!pass || pass->timestamp_mode() != TimestampMode::Dispatch) continue;
    for (const auto& t : profiler::timed_commands(*pass, {})) {
      auto& row = by_shader[t.shader];
      row.label = t.shader;
      row.us += t.microseconds;
      row.calls++;
      total += t.microseconds;
      named.push_back({t.shader, t.microseconds});
    }
    if (named.empty()) continue;
    // The replay ended just before the host saw its token: lay its dispatches back to back up to then.
    double gpu = 0;
    for (const auto& t : named) gpu += t.microseconds;
    const double start = std::max(trace_cursor_us_, host_us - gpu);
    std::lock_guard lock(mutex_);
    trace_cursor_us_ = trace_.add_replay(1 + int(s), 1, start, named, prefill ? "prefill" : "decode",
                                         (prefill ? "prefill" : "decode ") + (prefill ? std::string() : std::to_string(trace_step_)));
  }
  ++trace_step_;
  std::vector<ShaderTime> rows;
  for (auto& [_, r] : by_shader) rows.push_back(r);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.us > b.us; });
  std::lock_guard lock(mutex_);
  if (!rows.empty()) {
    view_.last_token = std::move(rows);
    view_.last_token_us = total;
    view_.last_token_step = prefill ? "prefill (last chunk)" : "decode";
    view_.has_trace = true;
  }
}

void ChatSession::do_generate(const GenerationRequest& request, uint64_t id) {
  auto finish = [&](const std::string& reason, const std::string& error) {
    std::lock_guard lock(mutex_);
    if (view_.answer_id != id) return;
    view_.generating = false;
    view_.stop_reason = reason;
    if (!error.empty()) view_.error = error;
  };
  try {
    if (!engine_) return finish("error", "no model is loaded");
    if (stop_requested_ || quitting_) return finish("stopped", "");
    Engine& engine = *engine_;
    Tokenizer& tok = engine.tokenizer();
    std::vector<ChatMessage> messages = request.messages;
    auto encode = [&] { return Engine::ids(encode_chat(tok, render_chat(format_, messages, chat_special_tokens(tok)))); };
    auto prompt = encode();
    // A conversation longer than the context keeps the system prompt and the newest turns.
    const size_t keep_from = (!messages.empty() && messages.front().role == "system") ? 1 : 0;
    while (int(prompt.size()) + 1 >= engine.context() && messages.size() > keep_from + 1) {
      messages.erase(messages.begin() + long(keep_from));
      prompt = encode();
    }
    if (int(prompt.size()) + 1 >= engine.context())
      return finish("error", "the message is " + std::to_string(prompt.size()) + " tokens, more than the context of " +
                                 std::to_string(engine.context()) + " tokens");
    // Reuse the KV cache for the part of the conversation it already holds.
    const auto& cached = engine.sequence();
    size_t common = 0;
    while (common < cached.size() && common + 1 < prompt.size() && cached[common] == prompt[common]) ++common;
    engine.truncate(int(common));
    const std::vector<uint32_t> fresh(prompt.begin() + long(common), prompt.end());

    SamplingParams params = request.sampling;
    params.seed = request.seed >= 0 ? uint64_t(request.seed) : std::random_device{}();
    Sampler sampler(params);
    StreamingDecoder decoder(tok);
    {
      std::lock_guard lock(mutex_);
      trace_ = {};
      trace_.process_name(0, "host");
      trace_.thread_name(0, 1, "ternvk-chat worker");
      for (size_t s = 0; s < engine.stage_count(); ++s) {
        trace_.process_name(1 + int(s), "GPU: " + engine.stage(s).device().info().name);
        trace_.thread_name(1 + int(s), 1, "compute queue");
      }
      view_.prompt_tokens = int(prompt.size());
    }
    trace_cursor_us_ = 0;
    trace_step_ = 0;
    const auto t0 = Clock::now();
    auto since = [&](Clock::time_point t) { return std::chrono::duration<double, std::micro>(t - t0).count(); };
    bool first = true;
    auto stats = engine.generate(fresh, request.max_tokens, sampler, [&](uint32_t token) {
      const auto now = Clock::now();
      record_timings(first, since(now));
      first = false;
      std::string piece = decoder.feed(TokenId(token));
      std::unique_lock lock(mutex_);
      view_.answer += piece;
      view_.answer_tokens++;
      // The prompt and every answer token but this one (a greedy chain may have run ahead of it).
      view_.context_used = int(prompt.size()) + view_.answer_tokens - 1;
      if (hold_after_ > 0 && view_.answer_tokens == hold_after_) {
        holding_ = true;
        held_.wait(lock, [&] { return !holding_ || stop_requested_ || quitting_; });
      }
      return !stop_requested_ && !quitting_;
    });
    const std::string tail = decoder.flush();
    {
      std::lock_guard lock(mutex_);
      trace_.complete(0, 1, "answer", "host", 0, since(Clock::now()),
                      {{"prompt_tokens", std::to_string(stats.prompt_tokens)},
                       {"generated_tokens", std::to_string(stats.generated_tokens)}});
      view_.answer += tail;
      view_.prompt_tps = stats.prompt_tokens_per_second();
      view_.decode_tps = stats.decode_tokens_per_second();
      view_.context_used = engine.position();
      view_.gpu_bytes = engine.peak_gpu_bytes();
    }
    const bool stopped = stop_requested_ || quitting_ || stats.stop_reason == "cancelled";
    finish(stopped && (stats.stop_reason == "stop string" || stats.stop_reason == "cancelled") ? "stopped"
                                                                                                 : stats.stop_reason,
           "");
  } catch (const std::exception& e) {
    finish("error", e.what());
  }
}

}  // namespace ternvk::chat
