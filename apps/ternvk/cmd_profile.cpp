// `ternvk profile`: where every microsecond of a token goes. Runs a prompt (prefill in chunks of
// -b) and N greedy decode steps. --timing dispatch (default) writes a GPU timestamp after every
// dispatch and prints per shader and per op: calls, total / per-token / mean time, share, bytes
// moved and MACs (what each op stated when the pass was recorded, runtime/profiler/pass_record.h),
// achieved GB/s and GMAC/s, and the fraction of the device's peak read bandwidth measured by a
// streaming-read probe in the same run (a kernel above it is labelled cache-resident, never shown
// above 100%). --timing pass times whole passes only: on a GPU, timestamps between dependent dispatches
// stretch the token, so the per-token GPU time of this mode is the one to quote. Both report the
// dispatches per token of decode and prefill. Optionally writes a Chrome trace (Perfetto)
// and a PNG bar chart of decode time per shader. With --devices (a model split into stages), the
// tables cover every stage and the trace has one track per stage's device plus the host's
// hand-overs between stages.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/ternvk/bench_models.h"
#include "apps/ternvk/commands.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/placement.h"
#include "runtime/ops/argmax.h"
#include "runtime/ops/attention.h"
#include "runtime/profiler/aggregate.h"
#include "runtime/profiler/bandwidth.h"
#include "runtime/profiler/chrome_trace.h"
#include "runtime/profiler/pass_record.h"
#include "runtime/profiler/pipeline.h"
#include "runtime/profiler/png_chart.h"

namespace ternvk::cli {
namespace {

using Clock = std::chrono::steady_clock;

void print_table(const char* title, const profiler::Aggregator& agg, int tokens, double peak_gbps) {
  const char* what = std::strstr(title, "by op") ? "op" : "shader";
  std::printf("\n### %s: %llu passes, %d tokens, %.1f us GPU per token\n\n", title,
              (unsigned long long)agg.passes(), tokens, tokens ? agg.total_us() / tokens : 0.0);
  std::printf("| %s | calls | total us | us/token | mean us | share | MB/token | GB/s | %% peak BW | GMAC/s |\n", what);
  std::printf("| ------ | ----: | -------: | -------: | ------: | ----: | -------: | ---: | --------: | -----: |\n");
  for (const auto& r : agg.rows()) {
    const double per_token = tokens ? r.total_us / tokens : 0;
    std::string mb = "-", gbps = "-", pct = "-", gmacs = "-";
    if (r.work_known) {
      mb = format_fixed(r.bytes / tokens / 1e6, 3);
      gbps = format_fixed(r.gb_per_s(), 2);
      pct = profiler::peak_share(r.gb_per_s(), peak_gbps);
      if (r.macs > 0) gmacs = format_fixed(r.gmac_per_s(), 2);
    }
    std::printf("| %s | %llu | %.1f | %.1f | %.2f | %.1f%% | %s | %s | %s | %s |\n", r.label.c_str(),
                (unsigned long long)r.calls, r.total_us, per_token, r.mean_us(), 100.0 * r.share, mb.c_str(),
                gbps.c_str(), pct.c_str(), gmacs.c_str());
  }
  for (const auto& r : agg.rows())
    if (r.work_known && peak_gbps > 0 && r.gb_per_s() > peak_gbps) {
      std::printf("\n(\"> probe\": the shader measured more than the read probe's peak: its bytes came from a cache, "
                  "or the op states more than it reads)\n");
      break;
    }
}

// Whole passes of one kind (prefill or decode), whatever the timing mode: GPU time, the dispatches
// the recorded passes held, and the work their ops stated.
struct PassSums {
  double gpu_us = 0, bytes = 0, macs = 0;
  size_t passes = 0, dispatches = 0, barriers = 0, unknown = 0;
};

nlohmann::json sums_json(const PassSums& s, int tokens) {
  const double n = std::max(tokens, 1);
  return {{"passes", s.passes},
          {"tokens", tokens},
          {"gpu_us", s.gpu_us},
          {"gpu_us_per_token", s.gpu_us / n},
          {"dispatches", s.dispatches},
          {"dispatches_per_token", double(s.dispatches) / n},
          {"barriers_per_token", double(s.barriers) / n},
          {"bytes_per_token", s.bytes / n},
          {"macs_per_token", s.macs / n},
          {"gb_per_s", s.gpu_us > 0 ? s.bytes / (s.gpu_us * 1e3) : 0.0},
          {"commands_without_work", s.unknown}};
}

void print_sums(const char* what, const PassSums& s, int tokens) {
  const double n = std::max(tokens, 1);
  std::printf("%s: %.1f dispatches and %.1f barriers per token (%zu dispatches in %zu passes), GPU %.1f us per token, "
              "%.3f MB and %.3f GMAC per token, %.2f GB/s%s\n",
              what, double(s.dispatches) / n, double(s.barriers) / n, s.dispatches, s.passes, s.gpu_us / n, s.bytes / n / 1e6, s.macs / n / 1e9,
              s.gpu_us > 0 ? s.bytes / (s.gpu_us * 1e3) : 0.0,
              s.unknown ? (" (" + std::to_string(s.unknown) + " commands without stated work)").c_str() : "");
}

nlohmann::json table_json(const profiler::Aggregator& agg, int tokens, double peak_gbps) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : agg.rows()) {
    nlohmann::json j = {{"label", r.label},     {"kind", r.kind},         {"calls", r.calls},
                        {"total_us", r.total_us}, {"mean_us", r.mean_us()}, {"min_us", r.min_us},
                        {"max_us", r.max_us},   {"share", r.share},       {"work_known", r.work_known}};
    if (r.work_known) {
      j["bytes"] = r.bytes;
      j["macs"] = r.macs;
      j["gb_per_s"] = r.gb_per_s();
      j["gmac_per_s"] = r.gmac_per_s();
      // above 1: more than the probe's peak (cache-resident); above_peak says so
      j["peak_fraction"] = peak_gbps > 0 ? r.gb_per_s() / peak_gbps : 0;
      j["above_peak"] = peak_gbps > 0 && r.gb_per_s() > peak_gbps;
    }
    rows.push_back(j);
  }
  return {{"passes", agg.passes()}, {"tokens", tokens}, {"total_us", agg.total_us()}, {"shaders", rows}};
}

}  // namespace

