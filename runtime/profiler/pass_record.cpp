#include "runtime/profiler/pass_record.h"

namespace ternvk::profiler {
namespace {
bool starts(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::optional<Work> work_at(const std::optional<DispatchWork>& w, ReplayKeys keys) {
  if (!w) return std::nullopt;
  return Work{w->bytes_at(keys.live), w->macs_at(keys.attended)};
}
}  // namespace

std::string kind_of(std::string_view shader) {
  static const char* const families[] = {
      "ternary_matmul", "fp16_matmul",      "int8_matmul",  "fused_linear",        "rmsnorm_quant_gated",
      "rmsnorm_quant",  "rmsnorm",          "attention_combine", "attention",      "rope",
      "argmax_merge",   "argmax",           "topk_merge",   "topk",                "embedding",
      "gated_activation", "residual_add",
  };
  for (const char* f : families)
    if (starts(shader, f)) return f;
  return std::string(shader);
}

std::string matrix_of(std::string_view label) {
  if (label.find("output head") != std::string_view::npos) return "head";
  if (!starts(label, "layer ")) return "";
  const size_t space = label.find(' ', 6);
  if (space == std::string_view::npos) return "";
  const std::string_view m = label.substr(space + 1);
  for (const char* known : {"qkv", "o", "gate|up", "down"})
    if (m == known) return known;
  return "";
}

std::vector<TimedCommand> timed_commands(const Recording& rec, ReplayKeys keys) {
  const auto& commands = rec.commands();
  const auto timings = rec.timestamp_mode() == TimestampMode::Dispatch ? rec.timings() : std::vector<DispatchTiming>{};
  std::vector<TimedCommand> out;
  out.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    const RecordedCommand& c = commands[i];
    const std::string matrix = matrix_of(c.label);
    out.push_back({c.shader, matrix.empty() ? c.shader : matrix, i < timings.size() ? timings[i].microseconds : 0.0,
                   work_at(c.work, keys)});
  }
  return out;
}

PassTotals pass_totals(const Recording& rec, ReplayKeys keys) {
  PassTotals t;
  t.barriers = rec.barrier_count();
  for (const RecordedCommand& c : rec.commands()) {
    if (c.kind == RecordedCommand::Dispatch) ++t.dispatches;
    if (auto w = work_at(c.work, keys)) t.work += *w;
    else ++t.unknown;
  }
  return t;
}

ReplayKeys one_sequence_keys(int tokens, int first_position) {
  ReplayKeys k{double(first_position + tokens), 0};
  for (int t = 0; t < tokens; ++t) k.attended += first_position + t + 1;
  return k;
}

}  // namespace ternvk::profiler
