// What a recorded pass did, read from the recording itself (Recording::commands): each command's
// shader, the op it belongs to (the matrix for matmuls) and the work its op stated when recording
// it. The profiler divides that work by measured GPU time (GB/s, GMAC/s, share of peak bandwidth).
// There is no second description of the forward pass to keep in step with the engine: when the
// engine fuses or splits a kernel, the recording says so.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/device/recording.h"

namespace ternvk::profiler {

struct Work {
  double bytes = 0;  // bytes read + written
  double macs = 0;   // multiply-accumulates (0: not a matmul-like op)
  Work& operator+=(const Work& o) {
    bytes += o.bytes;
    macs += o.macs;
    return *this;
  }
};

// The op family of a shader variant ("ternary_matmul_dot" -> "ternary_matmul", "rmsnorm_shared" ->
// "rmsnorm"); a shader the profiler does not know is its own family.
std::string kind_of(std::string_view shader);

// The engine labels matmul dispatches with the matrix's name ("layer 3 gate|up", "token embedding /
// output head", "output head"). Returns "qkv", "o", "gate|up", "down" or "head" for such labels, ""
// for any other.
std::string matrix_of(std::string_view label);

// One command of a replay as the profiler shows it: `shader` (the variant that ran), `op` (the matrix
// for matmuls, else the shader), its GPU time, and its work at the replay's attended keys.
struct TimedCommand {
  std::string shader, op;
  double microseconds = 0;
  std::optional<Work> work;
};

// The keys a replay's attention reads (live: every sequence's rows up to its last position) and
// computes with (attended: every token's keys).
struct ReplayKeys {
  double live = 0, attended = 0;
};
// A step of `tokens` consecutive tokens of one sequence from `first_position`.
ReplayKeys one_sequence_keys(int tokens, int first_position);

// The commands of `rec`'s last replay with their times (TimestampMode::Dispatch; 0 without) and
// their work at the replay's keys.
std::vector<TimedCommand> timed_commands(const Recording& rec, ReplayKeys keys);

// A whole replay: dispatches (transfers not counted), the pipeline barriers between its commands
// (a chained pass has fewer), and the work of every command whose op stated it (`unknown` counts
// those that did not).
struct PassTotals {
  size_t dispatches = 0;
  size_t barriers = 0;
  size_t unknown = 0;
  Work work;
};
PassTotals pass_totals(const Recording& rec, ReplayKeys keys);

}  // namespace ternvk::profiler
