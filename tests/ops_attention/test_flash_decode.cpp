// attention_flash_decode, the decode attention for GPUs (lanes over keys, many splits merged by the
// last split, one dispatch), against the CPU reference on the machine's device (lavapipe: subgroup
// 8; the tests force the kernel and lavapipe-sized workgroups). Tolerance: the error bound of
// reference.h (ref::attention_bound: fp16 K/V read by both, fp32 scores, exp2 and sums on the GPU),
// shown to be tight enough to tell a dropped key apart.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "common/device_profiles.h"
#include "common/gpu.h"
#include "ops_attention/reference.h"
#include "ops_attention/util.h"
#include "runtime/ops/attention.h"

using namespace ternvk;
using namespace ternvk::test;
using ops::AttentionTuning;
using ops::HeadLayout;
using ops::SequenceLayout;

namespace {

bool can_flash() { return device().info().subgroup_shuffle && device().info().subgroup_arithmetic; }

float default_scale(const HeadLayout& h) { return 1.0f / std::sqrt(float(h.head_dim)); }

// q/k/v of one step and the cache it reads: `sequences` slots of `capacity` rows.
struct Inputs {
  HeadLayout h;
  std::vector<uint32_t> pos, slot;  // slot empty: no slots binding (all slot 0)
  uint32_t capacity = 0, sequences = 1;
  std::vector<float> qkv;
  std::vector<uint16_t> k, v;

  Inputs(const HeadLayout& heads, std::vector<uint32_t> positions, uint32_t cap, uint32_t seed,
         std::vector<uint32_t> slots = {}, uint32_t seqs = 1)
      : h(heads), pos(std::move(positions)), slot(std::move(slots)), capacity(cap), sequences(seqs) {
    const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
    qkv = random_floats(pos.size() * stride, seed, -1.0f, 1.0f);
    const size_t halves = size_t(capacity) * sequences * h.n_kv_heads * h.head_dim;
    k = random_halves(halves, seed + 1);
    v = random_halves(halves, seed + 2);
  }
  uint32_t tokens() const { return uint32_t(pos.size()); }
  ref::Slots ref_slots() const {
    std::vector<uint32_t> clamped = slot;
    for (auto& s : clamped) s = std::min(s, sequences - 1);
    return {clamped, capacity, sequences};
  }
  std::vector<float> reference() const {
    return ref::attention(qkv, ops::QkvView::fused({}, tokens(), h), h, pos, k, v, default_scale(h), ref_slots());
  }
};

// Device buffers of Inputs and one recorded attention step over them.
struct FlashRun {
  ops::AttentionPlan plan;
  Buffer act, positions, slots, kc, vc, out, own_scratch;
  BufferRange scratch;
  std::unique_ptr<Recording> rec;

  FlashRun(const Inputs& in, const AttentionTuning& tuning, SequenceLayout layout = SequenceLayout::Mixed,
           BufferRange shared_scratch = {}) {
    plan = ops::plan_attention(device().info(), in.h, in.tokens(), in.capacity, tuning, layout);
    act = upload(in.qkv, "qkv");
    positions = device().create_buffer(in.tokens() * 4, MemoryKind::HostUpload, "positions");
    write_positions(in.pos);
    if (!in.slot.empty()) slots = upload(in.slot, "slots");
    kc = upload(in.k, "k cache");
    vc = upload(in.v, "v cache");
    out = device_buffer(size_t(in.tokens()) * in.h.n_heads * in.h.head_dim * 4, "attention out");
    if (shared_scratch.buffer) {
      scratch = shared_scratch;
    } else {
      own_scratch = device_buffer(plan.scratch_bytes, "attention scratch");
      scratch = own_scratch.range();
    }
    rec = std::make_unique<Recording>(device());
    ops::AttentionArgs args{ops::QkvView::fused(act.range(), in.tokens(), in.h), positions.range(),
                            {kc.range(), vc.range(), in.capacity, in.sequences}, out.range(), 0, scratch};
    if (!in.slot.empty()) args.slots = slots.range();
    ops::record_attention(*rec, plan, args);
    CHECK(rec->dispatch_count() == 1);  // no fill, no combine pass
  }
  void write_positions(const std::vector<uint32_t>& pos) { std::memcpy(positions.mapped(), pos.data(), pos.size() * 4); }
  // Runs the recording with the output set to NaN first (a merge that never ran shows).
  std::vector<float> run() {
    const size_t n = size_t(plan.tokens) * plan.heads.n_heads * plan.heads.head_dim;
    const std::vector<float> nan(n, std::numeric_limits<float>::quiet_NaN());
    device().upload(out, nan.data(), n * 4);
    rec->submit_and_wait();
    return download<float>(out, n);
  }
};

// Worst |got - want| / bound over all elements (NaN counts as infinitely wrong).
double error_ratio(const Inputs& in, const std::vector<float>& got, const std::vector<float>& want) {
  const auto bound = ref::attention_bound(in.qkv, ops::QkvView::fused({}, in.tokens(), in.h), in.h, in.pos, in.k, in.v,
                                          default_scale(in.h), want, in.ref_slots());
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / bound[i]);
  }
  return worst;
}

