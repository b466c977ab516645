// `ternvk batched-bench`: decode throughput with several sequences at once (llama-batched-bench's
// measurement), ternary vs the FP16 baseline of the same shape side by side, plus the largest batch
// each fits in a memory budget: the BitNet b1.58 paper's throughput-at-batch claim on this device.
//   For each parallel count B: B sequences each get a -p token prompt (prefill, one sequence at a
//   time), then -n decode steps advance all B together (one forward pass per step, greedy on the
//   GPU). S_TG = B * n / decode seconds (aggregate tokens / s); T_step = seconds per decode step.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/ternvk/bench_models.h"
#include "apps/ternvk/commands.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"

namespace ternvk::cli {
namespace {

struct BatchResult {
  std::string model, variant, device;
  int parallel = 0, n_prompt = 0, n_gen = 0;
  std::vector<double> samples;  // aggregate decode tokens / s
  uint64_t peak = 0;
  double mean() const { return sample_mean(samples); }
  double stddev() const { return sample_stddev(samples); }
};

struct BudgetResult {
  std::string model;
  uint64_t budget = 0;
  int context = 0, ternary = 0, fp16 = 0;  // largest number of sequences that fits
};

// The largest number of sequences (KV slots of `context` positions) whose full-depth footprint fits
// `budget` bytes; 0 when not even the weights fit.
int largest_batch(const ModelConfig& c, const DeviceInfo& info, int context, int chunk, uint64_t budget, bool fp16,
                  HeadPrecision head, ExecutionPlan plan) {
  auto fits = [&](int b) {
    const StageOptions o{.context = context, .sequences = b, .max_tokens = std::max(chunk, b), .fp16_baseline = fp16,
                         .head = head, .plan = plan};
    return estimate_footprint(c, o, info).total() <= budget;
  };
  if (!fits(1)) return 0;
  int lo = 1, hi = 2;
  while (hi < (1 << 20) && fits(hi)) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

uint64_t parse_bytes(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw Error("--memory-budget: '" + text + "' is not a size (e.g. 8GiB, 512MiB, 4e9)");
  }
  const std::string unit = text.substr(used);
  double mult = 1;
  if (unit == "KiB" || unit == "K") mult = 1024.0;
  else if (unit == "MiB" || unit == "M") mult = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (!unit.empty()) throw Error("--memory-budget: unknown unit '" + unit + "' (use KiB, MiB or GiB)");
  if (!(v > 0)) throw Error("--memory-budget must be positive, not '" + text + "'");
  return uint64_t(v * mult);
}

}  // namespace

Action add_batched_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "batched-bench", "Decode throughput with several sequences at once, ternary vs FP16 (llama-batched-bench style)");
  struct Opts {
    ModelChoice models;
    std::vector<int> parallel{1, 2, 4, 8, 16};
    int prompt = 16, gen = 32, reps = 3, context = 0;
    std::optional<int> device;
    bool fp16 = false, both = false;
    std::string budget = "8GiB", output = "md", head = "f16", plan = "auto";
  };
  auto o = std::make_shared<Opts>();
  o->models.add(*cmd, true);
  cmd->add_option("--parallel,--npl", o->parallel, "Sequences decoded at once, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  cmd->add_option("-p,--n-prompt", o->prompt, "Prompt tokens per sequence")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-n,--n-gen", o->gen, "Decode steps (tokens per sequence)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-r,--repetitions", o->reps, "Timed repetitions of each test")->check(CLI::Range(1, 1000));
  cmd->add_option("-c,--ctx-size", o->context, "KV positions per sequence (default: prompt + gen)")
      ->check(CLI::Range(0, 1 << 22));
  cmd->add_option("--memory-budget", o->budget,
                  "Memory for the largest-batch estimate (full-depth model, KV per sequence at -c)");
  add_device_flag(*cmd, o->device);
  cmd->add_flag("--fp16-baseline", o->fp16, "Run the FP16 baseline instead of ternary");
  cmd->add_flag("--both", o->both, "Run ternary and the FP16 baseline side by side, with ratio rows");
  add_head_flag(*cmd, o->head);
  add_plan_flag(*cmd, o->plan);
  cmd->add_option("-o,--output", o->output, "Output format: md or json")->check(CLI::IsMember({"md", "json"}));
  return [o] {
    const uint64_t budget = parse_bytes(o->budget);
    const auto models = o->models.resolve();
    Instance instance;
    const DeviceInfo& info = instance.select(o->device);
    std::fprintf(stderr, "device %u: %s (%s)\n", info.index, info.name.c_str(), info.type_name().c_str());
    int max_b = 0;
    for (int b : o->parallel) max_b = std::max(max_b, b);
    const int ctx = o->context > 0 ? o->context : o->prompt + o->gen;
    if (o->prompt + o->gen > ctx)
      throw Error("-c " + std::to_string(ctx) + " is smaller than -p + -n (" + std::to_string(o->prompt + o->gen) + ")");
    std::vector<bool> variants = o->both ? std::vector<bool>{false, true} : std::vector<bool>{o->fp16};
    std::vector<BatchResult> results;
    std::vector<BudgetResult> budgets;
    for (const auto& m : models) {
      if (ctx > m.config.context)
        throw Error(m.path + ": -c " + std::to_string(ctx) + " is more than the model's " +
                    std::to_string(m.config.context) + " positions");
      const HeadPrecision head = parse_head(o->head);
      const ExecutionPlan plan = parse_plan(o->plan);
      budgets.push_back({m.name, budget, ctx, largest_batch(m.full_config, info, ctx, 64, budget, false, head, plan),
                         largest_batch(m.full_config, info, ctx, 64, budget, true, head, plan)});
      // Both variants loaded together so repetitions alternate (same conditions for the ratio).
      std::vector<std::unique_ptr<Engine>> engines;
      for (bool fp16 : variants) {
        EngineOptions eo;
        eo.device = int(info.index);
        eo.context = ctx;
        eo.sequences = max_b;
        eo.fp16_baseline = fp16;
        eo.head = head;
        eo.plan = parse_plan(o->plan);
        eo.load_tokenizer = false;
        engines.push_back(load_engine(instance, m.path, eo));
        std::fprintf(stderr, "  %s %s: loaded, %d sequences x %d positions\n", m.name.c_str(), fp16 ? "fp16" : "ternary",
                     max_b, ctx);
      }
      std::mt19937_64 rng(5);
      auto run_once = [&](Engine& e, int b) {
        const int V = e.config().vocab;
        std::uniform_int_distribution<uint32_t> tok(0, uint32_t(V - 1));
        std::vector<int> slots;
        std::vector<uint32_t> next;
        for (int s = 0; s < b; ++s) {
          e.truncate(s, 0);
          std::vector<uint32_t> prompt(size_t(o->prompt));
          for (auto& t : prompt) t = tok(rng);
          next.push_back(e.prefill(s, prompt, {Selection::Argmax}).token);
          slots.push_back(s);
        }
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < o->gen; ++i) {
          const auto outs = e.decode(slots, next, {Selection::Argmax});
          for (int s = 0; s < b; ++s) next[size_t(s)] = outs[size_t(s)].token;
        }
        return double(b) * o->gen / seconds_since(t0);
      };
      for (int b : o->parallel) {
        std::vector<BatchResult> rs;
        for (size_t k = 0; k < engines.size(); ++k) {
          rs.push_back({m.name, variants[k] ? "fp16" : "ternary", info.name, b, o->prompt, o->gen, {}, 0});
          run_once(*engines[k], b);  // warm-up: records the passes for this batch size
        }
        for (int rep = 0; rep < o->reps; ++rep)
          for (size_t k = 0; k < engines.size(); ++k) rs[k].samples.push_back(run_once(*engines[k], b));
        for (size_t k = 0; k < engines.size(); ++k) {
          rs[k].peak = engines[k]->peak_gpu_bytes();
          std::fprintf(stderr, "    %s B=%d: %.2f ± %.2f t/s\n", rs[k].variant.c_str(), b, rs[k].mean(), rs[k].stddev());
          results.push_back(rs[k]);
        }
      }
    }
    if (o->output == "json") {
      nlohmann::json j{{"device", info.name}, {"head", o->head}, {"results", nlohmann::json::array()},
                       {"budgets", nlohmann::json::array()}};
      for (const auto& r : results)
        j["results"].push_back({{"model", r.model}, {"variant", r.variant}, {"parallel", r.parallel},
                                {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen}, {"avg_ts", r.mean()},
                                {"stddev_ts", r.stddev()}, {"samples_ts", r.samples}, {"peak_bytes", r.peak}});
      for (const auto& b : budgets)
        j["budgets"].push_back({{"model", b.model}, {"budget_bytes", b.budget}, {"context", b.context},
                                {"largest_batch_ternary", b.ternary}, {"largest_batch_fp16", b.fp16}});
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("| model | variant | B | S_TG t/s (all sequences) | t/s per sequence | T_step ms | peak GPU |\n");
    std::printf("| ----- | ------- | -: | -----------------------: | ---------------: | --------: | -------: |\n");
    for (const auto& r : results)
      std::printf("| %s | %s | %d | %s ± %s | %s | %s | %s |\n", r.model.c_str(), r.variant.c_str(), r.parallel,
                  format_fixed(r.mean(), 2).c_str(), format_fixed(r.stddev(), 2).c_str(),
                  format_fixed(r.mean() / r.parallel, 2).c_str(),
                  format_fixed(r.mean() > 0 ? 1000.0 * r.parallel / r.mean() : 0, 1).c_str(),
                  format_bytes(double(r.peak)).c_str());
    if (o->both) {
      std::printf("\n| model | B | ternary t/s | FP16 t/s | throughput ternary/FP16 |\n| ----- | -: | ---: | ---: | ---: |\n");
      for (const auto& t : results)
        for (const auto& f : results)
          if (t.variant == "ternary" && f.variant == "fp16" && t.model == f.model && t.parallel == f.parallel)
            std::printf("| %s | %d | %s | %s | %.2fx |\n", t.model.c_str(), t.parallel, format_fixed(t.mean(), 2).c_str(),
                        format_fixed(f.mean(), 2).c_str(), f.mean() > 0 ? t.mean() / f.mean() : 0.0);
    }
    std::printf("\n| model | memory budget | context | largest batch ternary | largest batch FP16 | ratio |\n"
                "| ----- | ------------: | ------: | --------------------: | -----------------: | ----: |\n");
    for (const auto& b : budgets)
      std::printf("| %s | %s | %d | %d | %d | %s |\n", b.model.c_str(), format_bytes(double(b.budget)).c_str(), b.context,
                  b.ternary, b.fp16, b.fp16 ? (format_fixed(double(b.ternary) / b.fp16, 2) + "x").c_str() : "FP16 does not fit");
    std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%d", std::localtime(&now));
    std::printf("\nternvk batched-bench on %s, %s; %s output head in both variants; mean ± sample std over %d runs; "
                "largest batch: full-depth model, estimated from the engine's layouts\n",
                info.name.c_str(), date, o->head.c_str(), o->reps);
    return 0;
  };
}

}  // namespace ternvk::cli
