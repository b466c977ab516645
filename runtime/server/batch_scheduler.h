// Continuous batching. One thread owns the model: each turn of its loop admits queued requests into
// free KV cache slots, runs at most one prefill chunk (so a long prompt never stalls the running
// streams for more than one chunk), then one decode step that advances every decoding sequence
// together. Each sequence samples with its own Sampler; text reaches the request's Channel as soon
// as it is whole UTF-8 and clear of any stop string.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/server/metrics.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk::server {

// What the scheduler needs of a model with several KV cache slots (Engine through EngineModel;
// tests use a fake without a GPU).
class BatchModel {
 public:
  virtual ~BatchModel() = default;
  virtual int slots() const = 0;
  virtual int context() const = 0;    // positions per slot
  virtual int max_batch() const = 0;  // sequences per decode() call
  virtual StepOutput prefill(int slot, std::span<const uint32_t> tokens, Selection select) = 0;
  virtual std::vector<StepOutput> decode(std::span<const int> slots, std::span<const uint32_t> tokens,
                                         Selection select) = 0;
  virtual void truncate(int slot, int n) = 0;
};

struct Job {
  std::vector<uint32_t> prompt;  // not empty, shorter than the context
  int max_tokens = 1;            // > 0
  SamplingParams sampling;
  std::vector<std::string> stop;
};

struct Outcome {
  std::string finish_reason;  // "stop", "length", "cancelled", "error"
  int prompt_tokens = 0;
  int completion_tokens = 0;
  std::string error;          // finish_reason "error": what went wrong
  bool device_lost = false;   // the error is the GPU's loss: no request can be served any more
};

// One request's side of the scheduler: text as it is generated, then the outcome. Thread-safe.
class Channel {
 public:
  struct News {
    std::string text;              // new since the last wait()
    std::optional<Outcome> done;   // set once, with the last text
  };
  // Waits up to `timeout` for text or the end.
  News wait(std::chrono::milliseconds timeout);
  // The client is gone: the scheduler frees the sequence at its next step (BatchScheduler::cancel
  // also takes a queued request out of the queue at once).
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Scheduler side.
  void emit(const std::string& text);
  void finish(Outcome outcome);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::string text_;
  std::optional<Outcome> done_;
  std::atomic<bool> cancelled_{false};
};

// Where a request's work can fail on the scheduler thread.
enum class FaultPoint { Admit, Prefill, Decode };

struct SchedulerOptions {
  int queue_limit = 16;     // requests that may wait beyond the slots; more get nullptr (503)
  int prefill_chunk = 64;   // prompt tokens per loop turn
  std::vector<uint32_t> end_tokens;  // EOS, EOT: end the answer with "stop"
  // Test-only: called when a job is admitted, before each of its prefill chunks and before each of
  // its decoded tokens is sampled. What it throws is handled as a real fault there: it fails that
  // request (a DeviceLostError: every request, for good).
  std::function<void(FaultPoint, const Job&)> inject_fault;
};

class BatchScheduler {
 public:
  // `model` and `tokenizer` must outlive the scheduler; from here on only its thread uses `model`.
  BatchScheduler(BatchModel& model, const Tokenizer& tokenizer, SchedulerOptions options, Metrics& metrics);
  ~BatchScheduler();  // cancels what is left and joins the thread
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  // Queues a job; nullptr when the queue is full or the scheduler no longer accepts work.
  std::shared_ptr<Channel> submit(Job job);
  // The client is gone: a queued request leaves the queue now (finished "cancelled"), a running
  // one is freed at the next step.
  void cancel(const std::shared_ptr<Channel>& channel);
  // Set once the GPU was lost (what the driver said): every request then failed, none is accepted.
  std::optional<std::string> device_lost() const;
  void stop_accepting();
  bool accepting() const;
  // Cancels every queued and running request (they finish with "cancelled").
  void cancel_all();
  // Queued plus running.
  int load() const;
  int slots() const { return slots_; }
  int context() const { return context_; }

 private:
  struct Sequence;
  void loop();
  void drop_cancelled_queued();
  void admit();
  // Ends the requests in `slots` with an error; a lost device ends every request (lose_device).
  void fail(std::span<const int> slots, const std::string& message, bool device_lost);
  void lose_device(const std::string& reason);
  bool run_prefill_chunk();
  void run_decode_step();
  void accept_token(Sequence& s, uint32_t token);
  void finish(int slot, const std::string& reason, const std::string& error = {});
  void update_gauges();

  BatchModel& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  Metrics& metrics_;
  const int slots_;
  const int context_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<Job, std::shared_ptr<Channel>>> queue_;
  int running_ = 0;  // slots in use (guarded by mutex_, for load())
  bool accepting_ = true;
  bool cancel_all_ = false;
  bool quit_ = false;
  std::optional<std::string> device_lost_;

  // Owned by the scheduler thread.
  std::vector<std::unique_ptr<Sequence>> seqs_;  // by slot; null when free
  uint64_t admitted_ = 0;                        // admission order, for FIFO prefill
  bool lost_ = false;                            // the device is gone (device_lost_ is set)
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::pair<double, int>>> recent_steps_;
  std::thread thread_;
};

}  // namespace ternvk::server
