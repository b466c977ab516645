#include "runtime/server/batch_scheduler.h"

#include <algorithm>
#include <cstdio>
#include <exception>

#include "runtime/core/error.h"
#include "runtime/server/stop_matcher.h"
#include "runtime/tokenizer/streaming_decoder.h"

namespace ternvk::server {

using Clock = std::chrono::steady_clock;

Channel::News Channel::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !text_.empty() || done_.has_value(); });
  News news;
  news.text = std::move(text_);
  text_.clear();
  news.done = done_;
  return news;
}

void Channel::emit(const std::string& text) {
  {
    std::lock_guard lock(mutex_);
    text_ += text;
  }
  cv_.notify_all();
}

void Channel::finish(Outcome outcome) {
  {
    std::lock_guard lock(mutex_);
    done_ = std::move(outcome);
  }
  cv_.notify_all();
}

struct BatchScheduler::Sequence {
  Sequence(Job j, std::shared_ptr<Channel> c, const Tokenizer& tok, uint64_t order)
      : job(std::move(j)), channel(std::move(c)), sampler(job.sampling), decoder(tok), stops(job.stop),
        history(job.prompt), order(order) {}
  Job job;
  std::shared_ptr<Channel> channel;
  Sampler sampler;
  StreamingDecoder decoder;
  StopMatcher stops;
  std::vector<uint32_t> history;  // prompt and generated tokens, for the penalties
  uint64_t order;                 // admission order
  size_t prefilled = 0;           // prompt tokens fed so far
  int cached = 0;                 // tokens in the slot's KV cache
  int generated = 0;
  bool decoding = false;          // `next` is to be fed at the next decode step
  uint32_t next = 0;

  // The GPU's argmax is enough unless this sequence samples or needs every logit for penalties.
  bool argmax_ok() const { return job.sampling.greedy() && !job.sampling.has_penalties(); }
  uint32_t pick(const StepOutput& out, Selection select) {
    if (select.kind == Selection::Argmax) return out.token;
    if (out.logits.empty()) throw Error("the model returned no logits");
    return sampler.sample(out.logits, history);
  }
};

BatchScheduler::BatchScheduler(BatchModel& model, const Tokenizer& tokenizer, SchedulerOptions options,
                               Metrics& metrics)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)), metrics_(metrics),
      slots_(model.slots()), context_(model.context()) {
  options_.prefill_chunk = std::max(1, options_.prefill_chunk);
  seqs_.resize(size_t(slots_));
  metrics_.slots = slots_;
  metrics_.queue_limit = options_.queue_limit;
  metrics_.kv_tokens_capacity = int64_t(slots_) * context_;
  thread_ = std::thread([this] { loop(); });
}

BatchScheduler::~BatchScheduler() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
    accepting_ = false;
  }
  wake_.notify_all();
  thread_.join();
}

std::shared_ptr<Channel> BatchScheduler::submit(Job job) {
  auto channel = std::make_shared<Channel>();
  {
    std::lock_guard lock(mutex_);
    if (!accepting_ || int(queue_.size()) + running_ >= slots_ + options_.queue_limit) return nullptr;
    queue_.emplace_back(std::move(job), channel);
    metrics_.queue_depth = int64_t(queue_.size());
  }
  wake_.notify_all();
  return channel;
}

void BatchScheduler::cancel(const std::shared_ptr<Channel>& channel) {
  channel->cancel();
  int prompt_tokens = -1;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(queue_.begin(), queue_.end(), [&](const auto& q) { return q.second == channel; });
    if (it != queue_.end()) {
      prompt_tokens = int(it->first.prompt.size());
      queue_.erase(it);
      metrics_.queue_depth = int64_t(queue_.size());
    }
  }
  if (prompt_tokens >= 0) {
    metrics_.cancelled++;
    channel->finish({"cancelled", prompt_tokens, 0, {}});
  }
  wake_.notify_all();
}

std::optional<std::string> BatchScheduler::device_lost() const {
  std::lock_guard lock(mutex_);
  return device_lost_;
}

void BatchScheduler::stop_accepting() {
  std::lock_guard lock(mutex_);
  accepting_ = false;
}

bool BatchScheduler::accepting() const {
  std::lock_guard lock(mutex_);
  return accepting_;
}

void BatchScheduler::cancel_all() {
  {
    std::lock_guard lock(mutex_);
    cancel_all_ = true;
  }
  wake_.notify_all();
}

int BatchScheduler::load() const {
  std::lock_guard lock(mutex_);
  return int(queue_.size()) + running_;
}

namespace {

// What went wrong in one piece of a request's work.
struct Failure {
  std::string message;
  bool device_lost = false;
};

// Runs `work`, turning whatever it throws into a Failure: nothing thrown on the scheduler thread
// may reach std::terminate.
template <class Work>
std::optional<Failure> attempt(Work&& work) {
  try {
    work();
    return std::nullopt;
  } catch (const DeviceLostError& e) {
    return Failure{e.what(), true};
  } catch (const std::exception& e) {
    return Failure{e.what(), false};
  } catch (...) {
    return Failure{"an exception that is not a std::exception", false};
  }
}

}  // namespace

