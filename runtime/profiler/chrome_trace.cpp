#include "runtime/profiler/chrome_trace.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "runtime/core/error.h"
#include "runtime/profiler/pipeline.h"

namespace ternvk::profiler {

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

namespace {
std::string num(double v) {
  if (!std::isfinite(v)) return "0";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}
std::string args_json(const ChromeTrace::Args& args) {
  std::string out = "{";
  for (size_t i = 0; i < args.size(); ++i) {
    if (i) out += ',';
    out += json_quote(args[i].first);
    out += ':';
    out += json_quote(args[i].second);
  }
  return out + "}";
}
}  // namespace

void ChromeTrace::process_name(int pid, const std::string& name) {
  events_.push_back("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + std::to_string(pid) +
                    ",\"tid\":0,\"args\":{\"name\":" + json_quote(name) + "}}");
}

void ChromeTrace::thread_name(int pid, int tid, const std::string& name) {
  events_.push_back("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":" + std::to_string(pid) +
                    ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"name\":" + json_quote(name) + "}}");
}

void ChromeTrace::complete(int pid, int tid, const std::string& name, const std::string& category, double ts_us,
                           double dur_us, const Args& args) {
  events_.push_back("{\"name\":" + json_quote(name) + ",\"cat\":" + json_quote(category) +
                    ",\"ph\":\"X\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) +
                    ",\"ts\":" + num(ts_us) + ",\"dur\":" + num(dur_us) + ",\"args\":" + args_json(args) + "}");
}

void ChromeTrace::instant(int pid, int tid, const std::string& name, double ts_us) {
  events_.push_back("{\"name\":" + json_quote(name) + ",\"ph\":\"i\",\"s\":\"t\",\"pid\":" + std::to_string(pid) +
                    ",\"tid\":" + std::to_string(tid) + ",\"ts\":" + num(ts_us) + "}");
}

double ChromeTrace::add_replay(int pid, int tid, double start_us, std::span<const DispatchTiming> timings,
                               const std::string& category, const std::string& step,
                               std::span<const std::string> ops) {
  double t = start_us;
  for (size_t i = 0; i < timings.size(); ++i) {
    const auto& d = timings[i];
    Args args = {{"step", step}};
    if (i < ops.size()) args.push_back({"op", ops[i]});
    complete(pid, tid, d.label, category, t, d.microseconds, args);
    t += d.microseconds;
  }
  return t;
}

std::vector<double> ChromeTrace::add_pipeline_step(std::span<const StageStep> stages,
                                                   std::chrono::steady_clock::time_point origin,
                                                   const std::string& category, const std::string& step, int host_pid,
                                                   int handover_tid) {
  auto us = [&](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::micro>(t - origin).count();
  };
  for (const auto& s : stages) {
    bool placed = false;
    for (const auto& e : s.queue) {
      const bool submit = e.kind == QueueEvent::Submit;
      complete(s.pid, 2, std::string(e.transfer ? "transfer " : "") + (submit ? "submit" : "wait"), "host", us(e.begin),
               us(e.end) - us(e.begin), {{"step", step}});
      if (submit && !e.transfer && !placed) {
        add_replay(s.pid, 1, us(e.begin), s.timings, category, step, s.ops);
        placed = true;
      }
    }
  }
  std::vector<double> handovers;
  for (size_t i = 0; i + 1 < stages.size(); ++i) {
    const auto gaps = handover_microseconds(stages[i].queue, stages[i + 1].queue);
    if (gaps.size() != 1)
      throw Error("pipeline trace: stage " + std::to_string(i) + " ran " + std::to_string(gaps.size()) +
                  " times in step '" + step + "', expected once");
    // The wait's end is where the hand-over starts.
    double start = 0;
    for (const auto& e : stages[i].queue)
      if (e.kind == QueueEvent::Wait && !e.transfer) start = us(e.end);
    complete(host_pid, handover_tid, "hand-over " + std::to_string(i) + " -> " + std::to_string(i + 1), "handover",
             start, gaps[0], {{"step", step}, {"us", num(gaps[0])}});
    handovers.push_back(gaps[0]);
  }
  return handovers;
}

std::string ChromeTrace::json() const {
  std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  for (size_t i = 0; i < events_.size(); ++i) out += events_[i] + (i + 1 < events_.size() ? ",\n" : "\n");
  return out + "]}\n";
}

void ChromeTrace::write(const std::filesystem::path& path) const {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error("cannot create the trace file '" + path.string() + "'");
  const std::string s = json();
  f.write(s.data(), std::streamsize(s.size()));
  if (!f) throw Error("cannot write the trace file '" + path.string() + "'");
}

}  // namespace ternvk::profiler