std::string describe(const ops::AttentionPlan& p) {
  return "wg " + std::to_string(p.workgroup) + " lanes/key " + std::to_string(p.lanes_per_key) + " KB " +
         std::to_string(p.key_block) + " splits " + std::to_string(p.n_chunks) + " (min " +
         std::to_string(p.min_split) + " keys)";
}

// The counters at the start of the scratch: 0 after every dispatch.
bool counters_zero(BufferRange scratch) {
  std::vector<uint32_t> c(ops::kAttentionCounterBytes / 4);
  Buffer host = device().create_buffer(ops::kAttentionCounterBytes, MemoryKind::HostReadback, "counters");
  Recording copy(device());
  copy.copy({scratch.buffer, scratch.offset, ops::kAttentionCounterBytes}, host.range());
  copy.submit_and_wait();
  std::memcpy(c.data(), host.mapped(), ops::kAttentionCounterBytes);
  for (uint32_t x : c)
    if (x) return false;
  return true;
}

// A workgroup of `n` whole subgroups of this device (the largest size it may run), so that the
// tunings below hold on any device (8-wide on lavapipe, 32 on NVIDIA, 64 on AMD wave64).
uint32_t subgroups(uint32_t n) {
  const DeviceInfo& info = device().info();
  const uint32_t sg = std::max<uint32_t>(info.subgroup_size, 1);
  return n * (info.subgroup_size_control ? sg : std::max(info.max_subgroup_size, sg));
}

// Tunings: one subgroup, several key groups per subgroup, several subgroups per workgroup, odd key
// blocks, many splits.
std::vector<std::pair<std::string, AttentionTuning>> tunings() {
  // (Lanes per key must fit the device's smallest subgroup: the 8-lane tuning needs subgroups of 8.)
  std::vector<std::pair<std::string, AttentionTuning>> all = {
      {"default", {.flash_decode = true}},
      {"4 subgroups, 2 lanes a key", {.workgroup = subgroups(4), .flash_decode = true, .lanes_per_key = 2}},
      {"2 subgroups, KB 3, 7 splits",
       {.workgroup = subgroups(2), .splits = 7, .key_block = 3, .min_split = 5, .flash_decode = true, .lanes_per_key = 4}},
      {"8 subgroups, KB 1, 33 splits",
       {.workgroup = subgroups(8), .splits = 33, .key_block = 1, .min_split = 1, .flash_decode = true, .lanes_per_key = 8}},
  };
  std::erase_if(all, [](const auto& t) { return t.second.lanes_per_key > device().info().min_subgroup_size; });
  return all;
}

}  // namespace