void BatchScheduler::loop() {
  while (true) {
    bool quit = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return quit_ || cancel_all_ || !queue_.empty() || running_ > 0; });
      quit = quit_;
      if (quit_ || cancel_all_) {
        cancel_all_ = false;
        for (auto& [job, channel] : queue_) channel->cancel();
        for (auto& s : seqs_)
          if (s) s->channel->cancel();
      }
    }
    // Each piece of work guards itself; this catches what slips past them (the bookkeeping), so
    // that it fails the running requests, not the process.
    const auto failure = attempt([&] {
      drop_cancelled_queued();
      admit();
      // Sequences whose client left (or that were cancelled above) give their slot back now.
      for (int slot = 0; slot < slots_; ++slot)
        if (seqs_[size_t(slot)] && seqs_[size_t(slot)]->channel->cancelled()) finish(slot, "cancelled");
      if (quit) return;
      run_prefill_chunk();
      run_decode_step();
      update_gauges();
    });
    if (failure) {
      std::vector<int> running;
      for (int slot = 0; slot < slots_; ++slot)
        if (seqs_[size_t(slot)]) running.push_back(slot);
      fail(running, "internal error in the scheduler: " + failure->message, failure->device_lost);
    }
    if (quit) return;
  }
}

void BatchScheduler::drop_cancelled_queued() {
  std::vector<std::pair<Job, std::shared_ptr<Channel>>> dropped;
  {
    std::lock_guard lock(mutex_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->second->cancelled()) {
        dropped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    metrics_.queue_depth = int64_t(queue_.size());
  }
  for (auto& [job, channel] : dropped) {
    metrics_.cancelled++;
    channel->finish({"cancelled", int(job.prompt.size()), 0, {}});
  }
}

void BatchScheduler::admit() {
  for (int slot = 0; slot < slots_ && !lost_; ++slot) {
    if (seqs_[size_t(slot)]) continue;
    std::pair<Job, std::shared_ptr<Channel>> next;
    {
      std::lock_guard lock(mutex_);
      if (queue_.empty()) break;
      next = std::move(queue_.front());
      queue_.pop_front();
      ++running_;  // counted from here, so that load() never dips while a request changes place
      metrics_.queue_depth = int64_t(queue_.size());
      metrics_.active_sequences = running_;
    }
    auto& [job, channel] = next;
    const int prompt_tokens = int(job.prompt.size());
    const auto failure = attempt([&] {
      if (options_.inject_fault) options_.inject_fault(FaultPoint::Admit, job);
      // Throws for settings the sampler refuses, which the HTTP schema should have caught already.
      seqs_[size_t(slot)] = std::make_unique<Sequence>(std::move(job), channel, tokenizer_, admitted_);
    });
    if (!failure) {
      admitted_++;
      metrics_.generations_started++;
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      --running_;
      metrics_.active_sequences = running_;
    }
    metrics_.failed++;
    std::fprintf(stderr, "ternvk serve: a request could not be admitted: %s\n", failure->message.c_str());
    channel->finish({"error", prompt_tokens, 0, failure->message, failure->device_lost});
    if (failure->device_lost) lose_device(failure->message);
    --slot;  // the slot is still free
  }
}

void BatchScheduler::fail(std::span<const int> slots, const std::string& message, bool device_lost) {
  if (device_lost) return lose_device(message);
  for (int slot : slots) finish(slot, "error", message);
}

void BatchScheduler::lose_device(const std::string& reason) {
  if (lost_) return;
  lost_ = true;
  std::deque<std::pair<Job, std::shared_ptr<Channel>>> queued;
  {
    std::lock_guard lock(mutex_);
    device_lost_ = reason;
    accepting_ = false;
    queued.swap(queue_);
    metrics_.queue_depth = 0;
  }
  metrics_.device_lost = 1;
  std::fprintf(stderr, "ternvk serve: the GPU was lost; failing every request: %s\n", reason.c_str());
  for (auto& [job, channel] : queued) {
    metrics_.failed++;
    channel->finish({"error", int(job.prompt.size()), 0, reason, true});
  }
  for (int slot = 0; slot < slots_; ++slot) finish(slot, "error", reason);
}

bool BatchScheduler::run_prefill_chunk() {
  // The earliest admitted sequence still prefilling gets one chunk.
  Sequence* s = nullptr;
  int slot = -1;
  for (int i = 0; i < slots_; ++i) {
    Sequence* c = seqs_[size_t(i)].get();
    if (c && !c->decoding && (!s || c->order < s->order)) s = c, slot = i;
  }
  if (!s) return false;
  const size_t n = std::min(size_t(options_.prefill_chunk), s->job.prompt.size() - s->prefilled);
  const bool last = s->prefilled + n == s->job.prompt.size();
  const Selection select{s->argmax_ok() ? Selection::Argmax : Selection::Logits};
  const auto failure = attempt([&] {
    if (options_.inject_fault) options_.inject_fault(FaultPoint::Prefill, s->job);
    if (s->prefilled == 0) model_.truncate(slot, 0);
    StepOutput out = model_.prefill(slot, std::span(s->job.prompt).subspan(s->prefilled, n),
                                    last ? select : Selection{Selection::Argmax});
    s->prefilled += n;
    s->cached += int(n);
    metrics_.prompt_tokens += n;
    metrics_.prefill_chunks++;
    if (last) {
      const uint32_t token = s->pick(out, select);
      accept_token(*s, token);
    }
  });
  if (failure) fail(std::span(&slot, 1), failure->message, failure->device_lost);
  return true;
}

void BatchScheduler::run_decode_step() {
  std::vector<int> batch;
  for (int i = 0; i < slots_; ++i)
    if (seqs_[size_t(i)] && seqs_[size_t(i)]->decoding) batch.push_back(i);
  const size_t step = size_t(std::max(1, model_.max_batch()));
  for (size_t begin = 0; begin < batch.size() && !lost_; begin += step) {
    const std::vector<int> slots(batch.begin() + long(begin), batch.begin() + long(std::min(batch.size(), begin + step)));
    std::vector<uint32_t> tokens;
    bool argmax = true;
    for (int slot : slots) {
      tokens.push_back(seqs_[size_t(slot)]->next);
      argmax = argmax && seqs_[size_t(slot)]->argmax_ok();
    }
    const Selection select{argmax ? Selection::Argmax : Selection::Logits};
    const auto t0 = Clock::now();
    std::vector<StepOutput> outs;
    // A failed step fails the sequences it carried: their caches may hold half a step.
    if (auto failure = attempt([&] {
          outs = model_.decode(slots, tokens, select);
          if (outs.size() != slots.size()) throw Error("decode returned the wrong number of outputs");
        })) {
      fail(slots, failure->message, failure->device_lost);
      continue;
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    metrics_.decode_steps++;
    recent_steps_.push_back({Clock::now(), {seconds, int(slots.size())}});
    for (size_t k = 0; k < slots.size() && !lost_; ++k) {
      Sequence& s = *seqs_[size_t(slots[k])];
      s.cached++;
      if (auto failure = attempt([&] {
            if (options_.inject_fault) options_.inject_fault(FaultPoint::Decode, s.job);
            accept_token(s, s.pick(outs[k], select));
          }))
        fail(std::span(&slots[k], 1), failure->message, failure->device_lost);
    }
  }
}

void BatchScheduler::accept_token(Sequence& s, uint32_t token) {
  const int slot = int(std::find_if(seqs_.begin(), seqs_.end(), [&](auto& p) { return p.get() == &s; }) - seqs_.begin());
  s.generated++;
  metrics_.completion_tokens++;
  s.decoding = false;
  if (std::find(options_.end_tokens.begin(), options_.end_tokens.end(), token) != options_.end_tokens.end())
    return finish(slot, "stop");
  s.history.push_back(token);
  const std::string text = s.stops.feed(s.decoder.feed(TokenId(token)));
  if (!text.empty()) s.channel->emit(text);
  if (s.stops.stopped()) return finish(slot, "stop");
  // Room to feed this token at the next step?
  if (s.generated >= s.job.max_tokens || s.cached >= context_) return finish(slot, "length");
  s.next = token;
  s.decoding = true;
}

void BatchScheduler::finish(int slot, const std::string& reason, const std::string& error) {
  auto s = std::move(seqs_[size_t(slot)]);
  if (!s) return;
  if (reason == "stop" || reason == "length") {
    // The bytes the decoder held back, unless a stop string already ended the text. Best effort:
    // the request must be finished below whatever happens here.
    attempt([&] {
      std::string tail = s->stops.feed(s->decoder.flush());
      if (!s->stops.stopped()) tail += s->stops.flush();
      if (!tail.empty()) s->channel->emit(tail);
    });
  }
  if (reason == "stop") metrics_.finished_stop++;
  else if (reason == "length") metrics_.finished_length++;
  else if (reason == "cancelled") metrics_.cancelled++;
  else metrics_.failed++;
  if (!error.empty()) std::fprintf(stderr, "ternvk serve: a sequence failed: %s\n", error.c_str());
  {
    std::lock_guard lock(mutex_);
    --running_;
    metrics_.active_sequences = running_;
  }
  // Last, so that a client reading /metrics after its answer sees the answer counted.
  s->channel->finish({reason, int(s->job.prompt.size()), s->generated, error, reason == "error" && lost_});
}

void BatchScheduler::update_gauges() {
  int64_t used = 0;
  for (const auto& s : seqs_)
    if (s) used += s->cached;
  metrics_.kv_tokens_used = used;
  // Aggregate decode throughput over the steps of the last 5 seconds.
  const auto horizon = Clock::now() - std::chrono::seconds(5);
  while (!recent_steps_.empty() && recent_steps_.front().first < horizon) recent_steps_.pop_front();
  double seconds = 0;
  int tokens = 0;
  for (const auto& [when, step] : recent_steps_) seconds += step.first, tokens += step.second;
  metrics_.decode_tokens_per_second = seconds > 0 ? tokens / seconds : 0.0;
}

}  // namespace ternvk::server
