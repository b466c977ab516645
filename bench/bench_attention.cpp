// Attention benchmark at the BitNet b1.58 2B4T shape (20 heads, 5 KV heads, head_dim 128, fp16 KV
// cache): decode (T=1) for contexts 128 to 32768 and prefill (T=64) for contexts 128 to 4096, every
// kernel the device can run side by side in one run (the tiled attention.comp, with and without q in
// registers, the lane-split attention_decode and the GPU decode attention_flash_decode). Times are
// GPU timestamps: each round records `reps` calls in one
// command buffer, submits it twice (warm-up, measured); the figure is the median over all calls of
// all rounds, rounds interleaving the kernels so that machine load hits them alike. GB/s counts the
// K and V bytes a call must read (each token's live keys once per kv head). Every kernel's output is
// compared with the first kernel's before timing. `cpu` is the process CPU time per call (CPU devices
// run shaders on this process's threads: on a loaded machine it shows the work without the waiting).
//
//   bench_attention [--quick] [--contexts N,...] [--reps N] [--rounds N] [--device N] [--engine]
//     --quick  decode at 128, 1024, 4096 and 16384 keys, prefill at 128, 1024, 4096, fewer repetitions
//     --contexts N,...  these contexts (1 to 32768 keys) instead, for decode and prefill alike
//     --decode-only, --prefill-only, --lane-split-only  restrict the cases (tuning aids)
//     --prefill-tokens T  prefill steps of T tokens (default 64; contexts below T are skipped); the
//               prefill rows also run flash-decode forced (one workgroup per token and kv head, each
//               reading its keys from L2) beside the tiled kernel the plan picks on GPUs
//     --engine  also decode recorded for the maximum context 32768 while fewer keys are live (as the
//               engine records a decode step once)
//     --cold    only the device's default decode kernel, each call reading another copy of K and V
//               (copies filling 128 MiB each, more than a GPU's last-level cache): a decode pass reads
//               each layer's cache once between the other layers' traffic, so this is the figure a
//               token pays; the other rows repeat one copy, which a large L2 may hold
//   BENCH_KB="kb/splits,..." and BENCH_FLASH="wg/lanes_per_key/kb/splits,..." add lane-split and
//   flash-decode variants (tuning aids; 0 = the plan's default).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/bench_util.h"
#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/device/device.h"
#include "runtime/device/instance.h"
#include "runtime/device/recording.h"
#include "runtime/ops/attention.h"

using namespace ternvk;
using namespace ternvk::ops;
using ternvk::bench::cpu_seconds;
using ternvk::bench::Rng;

