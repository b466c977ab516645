// Chrome trace event JSON (the "JSON Object Format": {"traceEvents": [...]}) that opens in
// Perfetto (ui.perfetto.dev) and chrome://tracing. One process per device, one thread (track) per
// queue, and a "host" process for the steps as the CPU saw them. Times in microseconds.
#pragma once
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

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

  size_t size() const { return events_.size(); }
  std::string json() const;
  void write(const std::filesystem::path& path) const;

 private:
  std::vector<std::string> events_;
};

// `s` as a JSON string literal (quotes included).
std::string json_quote(const std::string& s);

}  // namespace ternvk::profiler
