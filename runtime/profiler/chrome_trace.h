// Chrome trace event JSON (the "JSON Object Format": {"traceEvents": [...]}) that opens in
// Perfetto (ui.perfetto.dev) and chrome://tracing. One process per device, one thread (track) per
// queue, and a "host" process for the steps as the CPU saw them. Times in microseconds.
// A model split over devices gets one process per stage's device (its queue on track 1, the host's
// submits and waits on it on track 2) and the hand-overs between stages on a host track, so the
// pipeline's bubbles show.
#pragma once
#include <chrono>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"

namespace ternvk::profiler {

class ChromeTrace {
 public:
  using Args = std::vector<std::pair<std::string, std::string>>;  // values written as JSON strings

  void process_name(int pid, const std::string& name);
  void thread_name(int pid, int tid, const std::string& name);
  // A complete ("X") event.
  void complete(int pid, int tid, const std::string& name, const std::string& category, double ts_us,
                double dur_us, const Args& args = {});
  // An instant ("i") event on a thread.
  void instant(int pid, int tid, const std::string& name, double ts_us);

  // One replay's dispatches laid back to back from `start_us` (each timing is the GPU time from
  // the end of the previous command to the end of this one, so they tile the replay). Each event
  // is named by its label, with `category` and args {"step": step} (+ {"op": ops[i]} when `ops` is
  // given, one per timing). Returns the end time.
  double add_replay(int pid, int tid, double start_us, std::span<const DispatchTiming> timings,
                    const std::string& category, const std::string& step, std::span<const std::string> ops = {});

  // One stage's part of a pipeline step.
  struct StageStep {
    int pid = 0;                              // the stage's device process: queue on tid 1, host calls on tid 2
    std::span<const QueueEvent> queue;        // its submit and wait for this step (host clock)
    std::span<const DispatchTiming> timings;  // GPU time per dispatch of the step
    std::span<const std::string> ops;         // optional, one per timing
  };
  // Lays out one step of a pipeline, times relative to `origin`: each stage's dispatches from its
  // submit on (GPU clocks are not tied to the host's; the submit is when the work could start),
  // its "submit" and "wait" calls, and "hand-over i -> i+1" events (category "handover", args
  // {"step", "us"}) on (host_pid, handover_tid) from stage i's wait end to stage i+1's submit.
  // Returns the hand-over times in microseconds, one per boundary.
  std::vector<double> add_pipeline_step(std::span<const StageStep> stages, std::chrono::steady_clock::time_point origin,
                                        const std::string& category, const std::string& step, int host_pid,
                                        int handover_tid);

  size_t size() const { return events_.size(); }
  std::string json() const;
  void write(const std::filesystem::path& path) const;

 private:
  std::vector<std::string> events_;
};

// `s` as a JSON string literal (quotes included).
std::string json_quote(const std::string& s);

}  // namespace ternvk::profiler