Action add_profile_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("profile", "GPU time per shader for a prompt and N decode steps");
  struct Opts {
    ModelChoice model;
    int prompt = 128, steps = 32, batch = 64, context = 0;
    bool fp16 = false;
    std::optional<int> device;
    std::string dot = "auto", trace, chart, output = "md", head = "f16", plan = "auto", timing = "dispatch";
    std::string fold = "auto", gemm_units = "auto";
    std::string chain_layers = "auto", matrix_splits = "auto";
    std::string devices, split = "auto";
    uint64_t bandwidth_mib = 0;
  };
  auto o = std::make_shared<Opts>();
  o->model.add(*cmd, false);
  cmd->add_option("-p,--n-prompt", o->prompt, "Prompt tokens (random ids)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-n,--n-gen", o->steps, "Decode steps (greedy)")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-b,--batch-size", o->batch, "Prompt tokens per prefill step")->check(CLI::Range(1, 4096));
  cmd->add_option("-c,--ctx-size", o->context, "KV cache positions (default: prompt + steps)");
  cmd->add_flag("--fp16-baseline", o->fp16, "Profile the FP16 baseline instead of the ternary model");
  add_head_flag(*cmd, o->head);
  add_plan_flag(*cmd, o->plan);
  add_fold_attention_flag(*cmd, o->fold);
  add_chain_layers_flag(*cmd, o->chain_layers);
  add_matrix_splits_flag(*cmd, o->matrix_splits);
  add_device_flag(*cmd, o->device);
  cmd->add_option("--devices", o->devices,
                  "Profile the model split over these devices (indices from `ternvk devices`, may repeat)");
  cmd->add_option("--split", o->split, "Layers per device with --devices: auto or N,N,...");
  cmd->add_option("--dot", o->dot, "Ternary inner product: auto, swar or int8")
      ->check(CLI::IsMember({"auto", "swar", "int8"}));
  cmd->add_option("--gemm-units", o->gemm_units,
                  "Units of the prefill GEMM: auto (matrix units where the device has them and they pass its "
                  "self-check), vector (shader cores) or matrix")
      ->check(CLI::IsMember({"auto", "vector", "matrix"}));
  cmd->add_option("--timing", o->timing,
                  "dispatch: a GPU timestamp after every dispatch (tables per shader and per op); pass: only "
                  "around whole passes (undistorted GPU time per token)")
      ->check(CLI::IsMember({"dispatch", "pass"}));
  cmd->add_option("--trace", o->trace, "Write a Chrome trace JSON (open in ui.perfetto.dev or chrome://tracing)");
  cmd->add_option("--chart", o->chart, "Write a PNG bar chart of decode time per shader");
  cmd->add_option("-o,--output", o->output, "Table format: md or json")->check(CLI::IsMember({"md", "json"}));
  cmd->add_option("--bandwidth-mib", o->bandwidth_mib,
                  "Bytes the peak-bandwidth read probe reads (MiB; 0 = several times the device's last-level cache)")
      ->check(CLI::Range(0, 65536));
  return [o] {
    Instance instance;
    std::vector<int> pipeline;
    if (!o->devices.empty()) pipeline = parse_device_list(o->devices, int(instance.devices().size()));
    const std::vector<int> split = parse_split(o->split);
    if (!split.empty() && pipeline.empty()) throw Error("--split needs --devices (the devices the stages run on)");
    const DeviceInfo& info = instance.select(pipeline.empty() ? o->device : std::optional<int>(pipeline[0]));
    for (int d : pipeline)
      if (!instance.select(d).timestamps)
        throw Error("ternvk profile: device " + std::to_string(d) + " (" + instance.select(d).name +
                    ") has no GPU timestamps on its compute queue; every stage's device needs them");
    if (!info.timestamps) {
      std::fprintf(stderr,
                   "ternvk profile: %s does not support GPU timestamps on its compute queue "
                   "(timestampComputeAndGraphics / timestampValidBits), so per-dispatch times cannot be measured. "
                   "Use `ternvk bench` for wall-clock speed.\n",
                   info.name.c_str());
      return 3;
    }
    auto models = o->model.resolve();
    if (models.size() != 1) throw Error("profile takes one model (-m FILE or --synthetic NAME)");
    const BenchModel& m = models[0];
    EngineOptions eo;
    eo.device = int(info.index);
    eo.devices = pipeline;
    eo.split = split;
    eo.context = o->context > 0 ? o->context : o->prompt + o->steps + 1;
    eo.prefill_chunk = o->batch;
    eo.fp16_baseline = o->fp16;
    eo.head = parse_head(o->head);
    eo.plan = parse_plan(o->plan);
    eo.fold_attention = parse_fold_attention(o->fold);
    eo.chain_layers = parse_layer_chain(o->chain_layers);
    eo.matrix_splits = parse_matrix_splits(o->matrix_splits);
    eo.gemm_units = parse_gemm_units(o->gemm_units);
    const bool per_dispatch = o->timing == "dispatch";
    if (!per_dispatch && (!o->trace.empty() || !o->chart.empty()))
      throw Error("--trace and --chart need --timing dispatch (the times of every dispatch)");
    eo.timestamps = per_dispatch ? TimestampMode::Dispatch : TimestampMode::Pass;
    eo.load_tokenizer = false;
    eo.dot = o->dot == "swar" ? ops::TernaryDot::Swar : o->dot == "int8" ? ops::TernaryDot::PackedInt8 : ops::TernaryDot::Auto;
    const auto loaded = load_engine(instance, m.path, eo);
    Engine& engine = *loaded;
    const ModelConfig& c = engine.config();
    const char* variant = o->fp16 ? "fp16" : "ternary";
    std::fprintf(stderr, "profiling %s (%s) on %s: %d prompt tokens, %d decode steps\n", m.name.c_str(), variant,
                 info.name.c_str(), o->prompt, o->steps);
    // The chained layers' trial, if one ran, ended while the engine loaded: every profiled step runs one form.
    std::fprintf(stderr, "layers chained %s\nmatrix splits %s\n", engine.layer_chain_note().c_str(),
                 engine.matrix_split_note().c_str());

    const auto bw = profiler::measure_bandwidth(engine.device(), o->bandwidth_mib << 20);
    const double peak = bw.peak();
    const size_t n_stages = engine.stage_count();
    if (n_stages > 1) std::fprintf(stderr, "%s", engine.describe_plan().c_str());
    // Host-clock submits and waits of every stage: where each stage's GPU work starts in the trace,
    // and the hand-overs between stages.
    for (size_t i = 0; i < n_stages; ++i) engine.stage(i).device().record_queue_events(true);
    std::vector<std::vector<double>> prefill_handover(n_stages > 1 ? n_stages - 1 : 0),
        decode_handover(n_stages > 1 ? n_stages - 1 : 0);

    PassSums prefill_sums, decode_sums;  // per pass kind, summed over the run

    profiler::ChromeTrace trace;
    // Stage i's device is process 1 + i; the host comes after them (2 with one device, as before).
    const int gpu_pid = 1, host_pid = int(n_stages) + 1;
    profiler::Aggregator prefill, decode, prefill_ops, decode_ops;
    Clock::time_point t_start;  // the trace's time 0: set just before the first step
    // Names each command by shader and op (matmuls by matrix) and feeds the tables and the trace.
    // The stages' passes in order make up one pass of the whole model (embedding first, head last).
    auto record = [&](int tokens, int first_position, bool is_decode, const std::string& step, double start_us) {
      std::vector<DispatchTiming> shaders, ops_;
      std::vector<std::string> op_names;
      std::vector<std::vector<DispatchTiming>> stage_shaders(n_stages);
      std::vector<std::vector<std::string>> stage_ops(n_stages);
      std::vector<profiler::TimedCommand> commands;
      const profiler::ReplayKeys keys = profiler::one_sequence_keys(tokens, first_position);
      PassSums& sums = is_decode ? decode_sums : prefill_sums;
      ++sums.passes;
      for (size_t i = 0; i < n_stages; ++i) {
        const Recording* pass = engine.stage(i).last_pass();
        if (!pass) continue;
        const auto totals = profiler::pass_totals(*pass, keys);
        sums.dispatches += totals.dispatches;
        sums.barriers += totals.barriers;
        sums.unknown += totals.unknown;
        sums.bytes += totals.work.bytes;
        sums.macs += totals.work.macs;
        if (!per_dispatch) {
          sums.gpu_us += pass->pass_microseconds();
          continue;
        }
        // Per dispatch: the pass's time is the sum of its commands' (one read of the timestamps).
        const auto& recorded = pass->commands();
        const auto timed = profiler::timed_commands(*pass, keys);
        for (size_t k = 0; k < timed.size(); ++k) {
          const auto& t = timed[k];
          sums.gpu_us += t.microseconds;
          shaders.push_back({t.shader, t.microseconds});
          ops_.push_back({t.op, t.microseconds});
          op_names.push_back(recorded[k].label);
          stage_shaders[i].push_back({t.shader, t.microseconds});
          stage_ops[i].push_back(recorded[k].label);
        }
        commands.insert(commands.end(), timed.begin(), timed.end());
      }
      (is_decode ? decode : prefill).add_pass(commands);
      (is_decode ? decode_ops : prefill_ops).add_pass(commands, true);
      const char* category = is_decode ? "decode" : "prefill";
      std::vector<std::vector<QueueEvent>> queues(n_stages);
      for (size_t i = 0; i < n_stages; ++i) queues[i] = engine.stage(i).device().take_queue_events();
      if (!per_dispatch) return;
      if (n_stages == 1) {
        trace.add_replay(gpu_pid, 1, start_us, shaders, category, step, op_names);
        return;
      }
      std::vector<profiler::ChromeTrace::StageStep> steps;
      for (size_t i = 0; i < n_stages; ++i) steps.push_back({int(1 + i), queues[i], stage_shaders[i], stage_ops[i]});
      const auto gaps = trace.add_pipeline_step(steps, t_start, category, step, host_pid, 2);
      for (size_t b = 0; b < gaps.size(); ++b) (is_decode ? decode_handover : prefill_handover)[b].push_back(gaps[b]);
    };
    for (size_t i = 0; i < n_stages; ++i) {
      const Stage& st = engine.stage(i);
      const Device& d = st.device();
      const int pid = gpu_pid + int(i);
      if (n_stages == 1) {
        trace.process_name(pid, "GPU " + std::to_string(info.index) + ": " + info.name);
      } else {
        trace.process_name(pid, "stage " + std::to_string(i) + ": GPU " + std::to_string(d.info().index) + ": " +
                                    d.info().name + (d.ordinal() > 0 ? ", logical device " + std::to_string(d.ordinal()) : "") +
                                    ", layers " + std::to_string(st.spec().first_layer) + ".." +
                                    std::to_string(st.spec().end_layer - 1));
        trace.thread_name(pid, 2, "host: submit / wait");
      }
      trace.thread_name(pid, 1, "compute queue (family " + std::to_string(d.queue_family()) + ")");
    }
    trace.process_name(host_pid, "host");
    trace.thread_name(host_pid, 1, "engine");
    if (n_stages > 1) trace.thread_name(host_pid, 2, "hand-overs between stages");
    for (size_t i = 0; i < n_stages; ++i) engine.stage(i).device().take_queue_events();  // none before the run
    t_start = Clock::now();
    auto us_since_start = [&](Clock::time_point t) {
      return std::chrono::duration<double, std::micro>(t - t_start).count();
    };

    std::mt19937_64 rng(5);
    std::uniform_int_distribution<uint32_t> pick(0, uint32_t(c.vocab - 1));
    std::vector<uint32_t> prompt(size_t(o->prompt));
    for (auto& t : prompt) t = pick(rng);
    std::vector<float> logits;
    double prefill_wall = 0, decode_wall = 0;
    for (int start = 0, i = 0; start < o->prompt; start += o->batch, ++i) {
      const int n = std::min(o->batch, o->prompt - start);
      const auto t0 = Clock::now();
      logits = engine.eval(std::span<const uint32_t>(prompt).subspan(size_t(start), size_t(n)));
      const auto t1 = Clock::now();
      prefill_wall += std::chrono::duration<double>(t1 - t0).count();
      const std::string step = "prefill " + std::to_string(i) + " (" + std::to_string(n) + " tokens at " +
                               std::to_string(start) + ")";
      trace.complete(host_pid, 1, step, "host", us_since_start(t0), us_since_start(t1) - us_since_start(t0));
      record(n, start, false, step, us_since_start(t0));
    }
    for (float x : logits)
      if (!std::isfinite(x)) throw Error(m.name + ": the prompt's logits are not finite");
    uint32_t next = uint32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    SamplingParams sp;
    sp.temperature = 0;
    Sampler greedy(sp);
    for (int i = 0; i < o->steps; ++i) {
      const int position = engine.position();
      const uint32_t one[] = {next};
      const auto t0 = Clock::now();
      next = engine.next_token(one, greedy, {});
      const auto t1 = Clock::now();
      decode_wall += std::chrono::duration<double>(t1 - t0).count();
      const std::string step = "decode " + std::to_string(i) + " (position " + std::to_string(position) + ")";
      trace.complete(host_pid, 1, step, "host", us_since_start(t0), us_since_start(t1) - us_since_start(t0));
      record(1, position, true, step, us_since_start(t0));
    }

    // A chained wait that timed out redid its step with barriers and turned chaining off: the figures
    // are then mostly those of unchained steps.
    const int chain_redos = engine.chain_redos();
    if (chain_redos)
      std::fprintf(stderr, "a chained wait timed out (%d redone steps); chaining was turned off\n", chain_redos);
    if (o->output == "json") {
      auto with_sums = [](nlohmann::json table, const PassSums& sums, int tokens) {
        table.update(sums_json(sums, tokens));
        return table;
      };
      nlohmann::json j = {{"model", m.name},
                          {"variant", variant},
                          {"plan", plan_name(engine.stage().plan())},
                          {"layer_chain", engine.layer_chain_note()},
                          {"matrix_splits", engine.matrix_split_note()},
                          {"timing", o->timing},
                          {"device", info.name},
                          {"driver", info.driver_name + " " + info.driver_info},
                          {"bandwidth",
                           {{"read_bytes", bw.read_bytes},
                            {"read_segments", bw.read_segments},
                            {"read_gb_per_s", bw.read_gb_per_s},
                            {"buffer_bytes", bw.buffer_bytes},
                            {"copy_gb_per_s", bw.copy_gb_per_s},
                            {"shader_gb_per_s", bw.shader_gb_per_s},
                            {"peak_gb_per_s", peak}}},
                          {"prefill", with_sums(table_json(prefill, o->prompt, peak), prefill_sums, o->prompt)},
                          {"prefill_by_op", table_json(prefill_ops, o->prompt, peak)},
                          {"decode_by_op", table_json(decode_ops, o->steps, peak)},
                          {"prefill_wall_s", prefill_wall},
                          {"decode", with_sums(table_json(decode, o->steps, peak), decode_sums, o->steps)},
                          {"decode_wall_s", decode_wall},
                          {"chain_redos", chain_redos}};
      if (n_stages > 1) {
        nlohmann::json h = nlohmann::json::array();
        for (size_t b = 0; b < decode_handover.size(); ++b) {
          const auto p = profiler::summarize(prefill_handover[b]);
          const auto d = profiler::summarize(decode_handover[b]);
          h.push_back({{"from_stage", b}, {"to_stage", b + 1}, {"prefill_steps", p.steps}, {"prefill_median_us", p.median_us},
                       {"decode_steps", d.steps}, {"decode_mean_us", d.mean_us}, {"decode_median_us", d.median_us}, {"decode_min_us", d.min_us},
                       {"decode_max_us", d.max_us}});
        }
        j["stages"] = n_stages;
        j["handovers"] = h;
      }
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("## ternvk profile: %s, %s, %s plan, on %s (%s %s), timing per %s\n\n", m.name.c_str(), variant,
                  plan_name(engine.stage().plan()), info.name.c_str(), info.driver_name.c_str(),
                  info.driver_info.c_str(), o->timing.c_str());
      print_sums("prefill", prefill_sums, o->prompt);
      if (o->steps > 0) print_sums("decode", decode_sums, o->steps);
      std::printf("\n");
      std::printf("Peak bandwidth (same run, best of 5): streaming read of %s in %u buffer(s) %.2f GB/s, the "
                  "reference of %% peak BW; copies of %s (read + write): vkCmdCopyBuffer %.2f GB/s, bandwidth_copy "
                  "shader %.2f GB/s.\n",
                  format_bytes(double(bw.read_bytes)).c_str(), bw.read_segments, peak,
                  format_bytes(double(bw.buffer_bytes)).c_str(), bw.copy_gb_per_s, bw.shader_gb_per_s);
      if (per_dispatch) print_table("Prefill", prefill, o->prompt, peak);
      std::printf("\nprefill wall time %.3f s (%.2f t/s)\n", prefill_wall, prefill_wall > 0 ? o->prompt / prefill_wall : 0);
      if (o->steps > 0) {
        if (per_dispatch) {
          print_table("Decode", decode, o->steps, peak);
          print_table("Decode by op (matmuls by matrix, summed over layers)", decode_ops, o->steps, peak);
        }
        std::printf("\ndecode wall time %.2f ms/token (GPU %.2f ms/token; the rest is submit, wait and host work)\n",
                    1e3 * decode_wall / o->steps, decode_sums.gpu_us / o->steps / 1e3);
      }
      if (n_stages > 1) {
        std::printf("\n### Hand-overs between stages (host: read the hidden state back, write it to the next device)\n\n");
        std::printf("| boundary | prefill steps | prefill median us | decode steps | decode median us/token | mean | min | max |\n");
        std::printf("| -------- | ------------: | ----------------: | -----------: | ---------------------: | ---: | --: | --: |\n");
        for (size_t b = 0; b < decode_handover.size(); ++b) {
          const auto p = profiler::summarize(prefill_handover[b]);
          const auto d = profiler::summarize(decode_handover[b]);
          std::printf("| %zu -> %zu | %zu | %.1f | %zu | %.1f | %.1f | %.1f | %.1f |\n", b, b + 1, p.steps, p.median_us,
                      d.steps, d.median_us, d.mean_us, d.min_us, d.max_us);
        }
        std::printf("\nThe first step of each token count also records the next stage's command buffer inside the "
                    "hand-over (hence max >> median).\n");
      }
      std::printf("\nBytes and MACs are what each op stated when the pass was recorded (runtime/profiler/pass_record.h); "
                  "\"-\" = not stated.%s\n",
                  per_dispatch ? " Per-dispatch timestamps stretch a GPU token: quote --timing pass for its time." : "");
    }
    if (!o->trace.empty()) {
      trace.write(o->trace);
      std::fprintf(stderr, "wrote %s (%zu events)\n", o->trace.c_str(), trace.size());
    }
    if (!o->chart.empty()) {
      const auto& agg = o->steps > 0 ? decode : prefill;
      const int tokens = o->steps > 0 ? o->steps : o->prompt;
      std::vector<profiler::Bar> bars;
      for (const auto& r : agg.rows()) {
        const double per_token = r.total_us / tokens;
        std::string text = format_fixed(per_token, 1) + " us  " + format_fixed(100 * r.share, 1) + "%";
        if (r.work_known && peak > 0) text += "  " + profiler::peak_share(r.gb_per_s(), peak, 0, "> probe") + " bw";
        bars.push_back({r.label, per_token, text});
      }
      const std::string title = "ternvk " + std::string(o->steps > 0 ? "decode" : "prefill") + ": us per token by shader, " +
                                m.name + " " + variant;
      const std::string subtitle = info.name + ", " + format_fixed(agg.total_us() / tokens / 1e3, 2) +
                                   " ms gpu per token, peak bw " + format_fixed(peak, 1) + " gb/s";
      profiler::write_png(o->chart, profiler::bar_chart(title, subtitle, bars));
      std::fprintf(stderr, "wrote %s\n", o->chart.c_str());
    }
    return 0;
  };
}

}  // namespace ternvk::cli
