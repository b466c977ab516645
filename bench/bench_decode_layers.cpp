// The GPU plan's decode layers without attention: per layer the four fused linear layers of a one-token
// step (qkv with RoPE and the KV store, o + residual, gate|up with the gating, down + residual), each
// layer with its own weights so that they stream from memory as in a decode token (the H200's 50 MB
// L2 would hold one layer), recorded as one pass and timed as a whole (no timestamps between
// dispatches). Side by side in one run, repetitions interleaved:
//   split  fixed:  one split for every matrix (8 lanes a row, 2 rows a lane group, 4 when paired), as
//                  measured on the H200 at 566ef0c
//          picked: FusedLinearShape::pick: on GPUs each matrix split to fill the device (on CPU
//                  devices their own fixed shape)
//   ternary weights and the FP16 baseline,
//          (on GPUs also the picked rule with 1 and 4 workgroups a compute unit instead of 2, and with
//          16 loads in flight a lane instead of 8; and the FP16 layers with their float rows 8 lanes
//          wide where the device's float_row_lanes() is wider, as before 2026-12-07)
// and, as the floor, a chain of as many dependent one-workgroup dispatches (a residual add of 4
// floats): what a dependent dispatch costs on this device whatever it computes. Between the two, the
// prologue alone (the picked shape's fused_norm_int8 / fused_norm_f32, one workgroup, the same four
// inputs a layer): its time per dispatch less the floor's is the prologue's latency, which every
// fused layer pays before its weights can be multiplied. And the picked layers (and the empty chain)
// recorded with no barriers at all: wrong results, but the time when no dispatch waits for the one
// before, the bound for any design that chains the matrices inside fewer dispatches. And the picked
// layers chained as the engine's --chain-layers records them (no barriers; each dispatch's workgroups
// request their weights, then wait in the shader until the dispatch before has counted itself done):
// right results, and how much of that bound the chain reaches.
//
//   bench_decode_layers [--layers N] [--reps N] [--device N] [--dims D,F,HEADS,KV_HEADS]
//     defaults: 30 layers (2B4T), 7 repetitions, 2B4T dims 2560,6912,20,5 (head_dim 128)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "bench/bench_util.h"
#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/device/device.h"
#include "runtime/device/instance.h"
#include "runtime/device/recording.h"
#include "runtime/ops/fused_linear.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/residual_add.h"

using namespace ternvk;
using namespace ternvk::ops;
using ternvk::bench::Rng;

