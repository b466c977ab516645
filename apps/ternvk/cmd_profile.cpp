// `ternvk profile`: where every microsecond of a token goes. Runs a prompt (prefill in chunks of
// -b) and N greedy decode steps with a GPU timestamp after every dispatch, then prints per shader:
// calls, total / per-token / mean time, share, bytes moved (from the model's shape, see
// runtime/profiler/work_model.h), achieved GB/s and GMAC/s, and the fraction of the device's peak
// read bandwidth measured by a streaming-read probe in the same run (a kernel above it is labelled
// cache-resident, never shown above 100%). Optionally writes a Chrome trace (Perfetto)
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
                  "or the work model overstates them)\n");
      break;
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
    std::string dot = "auto", trace, chart, output = "md", head = "f16";
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
  add_device_flag(*cmd, o->device);
  cmd->add_option("--devices", o->devices,
                  "Profile the model split over these devices (indices from `ternvk devices`, may repeat)");
  cmd->add_option("--split", o->split, "Layers per device with --devices: auto or N,N,...");
  cmd->add_option("--dot", o->dot, "Ternary inner product: auto, swar or int8")
      ->check(CLI::IsMember({"auto", "swar", "int8"}));
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
    const size_t n_stages = engine.stage_count();
    if (n_stages > 1) std::fprintf(stderr, "%s", engine.describe_plan().c_str());
    // Host-clock submits and waits of every stage: where each stage's GPU work starts in the trace,
    // and the hand-overs between stages.
    for (size_t i = 0; i < n_stages; ++i) engine.stage(i).device().record_queue_events(true);
    std::vector<std::vector<double>> prefill_handover(n_stages > 1 ? n_stages - 1 : 0),
        decode_handover(n_stages > 1 ? n_stages - 1 : 0);

    const auto shape = shape_of(c);
    const ops::HeadLayout heads{uint32_t(c.n_heads), uint32_t(c.n_kv_heads), uint32_t(c.head_dim)};
    auto spec_for = [&](int tokens, int first_position, bool decode, bool split) {
      profiler::PassSpec s;
      s.tokens = tokens;
      s.first_position = first_position;
      s.fp16_linear = o->fp16;
      s.int8_head = o->head == "int8";
      s.int8_embedding = s.int8_head && c.tied_head;
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
    // Stage i's device is process 1 + i; the host comes after them (2 with one device, as before).
    const int gpu_pid = 1, host_pid = int(n_stages) + 1;
    profiler::Aggregator prefill, decode, prefill_ops, decode_ops;
    Clock::time_point t_start;  // the trace's time 0: set just before the first step
    const std::string ternary_shader =
        (o->dot == "int8" || (o->dot == "auto" && info.has_fast_int8_dot())) ? "ternary_matmul_dot" : "ternary_matmul_swar";
    // Names each dispatch by shader (matmuls are labelled by matrix) and feeds both tables and the trace.
    // The stages' passes in order make up one pass of the whole model (embedding first, head last).
    auto record = [&](int tokens, int first_position, bool is_decode, const std::string& step, double start_us) {
      std::vector<DispatchTiming> shaders, ops_;
      std::vector<std::string> op_names;
      std::vector<std::vector<DispatchTiming>> stage_shaders(n_stages);
      std::vector<std::vector<std::string>> stage_ops(n_stages);
      bool split = false;
      for (size_t i = 0; i < n_stages; ++i)
        for (const auto& t : engine.stage(i).last_timings()) {
          const auto n = profiler::name_dispatch(t.label, o->fp16, ternary_shader, o->head == "int8");
          shaders.push_back({n.shader, t.microseconds});
          ops_.push_back({n.op, t.microseconds});
          op_names.push_back(t.label);
          stage_shaders[i].push_back({n.shader, t.microseconds});
          stage_ops[i].push_back(t.label);
          split = split || profiler::kind_of(n.shader) == "attention_combine";
        }
      const auto spec = spec_for(tokens, first_position, is_decode, split);
      const auto by_kind = profiler::estimate_pass_work(shape, spec);
      const auto by_op = profiler::estimate_pass_work(shape, spec, true);
      (is_decode ? decode : prefill).add_pass(shaders, &by_kind);
      (is_decode ? decode_ops : prefill_ops).add_pass(ops_, &by_op);
      const char* category = is_decode ? "decode" : "prefill";
      std::vector<std::vector<QueueEvent>> queues(n_stages);
      for (size_t i = 0; i < n_stages; ++i) queues[i] = engine.stage(i).device().take_queue_events();
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

    if (o->output == "json") {
      nlohmann::json j = {{"model", m.name},
                          {"variant", variant},
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
                          {"prefill", table_json(prefill, o->prompt, peak)},
                          {"prefill_by_op", table_json(prefill_ops, o->prompt, peak)},
                          {"decode_by_op", table_json(decode_ops, o->steps, peak)},
                          {"prefill_wall_s", prefill_wall},
                          {"decode", table_json(decode, o->steps, peak)},
                          {"decode_wall_s", decode_wall}};
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
      std::printf("## ternvk profile: %s, %s, on %s (%s %s)\n\n", m.name.c_str(), variant, info.name.c_str(),
                  info.driver_name.c_str(), info.driver_info.c_str());
      std::printf("Peak bandwidth (same run, best of 5): streaming read of %s in %u buffer(s) %.2f GB/s, the "
                  "reference of %% peak BW; copies of %s (read + write): vkCmdCopyBuffer %.2f GB/s, bandwidth_copy "
                  "shader %.2f GB/s.\n",
                  format_bytes(double(bw.read_bytes)).c_str(), bw.read_segments, peak,
                  format_bytes(double(bw.buffer_bytes)).c_str(), bw.copy_gb_per_s, bw.shader_gb_per_s);
      print_table("Prefill", prefill, o->prompt, peak);
      std::printf("\nprefill wall time %.3f s (%.2f t/s)\n", prefill_wall, prefill_wall > 0 ? o->prompt / prefill_wall : 0);
      if (o->steps > 0) {
        print_table("Decode", decode, o->steps, peak);
        print_table("Decode by op (matmuls by matrix, summed over layers)", decode_ops, o->steps, peak);
        std::printf("\ndecode wall time %.2f ms/token (GPU %.2f ms/token; the rest is submit, wait and host work)\n",
                    1e3 * decode_wall / o->steps, decode.total_us() / o->steps / 1e3);
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
