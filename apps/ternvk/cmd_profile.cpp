// `ternvk profile`: where every microsecond of a token goes. Runs a prompt (prefill in chunks of
// -b) and N greedy decode steps with a GPU timestamp after every dispatch, then prints per shader:
// calls, total / per-token / mean time, share, bytes moved (from the model's shape, see
// runtime/profiler/work_model.h), achieved GB/s and GMAC/s, and the fraction of the device's peak
// bandwidth measured by a copy kernel in the same run. Optionally writes a Chrome trace (Perfetto)
// and a PNG bar chart of decode time per shader.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/ternvk/bench_models.h"
#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"
#include "runtime/ops/argmax.h"
#include "runtime/ops/attention.h"
#include "runtime/profiler/aggregate.h"
#include "runtime/profiler/bandwidth.h"
#include "runtime/profiler/chrome_trace.h"
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
      if (peak_gbps > 0) pct = format_fixed(100.0 * r.gb_per_s() / peak_gbps, 1);
      if (r.macs > 0) gmacs = format_fixed(r.gmac_per_s(), 2);
    }
    std::printf("| %s | %llu | %.1f | %.1f | %.2f | %.1f%% | %s | %s | %s | %s |\n", r.label.c_str(),
                (unsigned long long)r.calls, r.total_us, per_token, r.mean_us(), 100.0 * r.share, mb.c_str(),
                gbps.c_str(), pct.c_str(), gmacs.c_str());
  }
  for (const auto& [kind, n] : agg.unmatched_work())
    std::printf("\n(note: the work model expected '%s' dispatches in %llu passes that had none)\n", kind.c_str(),
                (unsigned long long)n);
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
      j["peak_fraction"] = peak_gbps > 0 ? r.gb_per_s() / peak_gbps : 0;
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
    std::string dot = "auto", trace, chart, output = "md";
    uint64_t bandwidth_mib = 64;
  };
  auto o = std::make_shared<Opts>();
  o->model.add(*cmd, false);
  cmd->add_option("-p,--n-prompt", o->prompt, "Prompt tokens (random ids)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-n,--n-gen", o->steps, "Decode steps (greedy)")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-b,--batch-size", o->batch, "Prompt tokens per prefill step")->check(CLI::Range(1, 4096));
  cmd->add_option("-c,--ctx-size", o->context, "KV cache positions (default: prompt + steps)");
  cmd->add_flag("--fp16-baseline", o->fp16, "Profile the FP16 baseline instead of the ternary model");
  add_device_flag(*cmd, o->device);
  cmd->add_option("--dot", o->dot, "Ternary inner product: auto, swar or int8")
      ->check(CLI::IsMember({"auto", "swar", "int8"}));
  cmd->add_option("--trace", o->trace, "Write a Chrome trace JSON (open in ui.perfetto.dev or chrome://tracing)");
  cmd->add_option("--chart", o->chart, "Write a PNG bar chart of decode time per shader");
  cmd->add_option("-o,--output", o->output, "Table format: md or json")->check(CLI::IsMember({"md", "json"}));
  cmd->add_option("--bandwidth-mib", o->bandwidth_mib, "Buffer size of the peak-bandwidth copy probe (MiB)")
      ->check(CLI::Range(1, 4096));
  return [o] {
    Instance instance;
    const DeviceInfo& info = instance.select(o->device);
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
    eo.context = o->context > 0 ? o->context : o->prompt + o->steps + 1;
    eo.prefill_chunk = o->batch;
    eo.fp16_baseline = o->fp16;
    eo.timestamps = true;
    eo.load_tokenizer = false;
    eo.dot = o->dot == "swar" ? ops::TernaryDot::Swar : o->dot == "int8" ? ops::TernaryDot::PackedInt8 : ops::TernaryDot::Auto;
    Engine engine(instance, m.path, eo);
    const ModelConfig& c = engine.config();
    const char* variant = o->fp16 ? "fp16" : "ternary";
    std::fprintf(stderr, "profiling %s (%s) on %s: %d prompt tokens, %d decode steps\n", m.name.c_str(), variant,
                 info.name.c_str(), o->prompt, o->steps);

    const auto bw = profiler::measure_bandwidth(engine.device(), o->bandwidth_mib << 20);
    const double peak = bw.peak();

    const auto shape = shape_of(c);
    const ops::HeadLayout heads{uint32_t(c.n_heads), uint32_t(c.n_kv_heads), uint32_t(c.head_dim)};
    auto spec_for = [&](int tokens, int first_position, bool decode, bool split) {
      profiler::PassSpec s;
      s.tokens = tokens;
      s.first_position = first_position;
      s.fp16_linear = o->fp16;
      // LogitsMode::Last: the head runs on the last row only when that row can be bound on its own.
      const bool one_row =
          uint64_t(tokens - 1) * c.dim * 4 % std::max<uint64_t>(1, info.min_storage_buffer_offset_alignment) == 0;
      s.head_rows = one_row ? 1 : tokens;
      // The split's partials count only when the pass ran a combine (the decode path may not split).
      if (split) {
        const auto plan = ops::plan_attention(info, heads, uint32_t(tokens), uint32_t(engine.context()));
        s.attention_chunks = int(plan.n_chunks);
        s.attention_chunk = int(plan.chunk);
      }
      if (decode) {
        s.select = profiler::PassSpec::Argmax;
        s.select_parts = int(ops::plan_argmax(info, 1, uint32_t(c.vocab)).parts);
      }
      return s;
    };

    profiler::ChromeTrace trace;
    const int gpu_pid = 1, host_pid = 2;
    profiler::Aggregator prefill, decode, prefill_ops, decode_ops;
    const std::string ternary_shader =
        (o->dot == "int8" || (o->dot == "auto" && info.has_fast_int8_dot())) ? "ternary_matmul_dot" : "ternary_matmul_swar";
    // Names each dispatch by shader (matmuls are labelled by matrix) and feeds both tables and the trace.
    auto record = [&](int tokens, int first_position, bool is_decode, const std::string& step, double start_us) {
      const auto raw = engine.stage().last_timings();
      std::vector<DispatchTiming> shaders, ops_;
      std::vector<std::string> op_names;
      bool split = false;
      for (const auto& t : raw) {
        const auto n = profiler::name_dispatch(t.label, o->fp16, ternary_shader);
        shaders.push_back({n.shader, t.microseconds});
        ops_.push_back({n.op, t.microseconds});
        op_names.push_back(t.label);
        split = split || profiler::kind_of(n.shader) == "attention_combine";
      }
      const auto spec = spec_for(tokens, first_position, is_decode, split);
      const auto by_kind = profiler::estimate_pass_work(shape, spec);
      const auto by_op = profiler::estimate_pass_work(shape, spec, true);
      (is_decode ? decode : prefill).add_pass(shaders, &by_kind);
      (is_decode ? decode_ops : prefill_ops).add_pass(ops_, &by_op);
      trace.add_replay(gpu_pid, 1, start_us, shaders, is_decode ? "decode" : "prefill", step, op_names);
    };
    trace.process_name(gpu_pid, "GPU " + std::to_string(info.index) + ": " + info.name);
    trace.thread_name(gpu_pid, 1, "compute queue (family " + std::to_string(engine.device().queue_family()) + ")");
    trace.process_name(host_pid, "host");
    trace.thread_name(host_pid, 1, "engine");
    const auto t_start = Clock::now();
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

    if (o->output == "json") {
      nlohmann::json j = {{"model", m.name},
                          {"variant", variant},
                          {"device", info.name},
                          {"driver", info.driver_name + " " + info.driver_info},
                          {"bandwidth",
                           {{"buffer_bytes", bw.buffer_bytes},
                            {"copy_gb_per_s", bw.copy_gb_per_s},
                            {"shader_gb_per_s", bw.shader_gb_per_s},
                            {"peak_gb_per_s", peak}}},
                          {"prefill", table_json(prefill, o->prompt, peak)},
                          {"prefill_by_op", table_json(prefill_ops, o->prompt, peak)},
                          {"decode_by_op", table_json(decode_ops, o->steps, peak)},
                          {"prefill_wall_s", prefill_wall},
                          {"decode", table_json(decode, o->steps, peak)},
                          {"decode_wall_s", decode_wall}};
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("## ternvk profile: %s, %s, on %s (%s %s)\n\n", m.name.c_str(), variant, info.name.c_str(),
                  info.driver_name.c_str(), info.driver_info.c_str());
      std::printf("Peak bandwidth (same run, %s buffers, best of 5): vkCmdCopyBuffer %.2f GB/s, bandwidth_copy "
                  "shader %.2f GB/s; %% peak BW uses %.2f GB/s.\n",
                  format_bytes(double(bw.buffer_bytes)).c_str(), bw.copy_gb_per_s, bw.shader_gb_per_s, peak);
      print_table("Prefill", prefill, o->prompt, peak);
      std::printf("\nprefill wall time %.3f s (%.2f t/s)\n", prefill_wall, prefill_wall > 0 ? o->prompt / prefill_wall : 0);
      if (o->steps > 0) {
        print_table("Decode", decode, o->steps, peak);
        print_table("Decode by op (matmuls by matrix, summed over layers)", decode_ops, o->steps, peak);
        std::printf("\ndecode wall time %.2f ms/token (GPU %.2f ms/token; the rest is submit, wait and host work)\n",
                    1e3 * decode_wall / o->steps, decode.total_us() / o->steps / 1e3);
      }
      std::printf("\nBytes and MACs come from the model's shape (runtime/profiler/work_model.h); \"-\" = unknown.\n");
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
        if (r.work_known && peak > 0) text += "  " + format_fixed(100 * r.gb_per_s() / peak, 0) + "% bw";
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