namespace {

struct Kernel {
  std::string name;
  AttentionTuning tuning;
};

struct Options {
  bool quick = false, engine = false, decode_only = false, prefill_only = false, lane_only = false, cold = false;
  int reps = 0, rounds = 0;
  uint32_t prefill_tokens = 64;
  std::vector<uint32_t> contexts;  // empty: the defaults (or --quick's)
  std::optional<int> device;
};

// The non-empty comma-separated items of an environment variable (none when it is unset).
std::vector<std::string> env_list(const char* name) {
  std::vector<std::string> items;
  std::stringstream text(std::getenv(name) ? std::getenv(name) : "");
  for (std::string item; std::getline(text, item, ',');)
    if (!item.empty()) items.push_back(item);
  return items;
}

std::string describe(const AttentionPlan& p) {
  char b[160];
  if (p.flash_decode)
    std::snprintf(b, sizeof b, "flash wg %u lanes/key %u KB %u splits %u (>= %u keys)", p.workgroup, p.lanes_per_key,
                  p.key_block, p.n_chunks, p.min_split);
  else if (p.lane_split)
    std::snprintf(b, sizeof b, "lane-split wg %u KB %u splits %u %s", p.workgroup, p.key_block, p.n_chunks,
                  p.texel_loads ? "texel" : "storage");
  else
    std::snprintf(b, sizeof b, "tiled wg %u BT %u KT %u qregs %d chunks %ux%u", p.workgroup, p.tokens_per_group,
                  p.key_tile, int(p.q_in_registers), p.n_chunks, p.chunk);
  return b;
}

// One shape: T tokens whose last position is live - 1, recorded for max_context.
void run_case(Device& dev, const Options& o, const HeadLayout& h, uint32_t tokens, uint32_t live, uint32_t max_context,
              const std::vector<Kernel>& kernels) {
  const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  Rng rng{0x1234567ull + live * 31ull + tokens};
  std::vector<float> act(size_t(tokens) * stride);
  for (auto& x : act) x = rng.uniform(-1.0f, 1.0f);
  const size_t kv = size_t(max_context) * h.n_kv_heads * h.head_dim;
  std::vector<uint16_t> kh(kv), vh(kv);
  for (auto& x : kh) x = float_to_half(rng.uniform(-1.0f, 1.0f));
  for (auto& x : vh) x = float_to_half(rng.uniform(-1.0f, 1.0f));
  std::vector<uint32_t> pos(tokens);
  for (uint32_t t = 0; t < tokens; ++t) pos[t] = live - tokens + t;
  auto upload = [&](const void* data, uint64_t bytes, const char* what) {
    Buffer b = dev.create_buffer(bytes, MemoryKind::DeviceLocal, what);
    dev.upload(b, data, bytes);
    return b;
  };
  Buffer a = upload(act.data(), act.size() * 4, "bench qkv"), p = upload(pos.data(), pos.size() * 4, "bench pos");
  Buffer kc = upload(kh.data(), kv * 2, "bench k"), vc = upload(vh.data(), kv * 2, "bench v");
  const uint64_t out_floats = uint64_t(tokens) * h.n_heads * h.head_dim;
  Buffer out = dev.create_buffer(out_floats * 4, MemoryKind::DeviceLocal, "bench out");
  // KV bytes a call reads: each token's live keys, K and V, every kv head (a token block shares them
  // in the tiled kernel: this is the minimum for T=1 and an upper bound of the distinct bytes for T>1).
  uint64_t keys = 0;
  for (uint32_t t : pos) keys += t + 1;
  if (tokens > 1) keys = live;  // distinct rows touched
  const uint64_t kv_bytes = keys * h.n_kv_heads * h.head_dim * 2 * 2;

  struct Entry {
    AttentionPlan plan;
    Buffer scratch;
    std::vector<double> us, cpu;
  };
  std::vector<Entry> entries;
  std::vector<float> first, got(out_floats);
  for (const Kernel& k : kernels) {
    AttentionPlan plan;
    try {
      plan = plan_attention(dev.info(), h, tokens, max_context, k.tuning);
    } catch (const Error& e) {
      std::printf("  %-22s not available: %s\n", k.name.c_str(), e.what());
      entries.push_back({});
      continue;
    }
    Buffer scratch = dev.create_buffer(std::max<uint64_t>(plan.scratch_bytes, 16), MemoryKind::DeviceLocal, "bench scratch");
    Recording check(dev);
    record_attention(check, plan, {QkvView::fused(a.range(), tokens, h), p.range(), {kc.range(), vc.range(), max_context},
                                   out.range(), 0, scratch.range()});
    check.submit_and_wait();
    dev.download(out, got.data(), got.size() * 4);
    if (first.empty()) first = got;
    double err = 0;
    for (size_t i = 0; i < got.size(); ++i) err = std::max(err, double(std::fabs(got[i] - first[i])));
    if (!(err < 1e-4)) throw Error(k.name + ": output differs from " + kernels[0].name + " by " + std::to_string(err));
    entries.push_back({plan, std::move(scratch), {}});
  }

  const int reps = o.reps ? o.reps : (o.quick ? 3 : 6);
  const int rounds = o.rounds ? o.rounds : (o.quick ? 2 : 3);
  for (int r = 0; r < rounds; ++r)
    for (size_t i = 0; i < kernels.size(); ++i) {
      Entry& e = entries[i];
      if (!e.plan.tokens) continue;
      Recording rec(dev, {.timestamps = true});
      for (int c = 0; c < reps; ++c)
        record_attention(rec, e.plan, {QkvView::fused(a.range(), tokens, h), p.range(),
                                       {kc.range(), vc.range(), max_context}, out.range(), 0, e.scratch.range()});
      rec.submit_and_wait();
      const double cpu0 = cpu_seconds();
      rec.submit_and_wait();
      e.cpu.push_back((cpu_seconds() - cpu0) * 1e6 / reps);
      const auto t = rec.timings();
      const size_t per = t.size() / reps;
      for (int c = 0; c < reps; ++c) {
        double sum = 0;
        for (size_t j = 0; j < per; ++j) sum += t[c * per + j].microseconds;
        e.us.push_back(sum);
      }
    }
  std::printf("T=%-2u live %4u keys (recorded for %u):\n", tokens, live, max_context);
  double base = 0;
  for (size_t i = 0; i < kernels.size(); ++i) {
    Entry& e = entries[i];
    if (e.us.empty()) continue;
    std::sort(e.us.begin(), e.us.end());
    std::sort(e.cpu.begin(), e.cpu.end());
    const double med = e.us[e.us.size() / 2];
    if (base == 0) base = med;
    std::printf("  %-20s %10.1f us (min %9.1f, cpu %9.1f) %6.2f GB/s KV %6.2fx  [%s]\n", kernels[i].name.c_str(),
                med, e.us.front(), e.cpu[e.cpu.size() / 2], double(kv_bytes) / med / 1e3, base / med,
                describe(e.plan).c_str());
  }
}

// Decode (T = 1) with `live` keys, the default plan, each call reading its own copy of the cache: as
// many copies as fill 128 MiB a cache (at least 2, within the device's buffer range), called in turn
// in one recording, a timestamp after each; the median over the calls of the second submit.
void run_cold(Device& dev, const HeadLayout& h, uint32_t live) {
  const DeviceInfo& info = dev.info();
  const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  // Copies start where a storage or a texel view may (the plan may read K/V through either).
  const uint64_t align = std::max<uint64_t>(
      {info.min_storage_buffer_offset_alignment, info.min_texel_buffer_offset_alignment, uint64_t(16)});
  const uint64_t kv = (uint64_t(live) * h.n_kv_heads * h.head_dim * 2 + align - 1) / align * align;
  const uint64_t budget = std::min<uint64_t>(128ull << 20, info.max_storage_buffer_range);
  const uint64_t copies = std::clamp<uint64_t>(budget / kv, 2, 1024);
  if (kv > info.max_storage_buffer_range) {
    std::printf("  cold %5u keys: one copy of K does not fit a storage buffer range\n", live);
    return;
  }
  const AttentionPlan plan = plan_attention(info, h, 1, live, {});
  Rng rng{live * 7ull + 1};
  std::vector<float> act(stride);
  for (auto& x : act) x = rng.uniform(-1.0f, 1.0f);
  const uint32_t pos = live - 1;
  Buffer a = dev.create_buffer(act.size() * 4, MemoryKind::DeviceLocal, "bench qkv");
  dev.upload(a, act.data(), act.size() * 4);
  Buffer p = dev.create_buffer(4, MemoryKind::DeviceLocal, "bench pos");
  dev.upload(p, &pos, 4);
  Buffer kc = dev.create_buffer(copies * kv, MemoryKind::DeviceLocal, "bench k copies");
  Buffer vc = dev.create_buffer(copies * kv, MemoryKind::DeviceLocal, "bench v copies");
  Buffer out = dev.create_buffer(uint64_t(h.n_heads) * h.head_dim * 4, MemoryKind::DeviceLocal, "bench out");
  Buffer scratch = dev.create_buffer(std::max<uint64_t>(plan.scratch_bytes, 16), MemoryKind::DeviceLocal, "bench scratch");
  {
    Recording fill(dev);
    fill.fill(kc.range(), 0x3c003c00u);  // 1.0 in every half: the kernels' work does not depend on values
    fill.fill(vc.range(), 0x3c003c00u);
    fill.submit_and_wait();
  }
  const bench::Timing tm = bench::time_calls(dev, int(copies), [&](Recording& rec, int c) {
    record_attention(rec, plan, {QkvView::fused(a.range(), 1, h), p.range(),
                                 {BufferRange{kc.range().buffer, c * kv, kv}, BufferRange{vc.range().buffer, c * kv, kv}, live},
                                 out.range(), 0, scratch.range()});
  });
  const double med = tm.median_us, bytes = double(live) * h.n_kv_heads * h.head_dim * 2 * 2;
  std::printf("  cold %5u keys: %9.1f us (min %9.1f), %7.2f GB/s K+V, %llu copies of %.1f MB each  [%s]\n", live,
              med, tm.min_us, bytes / med / 1e3, (unsigned long long)copies, 2.0 * double(kv) / 1e6,
              describe(plan).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Decode and prefill attention at the 2B4T shape, every kernel side by side (see the file's header)"};
  app.add_flag("--quick", o.quick, "Decode at 128, 1024, 4096 and 16384 keys, prefill at 128, 1024, 4096; fewer reps");
  app.add_option("--contexts", o.contexts, "These contexts (keys, comma-separated) for decode and prefill alike")
      ->delimiter(',')
      ->check(CLI::Range(1u, 32768u));
  app.add_flag("--decode-only", o.decode_only, "Decode rows only");
  app.add_flag("--prefill-only", o.prefill_only, "Prefill rows only");
  app.add_flag("--lane-split-only", o.lane_only, "The lane-split decode kernel only");
  app.add_option("--prefill-tokens", o.prefill_tokens, "Tokens of a prefill step (default 64)")
      ->check(CLI::Range(1u, 32768u));
  app.add_flag("--engine", o.engine, "Also decode recorded for 32768 keys while fewer are live");
  app.add_flag("--cold", o.cold, "The default decode kernel only, each call reading another copy of K and V");
  app.add_option("--reps", o.reps, "Calls a round")->check(CLI::Range(1, 100000));
  app.add_option("--rounds", o.rounds, "Rounds, interleaving the kernels")->check(CLI::Range(1, 10000));
  int device = -1;
  app.add_option("--device", device, "Vulkan device index from `ternvk devices`")->check(CLI::Range(0, 255));
  CLI11_PARSE(app, argc, argv);
  if (device >= 0) o.device = device;
  try {
    Instance instance;
    Device dev(instance, instance.select(o.device));
    const DeviceInfo& info = dev.info();
    if (!info.timestamps) throw Error("device '" + info.name + "' has no timestamps: nothing to measure");
    std::printf("device: %s (%s), subgroup %u (%u..%u), arithmetic %s, shared %u bytes\n", info.name.c_str(),
                info.driver_info.c_str(), info.subgroup_size, info.min_subgroup_size, info.max_subgroup_size,
                info.subgroup_arithmetic ? "yes" : "no", info.max_shared_memory);
    const HeadLayout h{20, 5, 128};
    const AttentionPlan def = plan_attention(info, h, 1, 4096);
    std::printf("default decode plan at 4096: %s\n\n", describe(def).c_str());
    std::vector<Kernel> decode = {
        {"tiled (q shared)", {.q_in_registers = false, .lane_split = false}},
        {"tiled (q registers)", {.q_in_registers = true, .lane_split = false}},
        {"lane-split", {.lane_split = true}},
        {"flash-decode", {.flash_decode = true}},
    };
    // on a CPU device the flash kernel's default is one subgroup per workgroup: also 4 subgroups
    if (info.is_cpu())
      decode.push_back({"flash-decode wg x4", {.workgroup = 4 * info.subgroup_size, .flash_decode = true}});
    // the lane-split kernel's other K/V loads: storage buffers where texel loads are the default
    if (plan_attention(info, h, 1, 4096, {.lane_split = true}).texel_loads)
      decode.push_back({"lane-split storage", {.lane_split = true, .texel_loads = false}});
    // tuning aids: BENCH_KB="kb/splits,..." (lane-split), BENCH_FLASH="wg/lanes_per_key/kb/splits,..."
    // (flash-decode, e.g. "128/16/2/0,256/16/4/0,128/8/4/64" on a GPU); 0 = the plan's default
    for (const std::string& item : env_list("BENCH_KB")) {
      uint32_t kb = 0, sp = 0;
      std::sscanf(item.c_str(), "%u/%u", &kb, &sp);
      decode.push_back({"lane-split KB" + item, {.lane_split = true, .splits = sp, .key_block = kb}});
    }
    for (const std::string& item : env_list("BENCH_FLASH")) {
      uint32_t wg = 0, lpk = 0, kb = 0, sp = 0;
      std::sscanf(item.c_str(), "%u/%u/%u/%u", &wg, &lpk, &kb, &sp);
      decode.push_back({"flash " + item,
                        {.workgroup = wg, .splits = sp, .key_block = kb, .flash_decode = true, .lanes_per_key = lpk}});
    }
    std::vector<Kernel> prefill = {
        {"tiled", {.lane_split = false}},
        {"lane-split", {.lane_split = true}},
    };
    if (plan_attention(info, h, 64, 4096, {.lane_split = true}).texel_loads)
      prefill.push_back({"lane-split storage", {.lane_split = true, .texel_loads = false}});
    // The decode kernel per prompt token: no K/V sharing between tokens, but every (token, kv head) a
    // workgroup, whose keys an L2 serves after the first token's read.
    prefill.push_back({"flash per token", {.flash_decode = true}});
    if (o.lane_only) {
      std::erase_if(decode, [](const Kernel& k) { return !k.tuning.lane_split.value_or(false); });
      std::erase_if(prefill, [](const Kernel& k) { return !k.tuning.lane_split.value_or(false); });
    }
    const std::vector<uint32_t> contexts = !o.contexts.empty() ? o.contexts
                                           : o.quick             ? std::vector<uint32_t>{128, 1024, 4096}
                                                                 : std::vector<uint32_t>{128, 512, 1024, 4096};
    const std::vector<uint32_t> decode_contexts =
        !o.contexts.empty() ? o.contexts
        : o.quick           ? std::vector<uint32_t>{128, 1024, 4096, 16384}
                            : std::vector<uint32_t>{128, 512, 1024, 2048, 4096, 8192, 16384, 32768};
    if (o.cold) {
      std::printf("== decode, T=1, the default kernel, a cold copy of the cache each call ==\n");
      for (uint32_t ctx : decode_contexts) run_cold(dev, h, ctx);
      return 0;
    }
    if (!o.prefill_only) {
      std::printf("== decode, T=1 ==\n");
      for (uint32_t ctx : decode_contexts) run_case(dev, o, h, 1, ctx, ctx, decode);
    }
    if (o.engine && !o.prefill_only) {
      std::printf("== decode recorded for 32768 keys, fewer live ==\n");
      for (uint32_t ctx : decode_contexts) run_case(dev, o, h, 1, ctx, 32768, decode);
    }
    if (o.decode_only) return 0;
    const uint32_t T = o.prefill_tokens;
    std::printf("== prefill, T=%u ==\n", T);
    for (uint32_t ctx : contexts)
      if (ctx >= T) run_case(dev, o, h, T, ctx, ctx, prefill);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_attention: %s\n", e.what());
    return 1;
  }
  return 0;
}