TEST_CASE("flash-decode attention: contexts 1 to 1100, GQA 4/1/20:5, head dims 16/40/64/128, any lane split") {
  ValidationGuard guard;
  if (!can_flash()) return;
  uint32_t seed = 900;
  struct Shape {
    HeadLayout h;
    std::vector<uint32_t> contexts;
  };
  const Shape shapes[] = {
      {{20, 5, 128}, {1, 2, 127, 1000, 1100}},  // 2B4T
      {{8, 2, 40}, {1, 2, 127, 1033}},          // 5 column groups: not a multiple of the lanes per key
      {{4, 4, 64}, {2, 300}},                   // one query head per kv head
      {{4, 1, 16}, {1, 129}},                   // two column groups, 4 query heads
  };
  for (const auto& [name, tuning] : tunings()) {
    CAPTURE(name);
    for (const auto& s : shapes) {
      for (uint32_t ctx : s.contexts) {
        CAPTURE(s.h.head_dim);
        CAPTURE(ctx);
        // recorded for a larger cache than is live: splits past the live length must exit cleanly
        const Inputs in(s.h, {ctx - 1}, ctx + 150, seed++);
        FlashRun run(in, tuning, SequenceLayout::OneSequence);
        REQUIRE(run.plan.flash_decode);
        const double r = error_ratio(in, run.run(), in.reference());
        MESSAGE("flash " << name << " H " << s.h.n_heads << "/" << s.h.n_kv_heads << " hd " << s.h.head_dim
                         << " ctx " << ctx << " (" << describe(run.plan) << "): " << r << " of the bound");
        CHECK(r <= 1.0);
        if (run.plan.split()) CHECK(counters_zero(run.scratch));
      }
    }
  }
  // One lane per key (the whole row per lane), R = 8 with head_dim 256, a sharper softmax, a few
  // one-sequence decode tokens at different positions (T = 3).
  {
    const Inputs in({4, 1, 16}, {700}, 800, seed++);
    FlashRun run(in, {.workgroup = subgroups(1), .splits = 5, .flash_decode = true, .lanes_per_key = 1});
    CHECK(error_ratio(in, run.run(), in.reference()) <= 1.0);
  }
  {
    const Inputs in({8, 1, 256}, {500}, 700, seed++);
    FlashRun run(in, {.workgroup = subgroups(2), .splits = 4, .flash_decode = true});
    CHECK(error_ratio(in, run.run(), in.reference()) <= 1.0);
  }
  {
    Inputs in({20, 5, 128}, {999}, 1000, seed++);
    for (auto& x : in.qkv) x *= 6.0f;
    FlashRun run(in, {.flash_decode = true});
    CHECK(error_ratio(in, run.run(), in.reference()) <= 1.0);
  }
  {
    const Inputs in({20, 5, 128}, {640, 5, 1100}, 1200, seed++);
    FlashRun run(in, {.workgroup = subgroups(4), .splits = 6, .flash_decode = true, .lanes_per_key = 4},
                 SequenceLayout::OneSequence);
    CHECK(error_ratio(in, run.run(), in.reference()) <= 1.0);
  }
}

TEST_CASE("flash-decode attention: the error bound tells a dropped key apart") {
  // Without the last key the reference moves by more than the bound allows (for these shapes): the
  // tolerance is tight enough to catch an off-by-one split or a lost partial.
  for (uint32_t ctx : {2u, 127u, 1100u}) {
    CAPTURE(ctx);
    const Inputs in({20, 5, 128}, {ctx - 1}, ctx, 77 + ctx);
    Inputs shorter = in;
    shorter.pos = {ctx - 2 + (ctx == 1)};
    const auto want = in.reference(), dropped = shorter.reference();
    CHECK(error_ratio(in, dropped, want) > 1.0);
  }
}

TEST_CASE("flash-decode attention: a Mixed batch reads each token's own slot, same bits as alone") {
  ValidationGuard guard;
  if (!can_flash()) return;
  // one token per sequence, slots out of order, lengths 1 to 1041; slot 9 is clamped to the last
  const std::vector<uint32_t> slot{3, 0, 2, 1, 9}, pos{250, 0, 17, 129, 1040};
  uint32_t seed = 950;
  auto some = tunings();
  some.pop_back();  // the slowest one; the first test covers it
  for (const auto& [name, tuning] : some) {
    CAPTURE(name);
    for (const HeadLayout& h : {HeadLayout{20, 5, 128}, HeadLayout{8, 2, 40}}) {
      CAPTURE(h.head_dim);
      const Inputs in(h, pos, 1100, seed++, slot, 4);
      FlashRun batch(in, tuning);
      const auto got = batch.run();
      const auto want = in.reference();
      const double r = error_ratio(in, got, want);
      MESSAGE("Mixed T 5 hd " << h.head_dim << " " << name << " (" << describe(batch.plan) << "): " << r
                              << " of the bound");
      CHECK(r <= 1.0);
      // each token alone (T = 1, its slot): the same plan per token, so the same bits
      const size_t row = size_t(h.n_heads) * h.head_dim;
      const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
      for (uint32_t t = 0; t < in.tokens(); ++t) {
        CAPTURE(t);
        Inputs one = in;
        one.pos = {pos[t]};
        one.slot = {slot[t]};
        one.qkv.assign(in.qkv.begin() + size_t(t) * stride, in.qkv.begin() + size_t(t + 1) * stride);
        FlashRun alone(one, tuning);
        CHECK(alone.plan.n_chunks == batch.plan.n_chunks);
        const auto single = alone.run();
        CHECK(std::memcmp(single.data(), got.data() + t * row, row * 4) == 0);
      }
    }
  }
}

