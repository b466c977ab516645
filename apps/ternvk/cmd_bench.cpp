// `ternvk bench`: llama-bench's measurements and output for ternvk, so numbers compare directly.
//   ppN  prompt processing: prefill of N tokens from an empty cache (chunks of -b), tokens / s
//   tgN  text generation: N greedy decode steps (argmax on the GPU) after a 1-token prompt, tokens / s
// Each test runs once untimed (warm-up: pipelines, recordings), then -r times; mean ± sample std
// of tokens / s as llama-bench. Several models, both weight forms (ternary and the FP16 baseline)
// and several devices in one call; peak GPU memory (weights, KV cache, scratch) beside the speed.
// --devices runs one model split over several devices (a pipeline of stages) and reports, for tg
// tests, the host hand-over time per token at each stage boundary (runtime/profiler/pipeline.h).
// --head f16,int8 runs each model with either output head; ratio rows pair ternary and FP16 runs
// with the same head. Batched decode throughput is `ternvk batched-bench`.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/ternvk/bench_models.h"
#include "apps/ternvk/commands.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/placement.h"
#include "runtime/ops/ternary_gemm.h"
#include "runtime/profiler/pipeline.h"

namespace ternvk::cli {
namespace {

struct Result {
  std::string model, variant, head, plan, device, driver, test;
  int device_index = 0;
  int n_prompt = 0, n_gen = 0;
  uint64_t size = 0, params = 0;  // weights on the GPU, parameter count (as loaded)
  std::vector<double> samples;    // tokens / s
  uint64_t peak = 0, weights = 0, kv = 0, scratch = 0;
  // Full-depth estimates (synthetic models measured cut): the same layouts at the uncut shape.
  uint64_t full_weights = 0, full_total = 0;
  int layers = 0, full_layers = 0, vocab = 0, context = 0;
  // A pipeline (--devices): stages, and per stage boundary the hand-over times (us) of every timed
  // decode step (tg tests only).
  int stages = 1;
  std::vector<std::vector<double>> handover_us;
  // pp tests: the prefill GEMM of the linear layers ran on the device's matrix units (the engine has them
  // on, and the test's prefill steps are large enough for a GEMM).
  bool prefill_matrix_units = false;
  std::string layer_chain;  // what became of the chained layers (Engine::layer_chain_note) when the run ended
  std::string matrix_splits;  // the fused matrices' split rule and how it was chosen (Engine::matrix_split_note)
  double mean() const { return sample_mean(samples); }
  double stddev() const { return sample_stddev(samples); }
};

std::vector<uint32_t> random_tokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> d(0, uint32_t(vocab - 1));
  std::vector<uint32_t> t(size_t(std::max(n, 0)));
  for (auto& x : t) x = d(rng);
  return t;
}

std::string ts_text(const Result& r) {
  return format_fixed(r.mean(), 2) + " ± " + format_fixed(r.stddev(), 2);
}

void print_markdown(const std::vector<Result>& results, bool both) {
  std::printf("| model | variant | head | plan | size | params | backend | test | t/s | peak GPU | weights | KV cache | scratch |\n");
  std::printf("| ----- | ------- | ---- | ---- | ---: | -----: | ------- | ---: | --: | -------: | ------: | -------: | ------: |\n");
  for (const auto& r : results)
    std::printf("| %s | %s | %s | %s | %s | %s | Vulkan (%s) | %s | %s | %s | %s | %s | %s |\n", r.model.c_str(),
                r.variant.c_str(), r.head.c_str(), r.plan.c_str(), format_bytes(double(r.size)).c_str(), format_count(double(r.params)).c_str(),
                r.device.c_str(), r.test.c_str(), ts_text(r).c_str(), format_bytes(double(r.peak)).c_str(),
                format_bytes(double(r.weights)).c_str(), format_bytes(double(r.kv)).c_str(),
                format_bytes(double(r.scratch)).c_str());
  bool pipeline = false;
  for (const auto& r : results) pipeline = pipeline || !r.handover_us.empty();
  if (pipeline) {
    std::printf("\n| model | variant | head | backend | test | stages | boundary | hand-over us/token (median) | mean | min | max | steps |\n");
    std::printf("| ----- | ------- | ---- | ------- | ---: | -----: | -------- | --------------------------: | ---: | --: | --: | ----: |\n");
    for (const auto& r : results)
      for (size_t b = 0; b < r.handover_us.size(); ++b) {
        const auto h = profiler::summarize(r.handover_us[b]);
        std::printf("| %s | %s | %s | Vulkan (%s) | %s | %d | %zu -> %zu | %.1f | %.1f | %.1f | %.1f | %zu |\n",
                    r.model.c_str(), r.variant.c_str(), r.head.c_str(), r.device.c_str(), r.test.c_str(), r.stages, b, b + 1,
                    h.median_us, h.mean_us, h.min_us, h.max_us, h.steps);
      }
  }
  if (!both) return;
  std::printf("\n| model | head | plan | backend | test | ternary t/s | FP16 t/s | speed ternary/FP16 | peak GPU ternary | peak GPU FP16 "
              "| memory FP16/ternary | full-depth memory FP16/ternary |\n");
  std::printf("| ----- | ---- | ---- | ------- | ---: | ----------: | -------: | -----------------: | ---------------: | ------------: "
              "| ------------------: | -----------------------------: |\n");
  bool unlike = false;
  for (const auto& t : results) {
    if (t.variant != "ternary") continue;
    for (const auto& f : results) {
      if (f.variant != "fp16" || f.model != t.model || f.head != t.head || f.plan != t.plan || f.device_index != t.device_index ||
          f.test != t.test || f.stages != t.stages)
        continue;
      unlike = unlike || (t.n_prompt > 0 && t.prefill_matrix_units != f.prefill_matrix_units);
      std::printf("| %s | %s | %s | Vulkan (%s) | %s | %s | %s | %.2fx | %s | %s | %.2fx | %.2fx |\n", t.model.c_str(),
                  t.head.c_str(), t.plan.c_str(), t.device.c_str(), t.test.c_str(), ts_text(t).c_str(), ts_text(f).c_str(),
                  f.mean() > 0 ? t.mean() / f.mean() : 0.0, format_bytes(double(t.peak)).c_str(),
                  format_bytes(double(f.peak)).c_str(), t.peak ? double(f.peak) / double(t.peak) : 0.0,
                  t.full_total ? double(f.full_total) / double(t.full_total) : 0.0);
    }
  }
  if (unlike)
    std::printf("\n(pp rows: one variant's prefill GEMM ran on the matrix units and the other's on the shader cores "
                "(the device has no fp16 or no int8 ones, or one failed its self-check): those ratios are not like "
                "for like; tg rows are)\n");
}

void print_csv(const std::vector<Result>& results) {
  std::printf("model,variant,head,plan,size_bytes,params,backend,device,device_index,test,n_prompt,n_gen,avg_ts,stddev_ts,"
              "peak_bytes,weight_bytes,kv_bytes,scratch_bytes,layers,full_layers,vocab,context,full_weight_bytes,"
              "full_total_bytes,samples_ts\n");
  for (const auto& r : results) {
    std::string samples;
    for (double s : r.samples) samples += (samples.empty() ? "" : ";") + format_fixed(s, 4);
    std::printf("\"%s\",%s,%s,%s,%llu,%llu,Vulkan,\"%s\",%d,%s,%d,%d,%.4f,%.4f,%llu,%llu,%llu,%llu,%d,%d,%d,%d,%llu,%llu,\"%s\"\n",
                r.model.c_str(), r.variant.c_str(), r.head.c_str(), r.plan.c_str(), (unsigned long long)r.size, (unsigned long long)r.params,
                r.device.c_str(), r.device_index, r.test.c_str(), r.n_prompt, r.n_gen, r.mean(), r.stddev(),
                (unsigned long long)r.peak, (unsigned long long)r.weights, (unsigned long long)r.kv,
                (unsigned long long)r.scratch, r.layers, r.full_layers, r.vocab, r.context,
                (unsigned long long)r.full_weights, (unsigned long long)r.full_total, samples.c_str());
  }
}

void print_json(const std::vector<Result>& results) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& r : results) {
    arr.push_back({{"model", r.model},
                   {"variant", r.variant},
                   {"head", r.head},
                   {"plan", r.plan},
                   {"prefill_gemm", r.prefill_matrix_units ? "matrix units" : "shader cores"},
                   {"layer_chain", r.layer_chain},
                   {"matrix_splits", r.matrix_splits},
                   {"size_bytes", r.size},
                   {"params", r.params},
                   {"backend", "Vulkan"},
                   {"device", r.device},
                   {"driver", r.driver},
                   {"device_index", r.device_index},
                   {"test", r.test},
                   {"n_prompt", r.n_prompt},
                   {"n_gen", r.n_gen},
                   {"avg_ts", r.mean()},
                   {"stddev_ts", r.stddev()},
                   {"samples_ts", r.samples},
                   {"peak_bytes", r.peak},
                   {"weight_bytes", r.weights},
                   {"kv_bytes", r.kv},
                   {"scratch_bytes", r.scratch},
                   {"layers", r.layers},
                   {"full_layers", r.full_layers},
                   {"vocab", r.vocab},
                   {"context", r.context},
                   {"full_weight_bytes", r.full_weights},
                   {"full_total_bytes", r.full_total}});
    if (r.stages > 1) {
      arr.back()["stages"] = r.stages;
      nlohmann::json h = nlohmann::json::array();
      for (size_t b = 0; b < r.handover_us.size(); ++b) {
        const auto s = profiler::summarize(r.handover_us[b]);
        h.push_back({{"from_stage", b}, {"mean_us", s.mean_us}, {"median_us", s.median_us}, {"min_us", s.min_us}, {"max_us", s.max_us},
                     {"steps", s.steps}});
      }
      arr.back()["handover_us_per_token"] = h;
    }
  }
  std::printf("%s\n", arr.dump(2).c_str());
}

