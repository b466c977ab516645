#include "apps/ternvk/bench_models.h"

#include <cmath>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "runtime/engine/model_source.h"

namespace ternvk::cli {

void ModelChoice::add(CLI::App& cmd, bool multiple) {
  auto* m = cmd.add_option("-m,--model", files, multiple ? "Model file (GGUF or HF folder); repeat for several"
                                                         : "Model file (GGUF or HF folder)");
  auto* s = cmd.add_option("--synthetic", synthetic,
                           "A synthetic model of a named shape (" + synthetic_shape_names() +
                               "), written once to the cache" + (multiple ? "; repeat or comma-separate" : ""));
  if (multiple) s->delimiter(',');
  if (!multiple) {
    m->expected(1);
    s->expected(1);
  }
  cmd.add_option("--layers", layers, "Synthetic models: cut to this many layers (slow devices)")
      ->check(CLI::Range(0, 1024));
  cmd.add_option("--vocab", vocab, "Synthetic models: cut the vocabulary to this many tokens")
      ->check(CLI::Range(0, 1 << 22));
  cmd.add_option("--synthetic-seed", seed, "Seed of the synthetic weights");
  cmd.add_option("--cache-dir", cache_dir, "Where synthetic models are written (default: ~/.cache/ternvk)");
}

std::vector<BenchModel> ModelChoice::resolve() const {
  std::vector<BenchModel> out;
  for (const auto& name : synthetic) {
    auto shape = find_synthetic_shape(name);
    if (!shape) throw Error("unknown synthetic shape '" + name + "'; choose one of " + synthetic_shape_names());
    BenchModel m;
    m.synthetic = shape;
    m.config = synthetic_config(*shape, layers, vocab);
    m.full_config = synthetic_config(*shape);
    const bool tty = isatty(2);
    m.path = ensure_synthetic_model(*shape, layers, vocab, seed, cache_dir, [&](int done, int total) {
      if (tty) std::fprintf(stderr, "\rwriting synthetic %s: %d/%d tensors", shape->name.c_str(), done, total);
      if (tty && done == total) std::fprintf(stderr, "\n");
    }).string();
    m.name = shape->label;
    if (m.cut()) {
      m.name += " [";
      if (m.config.n_layers != m.full_config.n_layers)
        m.name += std::to_string(m.config.n_layers) + "/" + std::to_string(m.full_config.n_layers) + " layers";
      if (m.config.vocab != m.full_config.vocab)
        m.name += std::string(m.config.n_layers != m.full_config.n_layers ? ", " : "") + "vocab " +
                  std::to_string(m.config.vocab);
      m.name += "]";
    }
    out.push_back(std::move(m));
  }
  std::vector<std::string> paths = files;
  if (paths.empty() && out.empty()) paths.push_back(default_model_path());
  for (const auto& p : paths) {
    BenchModel m;
    m.path = p;
    m.config = open_model(p)->config();
    m.full_config = m.config;
    m.name = std::filesystem::path(p).filename().string();
    if (m.name == "model.gguf") m.name = std::filesystem::path(p).parent_path().filename().string();
    out.push_back(std::move(m));
  }
  return out;
}


uint64_t param_count(const ModelConfig& c) {
  const uint64_t D = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
  const uint64_t per_layer = D * (Q + 2 * KV) + Q * D + 3 * D * F + 2 * D + Q + F;
  return per_layer * c.n_layers + uint64_t(c.vocab) * D + D;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double sample_mean(const std::vector<double>& samples) {
  double s = 0;
  for (double v : samples) s += v;
  return samples.empty() ? 0 : s / double(samples.size());
}

double sample_stddev(const std::vector<double>& samples) {
  if (samples.size() < 2) return 0;
  const double m = sample_mean(samples);
  double s = 0;
  for (double v : samples) s += (v - m) * (v - m);
  return std::sqrt(s / double(samples.size() - 1));
}

std::string format_fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string format_bytes(double b) {
  if (b >= double(1ull << 30)) return format_fixed(b / double(1ull << 30), 2) + " GiB";
  if (b >= double(1ull << 20)) return format_fixed(b / double(1ull << 20), 1) + " MiB";
  return format_fixed(b / 1024.0, 1) + " KiB";
}

std::string format_count(double n) {
  if (n >= 1e9) return format_fixed(n / 1e9, 2) + " B";
  if (n >= 1e6) return format_fixed(n / 1e6, 1) + " M";
  return format_fixed(n / 1e3, 1) + " K";
}

}  // namespace ternvk::cli