TEST_CASE("flash-decode attention: one recording replayed at growing positions resets its counters") {
  ValidationGuard guard;
  if (!can_flash()) return;
  const HeadLayout h{20, 5, 128};
  // small splits, so that most steps merge partials and the number of live splits changes
  const AttentionTuning tuning{.workgroup = subgroups(2), .splits = 9, .min_split = 16, .flash_decode = true, .lanes_per_key = 4};
  Inputs in(h, {0}, 1200, 1000);
  FlashRun run(in, tuning);
  REQUIRE(run.plan.split());
  for (uint32_t p : {0u, 1u, 2u, 15u, 16u, 17u, 100u, 100u, 127u, 128u, 500u, 1023u, 1199u, 1199u}) {
    CAPTURE(p);
    in.pos = {p};
    run.write_positions(in.pos);
    // a new q each step (the same position twice must still give the new result)
    in.qkv = random_floats(in.qkv.size(), 2000 + p * 7 + uint32_t(in.qkv[0] > 0), -1.0f, 1.0f);
    device().upload(run.act, in.qkv.data(), in.qkv.size() * 4);
    const double r = error_ratio(in, run.run(), in.reference());
    CHECK(r <= 1.0);
    CHECK(counters_zero(run.scratch));
  }
  // A counter left behind (what a missing reset would leave) breaks the merge: the check above sees
  // it; clear_attention_counters() repairs it.
  in.pos = {1000};
  run.write_positions(in.pos);
  const uint32_t stale = 3;
  device().upload(run.own_scratch, &stale, 4, 4);  // kv head 1 of token 0
  CHECK_FALSE(error_ratio(in, run.run(), in.reference()) <= 1.0);
  ops::clear_attention_counters(device(), run.scratch);
  CHECK(error_ratio(in, run.run(), in.reference()) <= 1.0);
  CHECK(counters_zero(run.scratch));
}

TEST_CASE("flash-decode attention shares its scratch with the other kernels' partials") {
  ValidationGuard guard;
  if (!can_flash()) return;
  const HeadLayout h{20, 5, 128};
  const Inputs decode(h, {700}, 1000, 1100);
  const Inputs prefill(h, consecutive(600, 8), 1000, 1200);
  const AttentionTuning flash{.workgroup = subgroups(2), .splits = 6, .flash_decode = true, .lanes_per_key = 4};
  const AttentionTuning tiled{.chunk = 64, .lane_split = false};
  const AttentionTuning lane{.lane_split = true, .splits = 3};
  uint64_t bytes = 0;
  for (const auto& [in, t] : {std::pair{&decode, flash}, std::pair{&prefill, tiled}, std::pair{&prefill, lane}})
    bytes = std::max(bytes, ops::plan_attention(device().info(), h, in->tokens(), in->capacity, t).scratch_bytes);
  // garbage everywhere at first: recording the flash kernel clears its counters
  Buffer scratch = device_buffer(bytes, "shared scratch");
  const std::vector<uint8_t> garbage(bytes, 0xab);
  device().upload(scratch, garbage.data(), bytes);
  FlashRun first(decode, flash, SequenceLayout::OneSequence, scratch.range());
  const auto want = decode.reference();
  CHECK(error_ratio(decode, first.run(), want) <= 1.0);
  // then the tiled split (partials + combine) and the lane-split kernel (partials, and the same
  // counters, which it leaves at 0) write into the same scratch
  for (const auto& t : {tiled, lane}) {
    if (t.lane_split.value_or(false) && !device().info().subgroup_arithmetic) continue;
    auto plan = ops::plan_attention(device().info(), h, prefill.tokens(), prefill.capacity, t);
    REQUIRE(plan.split());
    REQUIRE(plan.partials_offset >= ops::kAttentionCounterBytes);
    Buffer a = upload(prefill.qkv, "qkv"), p = upload(prefill.pos, "positions");
    Buffer kc = upload(prefill.k, "k"), vc = upload(prefill.v, "v");
    Buffer out = device_buffer(size_t(prefill.tokens()) * h.n_heads * h.head_dim * 4, "out");
    Recording rec(device());
    ops::record_attention(rec, plan, {ops::QkvView::fused(a.range(), prefill.tokens(), h), p.range(),
                                      {kc.range(), vc.range(), prefill.capacity}, out.range(), 0, scratch.range()});
    rec.submit_and_wait();
    CHECK(error_ratio(prefill, download<float>(out, prefill.tokens() * size_t(h.n_heads) * h.head_dim),
                      prefill.reference()) <= 1.0);
    CHECK(counters_zero(scratch.range()));  // their partials start after the counters
    CHECK(error_ratio(decode, first.run(), want) <= 1.0);
  }
}