// `values` without repeats, in the order first given.
template <typename T>
std::vector<T> first_of_each(const std::vector<T>& values) {
  std::vector<T> out;
  for (const T& v : values)
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  return out;
}

}  // namespace

Action add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Benchmark prompt processing and generation (llama-bench style)");
  struct Opts {
    ModelChoice models;
    std::vector<int> prompts{512}, gens{128};
    int reps = 5, batch = 64, context = 0;
    bool fp16 = false, both = false, no_warmup = false, sequential = false;
    std::vector<int> devices;
    std::string pipeline, split = "auto";
    std::string output = "md", dot = "auto";
    std::vector<std::string> heads{"f16"};
    std::vector<std::string> plans{"auto"};
    std::vector<std::string> gemm_units{"auto"};
    std::vector<int> chains{EngineOptions{}.greedy_chain};
    std::vector<std::string> step_inputs{"auto"};
    std::vector<std::string> folds{"auto"};
    std::vector<std::string> layer_chains{"auto"};
    std::string matrix_splits = "auto";
  };
  auto o = std::make_shared<Opts>();
  o->models.add(*cmd, true);
  cmd->add_option("-p,--n-prompt", o->prompts, "Prompt sizes (pp tests; 0 for none), comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-n,--n-gen", o->gens, "Generated sizes (tg tests; 0 for none), comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-r,--repetitions", o->reps, "Timed repetitions of each test")->check(CLI::Range(1, 1000));
  cmd->add_option("-b,--batch-size", o->batch, "Prompt tokens per prefill step")->check(CLI::Range(1, 4096));
  cmd->add_option("-c,--ctx-size", o->context, "KV cache positions (default: the largest test's)")
      ->check(CLI::Range(0, 1 << 22));
  cmd->add_flag("--fp16-baseline", o->fp16, "Run the FP16 baseline (linear weights in FP16) instead of ternary");
  cmd->add_flag("--both", o->both, "Run ternary and the FP16 baseline side by side, with ratio rows");
  cmd->add_option("--device", o->devices, "Vulkan device indices from `ternvk devices`, comma-separated")
      ->delimiter(',');
  cmd->add_option("--devices", o->pipeline,
                  "Run each model split over these devices as a pipeline (indices, may repeat; e.g. 0,0) and "
                  "report the hand-over time per token between stages");
  cmd->add_option("--split", o->split, "Layers per device with --devices: auto or N,N,...");
  cmd->add_option("-o,--output", o->output, "Output format: md, csv or json")
      ->check(CLI::IsMember({"md", "csv", "json"}));
  cmd->add_option("--dot", o->dot, "Ternary inner product: auto, swar or int8")
      ->check(CLI::IsMember({"auto", "swar", "int8"}));
  cmd->add_option("--head", o->heads,
                  "Output head precision(s), comma-separated: f16 (default) and/or int8 (one scale per row, half "
                  "the bytes); ternary and FP16 runs of a pair share the head")
      ->delimiter(',')
      ->check(CLI::IsMember({"f16", "int8"}));
  cmd->add_option("--plan", o->plans,
                  "Forward pass(es), comma-separated: auto (by device type), gpu (fused decode layers) and/or cpu; "
                  "several run side by side")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "gpu", "cpu"}));
  cmd->add_option("--gemm-units", o->gemm_units,
                  "Units of the prefill GEMM, comma-separated: auto (matrix units where the device has them, int8 "
                  "for ternary and fp16 for the FP16 baseline's prompt chunks, and they pass its self-check), vector "
                  "(shader cores) and/or matrix; several run side by side")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "vector", "matrix"}));
  cmd->add_option("--greedy-chain", o->chains,
                  "tg tests: the most greedy tokens a submit, chained on the GPU (1: a submit a token; fewer where a "
                  "submit would pass ~25 ms; a pipeline takes 1), comma-separated; several run side by side (pp "
                  "tests too)")
      ->delimiter(',')
      ->check(CLI::Range(1, 64));
  cmd->add_option("--step-inputs", o->step_inputs,
                  "Where passes read token ids, positions and KV slots, comma-separated: auto (device-local copies "
                  "on discrete GPUs), host (the host-visible buffers) and/or device (copies); several run side by side")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "host", "device"}));
  cmd->add_option("--fold-attention", o->folds,
                  "GPU plan, one-token steps at short contexts: the attention inside the qkv dispatch, "
                  "comma-separated: auto (where the device can), on (required) and/or off; several run side by side")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--chain-layers", o->layer_chains,
                  "GPU plan, one-token steps: the fused dispatches of all layers with no barriers between them, "
                  "each waiting in its shader for the one before (EngineOptions::chain_layers), comma-separated: "
                  "auto (on GPUs, kept where a trial before timing finds the same bits and a win), measure (the "
                  "trial on any device), on and/or off; several run side by side")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "measure", "off", "on"}));
  add_matrix_splits_flag(*cmd, o->matrix_splits);
  cmd->add_flag("--no-warmup", o->no_warmup, "Skip the untimed warm-up run of each test");
  cmd->add_flag("--sequential", o->sequential,
                "With --both: load and run one variant after the other (default: both loaded, repetitions "
                "alternate; needs memory for both)");
  return [o] {
    // A list value given twice (`--head int8,int8`) would only repeat rows.
    const std::vector<std::string> heads = first_of_each(o->heads), units_names = first_of_each(o->gemm_units);
    const std::vector<int> chains = first_of_each(o->chains);
    // The chain joins the plan's label when it is not the default (ratio rows pair by label).
    const bool label_chain = chains.size() > 1 || chains[0] != EngineOptions{}.greedy_chain;
    const std::vector<std::string> input_names = first_of_each(o->step_inputs), fold_names = first_of_each(o->folds),
                                   plan_names = first_of_each(o->plans), layer_chain_names = first_of_each(o->layer_chains);
    const bool label_layer_chain = layer_chain_names.size() > 1 || layer_chain_names[0] != "auto";
    auto models = o->models.resolve();
    Instance instance;
    std::vector<std::optional<int>> devices;
    for (int d : o->devices) devices.push_back(d);
    std::vector<int> pipeline;
    if (!o->pipeline.empty()) {
      if (!o->devices.empty()) throw Error("bench: use --device (one run per device) or --devices (one pipeline), not both");
      pipeline = parse_device_list(o->pipeline, int(instance.devices().size()));
      devices.push_back(pipeline[0]);
    }
    const std::vector<int> split = parse_split(o->split);
    if (!split.empty() && pipeline.empty()) throw Error("--split needs --devices (the devices the stages run on)");
    if (devices.empty()) devices.push_back(std::nullopt);
    std::vector<bool> variants;  // fp16_baseline
    if (o->both) variants = {false, true};
    else variants = {o->fp16};
    int max_p = 0, max_n = 0;
    for (int p : o->prompts) max_p = std::max(max_p, p);
    for (int n : o->gens) max_n = std::max(max_n, n);
    std::vector<Result> results;
    for (const auto& dev : devices) {
      const DeviceInfo& info = instance.select(dev);
      std::fprintf(stderr, "device %u: %s (%s, driver %s %s)\n", info.index, info.name.c_str(), info.type_name().c_str(),
                   info.driver_name.c_str(), info.driver_info.c_str());
      for (const auto& m : models) {
        const int ctx = o->context > 0 ? o->context : std::max({max_p, max_n + 1, 1});
        if (ctx > m.config.context)
          throw Error(m.path + ": the tests need " + std::to_string(ctx) + " positions, more than the model's " +
                      std::to_string(m.config.context));
        // One engine per variant, alive together so that repetitions alternate between them (the
        // ratio is then measured under the same conditions); --sequential loads one at a time.
        struct Run {
          std::unique_ptr<Engine> engine;
          Result base;
          std::vector<Result> results;
        };
        // With --devices, the pipeline runs beside the same model on its first device alone, so
        // the split's cost or gain is measured in the same run.
        auto load = [&](bool fp16, bool pipelined, const std::string& head, const std::string& plan,
                        const std::string& units, int chain, const std::string& inputs, const std::string& fold,
                        const std::string& layer_chain) {
          EngineOptions eo;
          eo.device = int(info.index);
          if (pipelined) {
            eo.devices = pipeline;
            eo.split = split;
          }
          eo.context = ctx;
          eo.prefill_chunk = o->batch;
          eo.fp16_baseline = fp16;
          eo.head = parse_head(head);
          eo.plan = parse_plan(plan);
          eo.greedy_chain = chain;
          if (inputs != "auto") eo.step_inputs_on_device = inputs == "device";
          if (fold != "auto") eo.fold_attention = fold == "on";
          eo.chain_layers = parse_layer_chain(layer_chain);
          eo.matrix_splits = parse_matrix_splits(o->matrix_splits);
          eo.gemm_units = parse_gemm_units(units);
          eo.load_tokenizer = false;
          eo.dot = o->dot == "swar" ? ops::TernaryDot::Swar
                   : o->dot == "int8" ? ops::TernaryDot::PackedInt8 : ops::TernaryDot::Auto;
          const auto t_load = std::chrono::steady_clock::now();
          Run run;
          run.engine = load_engine(instance, m.path, eo);
          Engine& engine = *run.engine;
          const char* variant = fp16 ? "fp16" : "ternary";
          // Units asked for by name label both variants of a pair, so that their ratio rows still pair.
          const std::string plan_used =
              std::string(plan_name(engine.stage().plan())) + (units == "auto" ? "" : " (" + units + " GEMM)") +
              (label_chain ? ", chain " + std::to_string(engine.stage_count() > 1 ? 1 : chain) : "") +
              (inputs == "auto" ? "" : ", step inputs on " + inputs) +
              (fold == "auto" ? "" : ", attention in qkv " + fold) +
              (label_layer_chain ? ", layers chained " + layer_chain : "") +
              (o->matrix_splits == "auto" ? "" : ", matrix splits " + o->matrix_splits);
          const bool matrix_units = engine.stage().prefill_on_matrix_units();
          std::fprintf(stderr, "  %s %s (%s head, %s plan%s): loaded in %.1f s\n", m.name.c_str(), variant, head.c_str(),
                       plan_used.c_str(),
                       !matrix_units                 ? ""
                       : info.matrix_units_emulated ? ", prefill GEMM on matrix units (emulated)"
                                                    : ", prefill GEMM on matrix units",
                       seconds_since(t_load));
          const int V = engine.config().vocab;
          // Check the output once before timing: logits must be finite.
          auto logits = engine.eval(random_tokens(std::min(8, ctx), V, 7));
          size_t bad = 0;
          for (float x : logits) bad += !std::isfinite(x);
          if (bad)
            throw Error(m.name + " (" + variant + "): " + std::to_string(bad) + " of " + std::to_string(logits.size()) +
                        " logits are not finite");
          engine.reset();
          // The chained layers' trial, if one ran, ended while the engine loaded: the rows time what it kept.
          std::fprintf(stderr, "  %s %s: matrix splits %s\n  %s %s: layers chained %s\n", m.name.c_str(), variant,
                       engine.matrix_split_note().c_str(), m.name.c_str(), variant, engine.layer_chain_note().c_str());
          engine.prepare_greedy_chains();  // no chain is recorded while a tg test is timed
          Result& b = run.base;
          b.model = m.name;
          b.variant = variant;
          b.head = head;
          b.plan = plan_used;
          // Emulated units (TERNVK_EMULATE_MATRIX_UNITS) run on the shader cores: no row may pass for a unit's speed.
          b.device = info.name + (info.matrix_units_emulated ? " (matrix units emulated)" : "");
          b.stages = int(engine.stage_count());
          b.prefill_matrix_units = matrix_units;
          if (b.stages > 1) {
            b.device = "pipeline:";
            for (size_t i = 0; i < engine.stage_count(); ++i) {
              const auto& sp = engine.stage(i).spec();
              b.device += (i ? " + " : " ") + engine.stage(i).device().info().name + " [" +
                          std::to_string(sp.end_layer - sp.first_layer) + " layers]";
            }
          }
          b.driver = info.driver_name + " " + info.driver_info;
          b.device_index = int(info.index);
          b.size = 0;
          for (size_t i = 0; i < engine.stage_count(); ++i) b.size += engine.stage(i).weight_bytes();
          b.params = param_count(engine.config());
          b.layers = engine.config().n_layers;
          b.full_layers = m.full_config.n_layers;
          b.vocab = V;
          b.context = ctx;
          const GpuFootprint full = estimate_footprint(
              m.full_config,
              {.context = ctx, .max_tokens = o->batch, .fp16_baseline = fp16, .head = eo.head, .plan = eo.plan}, info);
          b.full_weights = full.weights;
          b.full_total = full.total();
          return run;
        };
        // Timed bodies: seconds for a test (p > 0: prefill of p tokens; else n decode steps).
        SamplingParams sp;
        sp.temperature = 0;
        Sampler greedy(sp);
        // Per stage boundary, the hand-over times of the last time_test's decode steps (pipelines).
        std::vector<std::vector<double>> last_handovers;
        auto time_test = [&](Engine& engine, int p, int n) {
          const int V = engine.config().vocab;
          last_handovers.clear();
          engine.reset();
          if (p > 0) {
            const auto tokens = random_tokens(p, V, 11);
            const auto t0 = std::chrono::steady_clock::now();
            engine.eval(tokens);
            return seconds_since(t0);
          }
          const auto first = random_tokens(1, V, 13);
          uint32_t next = engine.next_token(first, greedy, first);  // the short prompt (untimed)
          const size_t stages = engine.stage_count();
          for (size_t i = 0; i < stages && stages > 1; ++i) engine.stage(i).device().record_queue_events(true);
          const auto t0 = std::chrono::steady_clock::now();
          // As generation runs them: greedy chains on the GPU (EngineOptions::greedy_chain).
          for (int done = 0; done < n;) {
            const auto picks = engine.decode_greedy(next, n - done);
            done += int(picks.size());
            next = picks.back();
          }
          const double seconds = seconds_since(t0);
          if (stages > 1) {
            std::vector<std::vector<QueueEvent>> events;
            for (size_t i = 0; i < stages; ++i) {
              events.push_back(engine.stage(i).device().take_queue_events());
              engine.stage(i).device().record_queue_events(false);
            }
            for (size_t b = 0; b + 1 < stages; ++b)
              last_handovers.push_back(profiler::handover_microseconds(events[b], events[b + 1]));
          }
          return seconds;
        };
        std::vector<std::pair<int, int>> tests;
        for (int p : o->prompts)
          if (p > 0) tests.push_back({p, 0});
        for (int n : o->gens)
          if (n > 0) tests.push_back({0, n});
        auto run_tests = [&](std::vector<Run*> runs) {
          for (auto [p, n] : tests) {
            std::vector<Result> rs;
            for (Run* run : runs) {
              Result r = run->base;
              r.test = p > 0 ? "pp" + std::to_string(p) : "tg" + std::to_string(n);
              r.n_prompt = p;
              r.n_gen = n;
              r.prefill_matrix_units =
                  r.prefill_matrix_units && p > 0 && uint32_t(std::min(p, o->batch)) >= ops::kGemmMinTokens;
              rs.push_back(std::move(r));
              // tg: the whole test, so that the chain lengths settle before timing.
              if (!o->no_warmup) time_test(*run->engine, p, p > 0 ? 0 : n);
            }
            for (int rep = 0; rep < o->reps; ++rep)
              for (size_t k = 0; k < runs.size(); ++k) {
                const double s = time_test(*runs[k]->engine, p, n);
                rs[k].samples.push_back((p > 0 ? p : n) / s);
                rs[k].handover_us.resize(last_handovers.size());
                for (size_t b = 0; b < last_handovers.size(); ++b)
                  rs[k].handover_us[b].insert(rs[k].handover_us[b].end(), last_handovers[b].begin(), last_handovers[b].end());
              }
            for (size_t k = 0; k < runs.size(); ++k) {
              std::fprintf(stderr, "    %s (%s head, %s plan) %s: %s t/s\n", rs[k].variant.c_str(), rs[k].head.c_str(),
                           rs[k].plan.c_str(), rs[k].test.c_str(), ts_text(rs[k]).c_str());
              for (size_t b = 0; b < rs[k].handover_us.size(); ++b)
                std::fprintf(stderr, "      hand-over stage %zu -> %zu: median %.1f us/token\n", b, b + 1,
                             profiler::summarize(rs[k].handover_us[b]).median_us);
              runs[k]->results.push_back(std::move(rs[k]));
            }
          }
        };
        auto finish = [&](Run& run) {
          Engine& engine = *run.engine;
          const uint64_t peak = engine.peak_gpu_bytes();
          // A chained wait that timed out redid its step with barriers and turned chaining off: the
          // rows then time mostly unchained steps, and say so.
          if (const int redos = engine.chain_redos()) {
            std::fprintf(stderr, "  %s: a chained wait timed out (%d redone steps); chaining was turned off\n",
                         run.base.plan.c_str(), redos);
            for (auto& r : run.results) r.plan += " (chain timed out: turned off)";
          }
          for (auto& r : run.results) {
            r.layer_chain = engine.layer_chain_note();
            r.matrix_splits = engine.matrix_split_note();
            r.peak = peak;
            r.weights = 0;
            r.kv = 0;
            for (size_t i = 0; i < engine.stage_count(); ++i) {
              r.weights += engine.stage(i).weight_bytes();
              r.kv += engine.stage(i).kv_bytes();
            }
            r.scratch = peak > r.weights + r.kv ? peak - r.weights - r.kv : 0;
            results.push_back(std::move(r));
          }
          run.engine.reset();
        };
        struct Plan {
          bool fp16, pipelined;
          std::string head, plan, units;
          int chain;
          std::string inputs, fold, layer_chain;
        };
        std::vector<Plan> plans;
        for (const std::string& plan : plan_names)
          for (const std::string& units : units_names)
            for (int chain : chains)
              for (const std::string& inputs : input_names)
                for (const std::string& fold : fold_names)
                  for (const std::string& layer_chain : layer_chain_names)
                    for (const std::string& head : heads)
                      for (bool fp16 : variants) {
                        if (!pipeline.empty())
                          plans.push_back({fp16, false, head, plan, units, chain, inputs, fold, layer_chain});
                        plans.push_back({fp16, !pipeline.empty(), head, plan, units, chain, inputs, fold, layer_chain});
                      }
        if (o->sequential || plans.size() == 1) {
          for (const Plan& p : plans) {
            Run run = load(p.fp16, p.pipelined, p.head, p.plan, p.units, p.chain, p.inputs, p.fold, p.layer_chain);
            run_tests({&run});
            finish(run);
          }
        } else {
          std::vector<Run> runs;
          for (const Plan& p : plans)
            runs.push_back(load(p.fp16, p.pipelined, p.head, p.plan, p.units, p.chain, p.inputs, p.fold, p.layer_chain));
          std::vector<Run*> ptrs;
          for (auto& r : runs) ptrs.push_back(&r);
          run_tests(ptrs);
          for (auto& r : runs) finish(r);
        }
      }
    }
    if (o->output == "md") {
      print_markdown(results, o->both);
      std::time_t now = std::time(nullptr);
      char date[32];
      std::strftime(date, sizeof date, "%Y-%m-%d", std::localtime(&now));
      std::printf("\nternvk bench, %s; t/s = mean ± sample std over %d runs; tg after a 1-token prompt, greedy\n",
                  date, o->reps);
    } else if (o->output == "csv") {
      print_csv(results);
    } else {
      print_json(results);
    }
    return 0;
  };
}

}  // namespace ternvk::cli
