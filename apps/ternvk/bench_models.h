// What `ternvk bench` and `ternvk profile` share: choosing models (files or synthetic shapes),
// parameter counts, the FP16 baseline's GPU footprint, and number formatting.
#pragma once
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine/stage_memory.h"
#include "runtime/engine/model_config.h"
#include "runtime/engine/synthetic_model.h"

namespace ternvk::cli {

struct BenchModel {
  std::string path;
  std::string name;                        // shown in tables
  std::optional<SyntheticShape> synthetic;  // when written by the benchmark
  ModelConfig config;                      // as loaded (after cuts)
  ModelConfig full_config;                 // the uncut shape (== config for files)
  bool cut() const { return config.n_layers != full_config.n_layers || config.vocab != full_config.vocab; }
};

struct ModelChoice {
  std::vector<std::string> files;
  std::vector<std::string> synthetic;
  int layers = 0, vocab = 0;
  uint64_t seed = 1;
  std::string cache_dir;
  // `multiple`: -m and --synthetic may repeat (bench); else one model (profile).
  void add(CLI::App& cmd, bool multiple);
  // Writes synthetic files when needed (progress on stderr). Defaults to the repo's model.
  std::vector<BenchModel> resolve() const;
};

// Parameters of the linear layers + the (tied) embedding + norms.
uint64_t param_count(const ModelConfig& c);

// Timing and repetition statistics shared by `bench` and `batched-bench`.
double seconds_since(std::chrono::steady_clock::time_point t0);
double sample_mean(const std::vector<double>& samples);
double sample_stddev(const std::vector<double>& samples);  // n - 1 in the denominator (llama-bench)

std::string format_bytes(double bytes);   // "1.23 GiB", "512.0 MiB"
std::string format_count(double n);       // "2.74 B", "700.1 M"
std::string format_fixed(double v, int decimals);

}  // namespace ternvk::cli