namespace {

struct Dims {
  uint32_t dim = 2560, ffn = 6912, heads = 20, kv_heads = 5, head_dim = 128;
  uint32_t qkv_rows() const { return (heads + 2 * kv_heads) * head_dim; }
};

// One layer's four matrices in one precision.
template <class Matrix>
struct Layer {
  std::unique_ptr<Matrix> qkv, o, gate_up, down;
};

PackedTernaryMatrix random_ternary(Rng& rng, uint32_t rows, uint32_t cols) {
  std::vector<int8_t> v(size_t(rows) * cols);
  for (auto& x : v) x = int8_t(int(rng.next() % 3) - 1);
  return pack_ternary(v, rows, cols, 0.02f);
}

std::unique_ptr<Fp16MatrixGpu> fp16(Device& dev, const std::vector<uint16_t>& halves, uint32_t rows, uint32_t cols,
                                    const std::string& name) {
  return std::make_unique<Fp16MatrixGpu>(dev, std::span(halves).first(size_t(rows) * cols), rows, cols, name);
}

Buffer floats(Device& dev, Rng& rng, size_t n, const char* what) {
  std::vector<float> v(n);
  for (auto& x : v) x = float(int(rng.next() % 2001) - 1000) / 1000.0f;
  Buffer b = dev.create_buffer(n * 4, MemoryKind::DeviceLocal, what);
  dev.upload(b, v.data(), n * 4);
  return b;
}

// The activations and caches one pass works in (one token).
struct Workspace {
  Buffer x, attn, ffn, qkv, norm_dim, norm_ffn, positions, k, v;
  RopeKvTarget rope;
};

Workspace workspace(Device& dev, const Dims& d, Rng& rng) {
  Workspace w{floats(dev, rng, d.dim, "x"), floats(dev, rng, d.dim, "attention out"), floats(dev, rng, d.ffn, "ffn"),
              floats(dev, rng, d.qkv_rows(), "qkv"), floats(dev, rng, d.dim, "norm (dim)"),
              floats(dev, rng, d.ffn, "norm (ffn)"), dev.create_buffer(16, MemoryKind::DeviceLocal, "positions"),
              dev.create_buffer(kv_cache_bytes(1, d.kv_heads, d.head_dim), MemoryKind::DeviceLocal, "k cache"),
              dev.create_buffer(kv_cache_bytes(1, d.kv_heads, d.head_dim), MemoryKind::DeviceLocal, "v cache"),
              {}};
  const uint32_t zero[4] = {0, 0, 0, 0};
  dev.upload(w.positions, zero, sizeof(zero));
  w.rope = {{d.heads, d.kv_heads, d.head_dim}, {500000.0f, RopeForm::NeoX}, w.positions.range(),
            {w.k.range(), w.v.range(), 1, 1}, {}};
  return w;
}

// Records `layers` decode layers: qkv, o, gate|up, down (as Stage::record_fused_layer, attention left
// out); with `chain` (counters: the flag, then one a dispatch) as chained links, as the engine's.
template <class Matrix>
void record_layers(Recording& rec, const FusedLinear& op, const std::vector<Layer<Matrix>>& layers, Workspace& w,
                   const Buffer* chain = nullptr) {
  auto in = [&](const Buffer& x, const Buffer& norm) { return NormedInput{.x = x.range(), .norm = norm.range(), .tokens = 1}; };
  std::optional<FusedChainLinks> links;
  if (chain) {
    rec.fill(chain->range(), 0);
    rec.begin_chain();
    links.emplace(chain->range());
  }
  // One matrix: a link of the chain, or a plain dispatch.
  auto record = [&](const Matrix& m, const NormedInput& x, const Buffer& y, FusedEpilogue e, const RopeKvTarget* rope) {
    std::optional<FusedChainLink> link;
    if (links) link = links->next();
    const uint32_t groups = op.record(rec, m, x, {y.range()}, e, rope, link ? &*link : nullptr);
    if (links) links->recorded(groups);
  };
  for (const auto& L : layers) {
    record(*L.qkv, in(w.x, w.norm_dim), w.qkv, FusedEpilogue::RopeKvStore, &w.rope);
    record(*L.o, in(w.attn, w.norm_dim), w.x, FusedEpilogue::Accumulate, nullptr);
    record(*L.gate_up, in(w.x, w.norm_dim), w.ffn, FusedEpilogue::GatedSquaredRelu, nullptr);
    record(*L.down, in(w.ffn, w.norm_ffn), w.x, FusedEpilogue::Accumulate, nullptr);
  }
  if (chain) rec.end_chain();
}

struct Variant {
  std::string name;
  std::unique_ptr<Recording> rec;
  double weight_bytes = 0;
  std::vector<double> us;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

int run(int argc, char** argv) {
  Dims d;
  int n_layers = 30, reps = 7, device = -1;
  std::vector<uint32_t> dims;
  CLI::App app{"The GPU plan's decode layers without attention, split and chained side by side (see the header)"};
  app.add_option("--layers", n_layers, "Layers (default 30, 2B4T)")->check(CLI::Range(1, 1000));
  app.add_option("--reps", reps, "Repetitions (default 7)")->check(CLI::Range(1, 1000));
  app.add_option("--dims", dims, "dim,ffn,heads,kv_heads (default 2560,6912,20,5)")
      ->delimiter(',')
      ->expected(4)
      ->check(CLI::Range(1u, 65536u));
  app.add_option("--device", device, "Vulkan device index from `ternvk devices`")->check(CLI::Range(0, 255));
  CLI11_PARSE(app, argc, argv);
  if (!dims.empty()) {
    d.dim = dims[0], d.ffn = dims[1], d.heads = dims[2], d.kv_heads = dims[3];
    if (d.dim % d.heads || d.heads % d.kv_heads || (d.dim / d.heads) % 2)
      throw Error("--dims " + std::to_string(d.dim) + "," + std::to_string(d.ffn) + "," + std::to_string(d.heads) +
                  "," + std::to_string(d.kv_heads) + ": dim must be heads x an even head size, heads a multiple "
                  "of kv_heads");
    d.head_dim = d.dim / d.heads;
  }
  std::optional<int> device_index;
  if (device >= 0) device_index = device;
  Instance instance;
  Device dev(instance, instance.select(device_index));
  const DeviceInfo& info = dev.info();
  std::printf("device: %s\n", info.describe().c_str());
  std::printf("%d layers of dim %u, ffn %u, %u heads, %u kv heads; one token; attention not included\n", n_layers,
              d.dim, d.ffn, d.heads, d.kv_heads);

  Rng rng;
  Workspace w = workspace(dev, d, rng);
  std::vector<Layer<TernaryMatrixGpu>> tern;
  std::vector<Layer<Fp16MatrixGpu>> half;
  std::vector<uint16_t> halves(size_t(2 * d.ffn) * std::max(d.dim, d.ffn));
  for (auto& h : halves) h = float_to_half(float(int(rng.next() % 2001) - 1000) * 2e-5f);
  double tern_bytes = 0, half_bytes = 0;
  // Every layer its own buffers, with the same values (distinct addresses are what streams them).
  const PackedTernaryMatrix t_qkv = random_ternary(rng, d.qkv_rows(), d.dim), t_o = random_ternary(rng, d.dim, d.dim),
                            t_gate_up = random_ternary(rng, 2 * d.ffn, d.dim), t_down = random_ternary(rng, d.dim, d.ffn);
  for (int l = 0; l < n_layers; ++l) {
    const std::string p = "layer " + std::to_string(l) + " ";
    auto tm = [&](const PackedTernaryMatrix& m, const char* what) { return std::make_unique<TernaryMatrixGpu>(dev, m, p + what); };
    Layer<TernaryMatrixGpu> t{tm(t_qkv, "qkv"), tm(t_o, "o"), tm(t_gate_up, "gate|up"), tm(t_down, "down")};
    Layer<Fp16MatrixGpu> h{fp16(dev, halves, d.qkv_rows(), d.dim, p + "qkv"), fp16(dev, halves, d.dim, d.dim, p + "o"),
                           fp16(dev, halves, 2 * d.ffn, d.dim, p + "gate|up"), fp16(dev, halves, d.dim, d.ffn, p + "down")};
    for (const auto* m : {t.qkv.get(), t.o.get(), t.gate_up.get(), t.down.get()}) tern_bytes += double(m->weight_bytes());
    for (const auto* m : {h.qkv.get(), h.o.get(), h.gate_up.get(), h.down.get()}) half_bytes += double(m->weight_bytes());
    tern.push_back(std::move(t));
    half.push_back(std::move(h));
  }

  const FusedLinearShape picked = FusedLinearShape::pick(info);
  // 566ef0c's GPU shape (on any device: shuffles, never a subgroupAdd over the workgroup).
  FusedLinearShape fixed;
  fixed.workgroup = std::min(128u, info.max_workgroup_invocations);
  fixed.lanes = fixed.float_lanes = std::min(8u, info.min_subgroup_size);
  fixed.rows = 2;
  fixed.paired_rows = 4;
  fixed.subgroup_add = false;
  fixed.required_subgroup_size = info.is_cpu() ? 0 : picked.required_subgroup_size;
  fixed.loads_in_flight = 8;
  const RecordingOptions timed{.timestamps = true, .whole_pass = true};
  std::vector<Variant> variants;
  // The picked rule's knobs, swept around its choice (GPUs only; tuning data for the next rule):
  // workgroups per compute unit (the pick targets 2) and loads a lane keeps in flight (the pick: 8).
  std::vector<std::pair<std::string, FusedLinearShape>> shapes = {{"fixed", fixed}, {"picked", picked}};
  if (picked.fit_to_device) {
    const uint32_t units = info.assumed_compute_units();
    for (uint32_t per_unit : {1u, 4u}) {
      FusedLinearShape s = picked;
      s.target_workgroups = per_unit * units;
      shapes.push_back({"picked, " + std::to_string(per_unit) + " workgroup(s) a compute unit", s});
    }
    FusedLinearShape deep = picked;
    deep.loads_in_flight = 16;
    shapes.push_back({"picked, 16 loads in flight", deep});
  }
  for (const auto& [split, shape] : shapes) {
    try {
      const FusedLinear op(dev, {.shape = shape});
      Variant t{std::string("ternary, ") + split, std::make_unique<Recording>(dev, timed), tern_bytes, {}};
      record_layers(*t.rec, op, tern, w);
      Variant h{std::string("FP16, ") + split, std::make_unique<Recording>(dev, timed), half_bytes, {}};
      record_layers(*h.rec, op, half, w);
      variants.push_back(std::move(t));
      variants.push_back(std::move(h));
    } catch (const Error& e) {
      if (variants.size() < 4) throw;  // the fixed and picked splits are what the summary compares
      std::printf("(%s: not run: %s)\n", split.c_str(), e.what());
    }
  }
  // The FP16 baseline under the picked rule with its float rows 8 lanes wide, as before 2026-12-07
  // (GPUs whose float_row_lanes() is wider): what the wider rows give the baseline (a fairness check).
  std::optional<size_t> narrow_at;
  if (picked.fit_to_device && picked.float_lanes > 8) {
    try {  // (a side row: what it cannot run is named, the rest still runs)
      FusedLinearShape narrow = picked;
      narrow.float_lanes = 8;
      const FusedLinear op(dev, {.shape = narrow});
      Variant h{"FP16, picked, float rows 8 lanes (before 2026-12-07)", std::make_unique<Recording>(dev, timed),
                half_bytes, {}};
      record_layers(*h.rec, op, half, w);
      narrow_at = variants.size();
      variants.push_back(std::move(h));
    } catch (const Error& e) {
      std::printf("(FP16 with 8-lane float rows: not run: %s)\n", e.what());
    }
  }
  // The picked layers again with no barrier between dependent dispatches (their results are wrong):
  // what the device does when nothing waits for a drain, i.e. the most that chaining the matrices
  // inside fewer dispatches (each matrix's loads in flight while the one before finishes) could reach.
  // The difference to "picked" is what the dependent launches cost beyond the work.
  const RecordingOptions unordered{.timestamps = true, .whole_pass = true, .automatic_barriers = false};
  {
    const FusedLinear op(dev, {.shape = picked});
    Variant t{"ternary, picked, no barriers (wrong results: the bound for chaining)",
              std::make_unique<Recording>(dev, unordered), tern_bytes, {}};
    record_layers(*t.rec, op, tern, w);
    Variant h{"FP16, picked, no barriers (wrong results: the bound for chaining)",
              std::make_unique<Recording>(dev, unordered), half_bytes, {}};
    record_layers(*h.rec, op, half, w);
    variants.push_back(std::move(t));
    variants.push_back(std::move(h));
  }
  const size_t unordered_at = variants.size() - 2;
  // ... and chained as the engine records --chain-layers (right results): how much of that bound the
  // shaders' waits reach. Counters: the timed-out flag, then one a dispatch.
  std::vector<Buffer> chain_counters;
  for (int i = 0; i < 2; ++i)
    chain_counters.push_back(dev.create_buffer(4 * (1 + 4 * uint64_t(n_layers)), MemoryKind::DeviceLocal, "chain counters"));
  {
    const FusedLinear op(dev, {.shape = picked});
    Variant t{"ternary, picked, chained", std::make_unique<Recording>(dev, timed), tern_bytes, {}};
    record_layers(*t.rec, op, tern, w, &chain_counters[0]);
    Variant h{"FP16, picked, chained", std::make_unique<Recording>(dev, timed), half_bytes, {}};
    record_layers(*h.rec, op, half, w, &chain_counters[1]);
    variants.push_back(std::move(t));
    variants.push_back(std::move(h));
  }
  const size_t chained_at = variants.size() - 2;
  // The prologue alone: per layer the norms of qkv, o, gate|up and down (K = dim, dim, dim, ffn).
  const FusedLinear prologue_op(dev, {.shape = picked});
  const QuantizedActivationsBuffers q = QuantizedActivationsBuffers::create(dev, 1, std::max(d.dim, d.ffn), "prologue out");
  Buffer normed = dev.create_buffer(uint64_t(std::max(d.dim, d.ffn)) * 4, MemoryKind::DeviceLocal, "prologue out (fp32)");
  Variant pro_t{"prologue alone, ternary (int8 out)", std::make_unique<Recording>(dev, timed), 0, {}};
  Variant pro_h{"prologue alone, FP16 (fp32 out)", std::make_unique<Recording>(dev, timed), 0, {}};
  for (int l = 0; l < n_layers; ++l)
    for (const auto& [x, norm, cols] : {std::tuple{&w.x, &w.norm_dim, d.dim}, std::tuple{&w.attn, &w.norm_dim, d.dim},
                                        std::tuple{&w.x, &w.norm_dim, d.dim}, std::tuple{&w.ffn, &w.norm_ffn, d.ffn}}) {
      const NormedInput in{.x = x->range(), .norm = norm->range(), .tokens = 1};
      prologue_op.record_norm(*pro_t.rec, in, QuantizedActivations{q.values.range(), q.meta.range(), cols});
      prologue_op.record_norm(*pro_h.rec, in, cols, normed.range());
    }
  variants.push_back(std::move(pro_t));
  variants.push_back(std::move(pro_h));
  Buffer floor_x = floats(dev, rng, 4, "floor x"), floor_y = floats(dev, rng, 4, "floor y");
  Variant chain{"empty dependent dispatches", std::make_unique<Recording>(dev, timed), 0, {}};
  Variant burst{"empty dispatches, no barriers", std::make_unique<Recording>(dev, unordered), 0, {}};
  for (int i = 0; i < 4 * n_layers; ++i) {
    record_residual_add(*chain.rec, {floor_x.range(), floor_y.range(), 4});
    record_residual_add(*burst.rec, {floor_x.range(), floor_y.range(), 4});
  }
  variants.push_back(std::move(burst));
  variants.push_back(std::move(chain));
  for (auto& v : variants) {
    v.rec->finish();
    v.rec->submit_and_wait();  // warm-up (pipelines, clocks)
  }
  for (int r = 0; r < reps; ++r)
    for (auto& v : variants) {
      v.rec->submit_and_wait();
      v.us.push_back(v.rec->pass_microseconds());
    }
  if (median(variants.back().us) <= 0) throw Error("bench_decode_layers: device '" + info.name + "' gives no timestamps");

  std::printf("\n| variant | dispatches | µs per pass (median of %d) | µs per layer | µs per dispatch | weight GB/s |\n", reps);
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  for (const auto& v : variants) {
    const double us = median(v.us);
    const size_t n = v.rec->dispatch_count();
    char rate[32] = "—";
    if (v.weight_bytes > 0) std::snprintf(rate, sizeof(rate), "%.1f", v.weight_bytes / us / 1e3);
    std::printf("| %s | %zu | %.1f | %.2f | %.2f | %s |\n", v.name.c_str(), n, us, us / n_layers, us / double(n), rate);
  }
  auto us = [&](size_t i) { return median(variants[i].us); };
  std::printf("\npicked / fixed time: ternary %.3f, FP16 %.3f; FP16 / ternary time: fixed %.2fx, picked %.2fx\n",
              us(2) / us(0), us(3) / us(1), us(1) / us(0), us(3) / us(2));
  const double launches = double(variants[2].rec->dispatch_count());
  std::printf("dependent launches beyond the work (picked less no barriers), µs a dispatch: ternary %.2f, FP16 %.2f;"
              " FP16 / ternary time with no barriers %.2fx\n",
              (us(2) - us(unordered_at)) / launches, (us(3) - us(unordered_at + 1)) / launches,
              us(unordered_at + 1) / us(unordered_at));
  std::printf("chained (as --chain-layers), µs a dispatch saved against picked: ternary %.2f, FP16 %.2f; FP16 / "
              "ternary time chained %.2fx\n",
              (us(2) - us(chained_at)) / launches, (us(3) - us(chained_at + 1)) / launches,
              us(chained_at + 1) / us(chained_at));
  if (narrow_at)
    std::printf("FP16 float rows %u lanes (picked) / 8 lanes: time %.3f\n", picked.float_lanes, us(3) / us(*narrow_at));
  for (int i = 0; i < 2; ++i) {
    uint32_t flag = 0;
    dev.download(chain_counters[size_t(i)], &flag, 4);
    if (flag)
      std::printf("%s: a chained wait timed out (its rows time waits that gave up, and the device does not start a "
                  "dispatch's workgroups before a later one's)\n", variants[chained_at + size_t(i)].name.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode_layers: %s\n", e.what());
    return 1;
  }
}