TEST_CASE("flash-decode plans: chosen for decode on GPUs from the device's properties") {
  DeviceInfo gpu = test::h200_like_info("a discrete GPU");
  const HeadLayout h{20, 5, 128};
  // decode: 4 subgroups of 32, 16 lanes per key (q of 4 heads x 8 columns in registers), ~4
  // workgroups per compute unit over the 5 kv heads at a long context
  auto d = ops::plan_attention(gpu, h, 1, 32768);
  CHECK(d.flash_decode);
  CHECK(d.dispatches() == 1);
  CHECK(d.workgroup == 128);
  CHECK(d.lanes_per_key == 16);
  CHECK(d.subgroup_size == 32);
  CHECK(d.n_chunks == (132 * 4 + 4) / 5);
  CHECK(d.scratch_bytes > ops::kAttentionCounterBytes);
  // a short maximum context plans no more splits than it has min_split blocks
  CHECK(ops::plan_attention(gpu, h, 1, 100).n_chunks == 1);
  // batched decode (Mixed) plans as one token; a few one-sequence tokens too; prefill stays tiled
  auto mixed = ops::plan_attention(gpu, h, 16, 4096, {}, SequenceLayout::Mixed);
  CHECK(mixed.flash_decode);
  CHECK(mixed.n_chunks == ops::plan_attention(gpu, h, 1, 4096).n_chunks);
  CHECK(ops::plan_attention(gpu, h, ops::kFlashDecodeMaxTokens, 4096).flash_decode);
  CHECK_FALSE(ops::plan_attention(gpu, h, 64, 4096).flash_decode);
  // the old kernels stay available on any device
  CHECK_FALSE(ops::plan_attention(gpu, h, 1, 4096, {.lane_split = false}).flash_decode);
  CHECK_FALSE(ops::plan_attention(gpu, h, 1, 4096, {.flash_decode = false}).flash_decode);
  // wave64 (AMD GCN-like: 64 only) and a device with 8..32 subgroups and no size control
  DeviceInfo wave64 = gpu;
  wave64.subgroup_size = wave64.min_subgroup_size = wave64.max_subgroup_size = 64;
  wave64.compute_units = 0;  // unknown: assumed 100 for a discrete GPU
  auto w = ops::plan_attention(wave64, h, 1, 32768);
  CHECK(w.workgroup == 256);
  CHECK(w.lanes_per_key == 16);
  CHECK(w.n_chunks == 80);
  DeviceInfo varying = gpu;
  varying.type = VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
  varying.subgroup_size = 32;
  varying.min_subgroup_size = 8;
  varying.subgroup_size_control = false;
  auto v = ops::plan_attention(varying, h, 1, 8192);
  CHECK(v.flash_decode);
  CHECK(v.lanes_per_key == 8);   // a key group fits the smallest subgroup
  CHECK(v.subgroup_size == 0);   // no size can be required
  CHECK(v.max_subgroups == 16);  // 128 lanes in subgroups of 8
  // CPU devices keep the lane-split kernel by default
  DeviceInfo cpu = gpu;
  cpu.type = VK_PHYSICAL_DEVICE_TYPE_CPU;
  cpu.subgroup_size = cpu.min_subgroup_size = cpu.max_subgroup_size = 8;
  CHECK(ops::plan_attention(cpu, h, 1, 4096).lane_split);
  // without subgroup shuffles: the tiled kernel by default, a clear error when forced
  DeviceInfo plain = gpu;
  plain.subgroup_shuffle = false;
  CHECK_FALSE(ops::plan_attention(plain, h, 1, 4096).flash_decode);
  CHECK_THROWS_WITH_AS(ops::plan_attention(plain, h, 1, 4096, {.flash_decode = true}),
                       doctest::Contains("subgroup shuffles"), Error);
  CHECK_THROWS_WITH_AS(ops::plan_attention(gpu, h, 1, 4096, {.flash_decode = true, .lanes_per_key = 3}),
                       doctest::Contains("power of two"), Error);
  CHECK_THROWS_WITH_AS(ops::plan_attention(gpu, h, 1000, 4096, {.flash_decode = true}, SequenceLayout::Mixed),
                       doctest::Contains("arrival counters"), Error);
  CHECK_FALSE(ops::plan_attention(gpu, h, 1000, 4096, {}, SequenceLayout::Mixed).flash_decode);
}
