// rope, kv_store (plain and fused with rope) and attention (direct and split) against the naive CPU
// references in reference.h, on the machine's Vulkan device with validation on.
//
// Tolerances, each derived in reference.h from the precision Vulkan promises (not from one device):
//  - rope: rope_error_bound (sin/cos absolute error 2^-11, pow's 3 + 2|x| ulp through the angle, the
//    rotation's products), on values in [-1, 1].
//  - kv_store: v (a plain conversion) bit for bit; k after the fused rotation within
//    k_cache_error_ratio (the rotation's bound plus the fp16 rounding of both sides).
//  - attention: K/V in the cache are the same fp16 values the reference reads, softmax in fp32 on
//    the GPU vs double on the CPU: ref::attention_bound (the fp32 scores, exp2's precision in Vulkan
//    and the sums), the flash-decode tests' too.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "common/gpu.h"
#include "ops_attention/reference.h"
#include "ops_attention/util.h"
#include "runtime/core/half.h"
#include "runtime/ops/attention.h"
#include "runtime/ops/kv_cache.h"
#include "runtime/ops/rope.h"

using namespace ternvk;
using namespace ternvk::test;  // the helpers of util.h
using ops::HeadLayout;
using ops::QkvView;
using ops::RopeForm;

TEST_CASE("rope rotates the q and k heads in place, NeoX and adjacent pairs") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  struct Case {
    HeadLayout heads;
    uint32_t tokens, first_pos;
    RopeForm form;
    float theta;
  };
  const Case cases[] = {
      {{4, 4, 64}, 3, 0, RopeForm::NeoX, 10000.0f},
      {{20, 5, 128}, 33, 1000, RopeForm::NeoX, 500000.0f},
      {{8, 2, 40}, 3, 4000, RopeForm::AdjacentPairs, 10000.0f},
      {{4, 1, 16}, 33, 7, RopeForm::AdjacentPairs, 10000.0f},
      {{20, 5, 128}, 2, 4094, RopeForm::NeoX, 500000.0f},
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    CAPTURE(c.heads.head_dim);
    CAPTURE(c.first_pos);
    const uint32_t stride = (c.heads.n_heads + 2 * c.heads.n_kv_heads) * c.heads.head_dim;
    auto host = random_floats(size_t(c.tokens) * stride, seed++, -1.0f, 1.0f);
    auto pos = consecutive(c.first_pos, c.tokens);
    Buffer act = test::upload(host, "qkv");
    Buffer positions = test::upload(pos, "positions");
    const QkvView view = QkvView::fused(act.range(), c.tokens, c.heads);
    Recording rec(dev);
    ops::record_rope(rec, view, c.heads, positions.range(), {c.theta, c.form});
    rec.submit_and_wait();
    auto want = host;
    test::ref::rope(want, view, c.heads, pos, c.theta, c.form);
    auto got = test::download<float>(act, host.size());
    const double tol = test::ref::rope_error_bound(1, 1, c.first_pos + c.tokens);
    Worst w = compare(got, want, tol, 0.0);
    MESSAGE("rope hd " << c.heads.head_dim << " pos " << c.first_pos << ": max err " << w.err << " (" << w.ratio
                       << " of tolerance)");
    CHECK(w.ratio <= 1.0);
    // v columns are untouched, bit for bit
    for (uint32_t t = 0; t < c.tokens; ++t)
      for (uint32_t e = view.v_col; e < stride; ++e) REQUIRE(got[size_t(t) * stride + e] == host[size_t(t) * stride + e]);
  }
}

TEST_CASE("rope on a separate q buffer only") {
  test::ValidationGuard guard;
  const HeadLayout heads{6, 2, 64};
  const uint32_t tokens = 5;
  auto host = random_floats(size_t(tokens) * heads.n_heads * heads.head_dim, 99, -1.0f, 1.0f);
  auto pos = std::vector<uint32_t>{3, 17, 200, 0, 1};  // any positions, not necessarily consecutive
  Buffer q = test::upload(host, "q");
  Buffer positions = test::upload(pos, "positions");
  const QkvView view{q.range(), tokens, heads.n_heads * heads.head_dim, 0, 0, 0};
  Recording rec(test::device());
  ops::record_rope(rec, view, heads, positions.range(), {10000.0f, RopeForm::NeoX}, true, false);
  rec.submit_and_wait();
  auto want = host;
  test::ref::rope(want, view, heads, pos, 10000.0f, RopeForm::NeoX, true, false);
  CHECK(compare(test::download<float>(q, host.size()), want, test::ref::rope_error_bound(1, 1, 200), 0.0).ratio <= 1.0);
}

TEST_CASE("kv_store and the fused rope + kv_store fill the fp16 cache at the tokens' positions") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  for (bool fused : {false, true}) {
    for (RopeForm form : {RopeForm::NeoX, RopeForm::AdjacentPairs}) {
      if (!fused && form == RopeForm::AdjacentPairs) continue;
      CAPTURE(fused);
      const HeadLayout heads{20, 5, 128};
      const uint32_t tokens = 6, capacity = 40;
      const uint32_t stride = (heads.n_heads + 2 * heads.n_kv_heads) * heads.head_dim;
      auto host = random_floats(size_t(tokens) * stride, 7, -1.0f, 1.0f);
      // positions not starting at 0, not in order; the last one is beyond the cache and is skipped
      auto pos = std::vector<uint32_t>{30, 31, 5, 6, 39, 40};
      Buffer act = test::upload(host, "qkv");
      Buffer positions = test::upload(pos, "positions");
      const uint64_t kv_bytes = ops::kv_cache_bytes(capacity, heads.n_kv_heads, heads.head_dim);
      std::vector<uint16_t> sentinel(kv_bytes / 2, 0x7e00);
      Buffer kc = test::upload(sentinel, "k cache"), vc = test::upload(sentinel, "v cache");
      const QkvView view = QkvView::fused(act.range(), tokens, heads);
      const ops::KvCacheLayer cache{kc.range(), vc.range(), capacity};
      Recording rec(dev);
      if (fused) ops::record_rope_kv_store(rec, view, heads, positions.range(), {500000.0f, form}, cache);
      else ops::record_kv_store(rec, view, heads, positions.range(), cache);
      CHECK(rec.dispatch_count() == 1);
      rec.submit_and_wait();

      auto want_act = host;
      if (fused) test::ref::rope(want_act, view, heads, pos, 500000.0f, form);
      std::vector<uint16_t> want_k(sentinel), want_v(sentinel);
      auto stored_pos = pos;
      stored_pos.pop_back();
      QkvView stored = view;
      stored.tokens = tokens - 1;
      test::ref::kv_store(want_act, stored, heads, stored_pos, want_k, want_v);
      auto got_act = test::download<float>(act, host.size());
      // Rotated values within the Vulkan precision of sin/cos and pow (rope_error_bound, |a|, |b| <= 1).
      CHECK(compare(got_act, want_act, fused ? test::ref::rope_error_bound(1, 1, 40) : 0.0, 0.0).ratio <= 1.0);
      auto got_k = test::download<uint16_t>(kc, want_k.size());
      auto got_v = test::download<uint16_t>(vc, want_v.size());
      int worst_k = 0, worst_v = 0;
      size_t inexact = 0;
      for (size_t i = 0; i < want_k.size(); ++i) {
        worst_k = std::max(worst_k, half_ulps(got_k[i], want_k[i]));
        worst_v = std::max(worst_v, half_ulps(got_v[i], want_v[i]));
        inexact += (got_k[i] != want_k[i]) + (got_v[i] != want_v[i]);
      }
      MESSAGE("kv_store fused=" << fused << ": worst k " << worst_k << " ulp, v " << worst_v << " ulp, " << inexact
                                << " halves not bit-equal");
      if (fused) CHECK(test::ref::k_cache_error_ratio(got_k, want_k, heads.head_dim, form, 40) <= 1.0);
      else CHECK(worst_k == 0);  // no rotation: a plain conversion
      CHECK(worst_v == 0);  // v is a plain conversion: rounding the same value the same way
    }
  }
}

namespace {

struct AttnCase {
  HeadLayout heads;
  uint32_t tokens;
  std::vector<uint32_t> pos;
  uint32_t max_context;
  ops::AttentionTuning tuning{};
  float q_range = 1.0f;
};

// Random q/k/v, random cache rows; K/V of the positions in the cache are whatever is there (the
// attention op does not care who wrote them). Returns the worst error ratio.
double run_attention(const AttnCase& c, uint32_t seed, bool expect_split) {
  Device& dev = test::device();
  const HeadLayout& h = c.heads;
  const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  auto act = random_floats(size_t(c.tokens) * stride, seed, -c.q_range, c.q_range);
  const size_t kv_elems = size_t(c.max_context) * h.n_kv_heads * h.head_dim;
  auto kh = random_halves(kv_elems, seed + 1000), vh = random_halves(kv_elems, seed + 2000);
  Buffer a = test::upload(act, "qkv"), positions = test::upload(c.pos, "positions");
  Buffer kc = test::upload(kh, "k cache"), vc = test::upload(vh, "v cache");
  auto plan = ops::plan_attention(dev.info(), h, c.tokens, c.max_context, c.tuning);
  if (c.tuning.lane_split) REQUIRE(plan.lane_split == *c.tuning.lane_split);
  if (c.tuning.texel_loads) REQUIRE(plan.texel_loads == (*c.tuning.texel_loads && plan.lane_split));
  // The lane-split kernel splits by its own rule (expect_split is about the tiled kernel).
  if (!plan.lane_split) CHECK(plan.split() == expect_split);
  Buffer out = device_buffer(size_t(c.tokens) * h.n_heads * h.head_dim * 4, "attention out");
  Buffer scratch = device_buffer(plan.scratch_bytes, "attention scratch");
  ops::AttentionArgs args{QkvView::fused(a.range(), c.tokens, h), positions.range(),
                          {kc.range(), vc.range(), c.max_context}, out.range(), 0, scratch.range()};
  Recording rec(dev);
  ops::record_attention(rec, plan, args);
  CHECK(rec.dispatch_count() == plan.dispatches());
  rec.submit_and_wait();
  const float scale = 1.0f / std::sqrt(float(h.head_dim));
  auto want = test::ref::attention(act, args.q, h, c.pos, kh, vh, scale);
  const auto bound = test::ref::attention_bound(act, args.q, h, c.pos, kh, vh, scale, want);
  auto got = test::download<float>(out, want.size());
  Worst w = compare(got, want, bound);
  // Replayed, with the output spoiled first: a split plan's merge runs again only if the last
  // dispatch left its arrival counters at 0.
  const std::vector<float> spoiled(want.size(), NAN);
  dev.upload(out, spoiled.data(), spoiled.size() * 4);
  rec.submit_and_wait();
  const Worst again = compare(test::download<float>(out, want.size()), want, bound);
  if (!(again.ratio <= w.ratio)) w = again;
  MESSAGE("attention H " << h.n_heads << "/" << h.n_kv_heads << " hd " << h.head_dim << " T " << c.tokens
                         << " last pos " << c.pos.back() << (plan.lane_split ? " lane-split KB " + std::to_string(plan.key_block) + (plan.texel_loads ? " texel" : " storage") : std::string()) << " BT " << plan.tokens_per_group << " qregs " << plan.q_in_registers << " KT "
                         << plan.key_tile << " wg " << plan.workgroup << " chunks " << plan.n_chunks << "x"
                         << plan.chunk << ": max err " << w.err << " (" << w.ratio << " of tolerance)");
  return w.ratio;
}

}  // namespace

TEST_CASE("decode attention: contexts 1 to 1100, GQA 1/4/20:5, head dims 16/40/64/128") {
  test::ValidationGuard guard;
  uint32_t seed = 10;
  const HeadLayout layouts[] = {{4, 4, 64}, {20, 5, 128}, {8, 2, 40}, {4, 1, 16}, {8, 2, 128}};
  // the tiled kernel (GPUs), and the lane-split decode kernel (CPU devices) where the device can
  // run it; both forced so that each is tested whatever the machine's default is
  // (the lane-split one with storage-buffer and with texel-buffer K/V loads)
  std::vector<std::pair<bool, bool>> kernels{{false, false}};
  if (test::device().info().subgroup_arithmetic) {
    kernels.push_back({true, false});
    if (test::device().info().texel_buffer_uint4) kernels.push_back({true, true});
  }
  for (auto [lane_split, texel] : kernels) {
    CAPTURE(lane_split);
    CAPTURE(texel);
    for (const auto& h : layouts) {
      for (uint32_t ctx : {1u, 2u, 17u, 300u, 1100u}) {
        // recorded for a larger maximum context than is live: chunks beyond it must exit cleanly
        const uint32_t max_context = ctx + 150;
        AttnCase c{h, 1, {ctx - 1}, max_context, {.lane_split = lane_split, .texel_loads = texel}};
        CHECK(run_attention(c, seed++, max_context > 256) <= 1.0);
      }
    }
  }
  // a sharper softmax (large scores), and small T through the split path with odd chunking
  CHECK(run_attention({{20, 5, 128}, 1, {999}, 1000, {}, 6.0f}, seed++, true) <= 1.0);
  CHECK(run_attention({{20, 5, 128}, 3, {640, 641, 642}, 1200, {.key_tile = 16, .chunk = 48, .lane_split = false}}, seed++, true) <= 1.0);
  CHECK(run_attention({{8, 8, 64}, 2, {70, 71}, 100, {.workgroup = 8, .chunk = 32, .lane_split = false}}, seed++, true) <= 1.0);
  // both ways of holding a decode token's q (registers: CPU devices; shared memory: GPUs)
  for (bool regs : {false, true}) {
    CHECK(run_attention({{20, 5, 128}, 1, {700}, 800, {.q_in_registers = regs, .lane_split = false}}, seed++, true) <= 1.0);
    CHECK(run_attention({{8, 2, 40}, 1, {30}, 40, {.q_in_registers = regs, .lane_split = false}}, seed++, false) <= 1.0);
  }
}

TEST_CASE("lane-split decode attention: splits, key blocks, several tokens, merge in one dispatch") {
  test::ValidationGuard guard;
  if (!test::device().info().subgroup_arithmetic) return;
  uint32_t seed = 300;
  // storage-buffer and texel-buffer K/V loads (attention_decode / attention_decode_texel)
  std::vector<bool> loads{false};
  if (test::device().info().texel_buffer_uint4) loads.push_back(true);
  for (bool texel : loads) {
    CAPTURE(texel);
    auto ls = [texel](uint32_t splits, uint32_t kb = 0) {
      return ops::AttentionTuning{.lane_split = true, .splits = splits, .key_block = kb, .texel_loads = texel};
    };
    // one split (no partials), many splits, more splits than live blocks, odd key blocks
    for (uint32_t splits : {1u, 2u, 7u, 33u})
      for (uint32_t kb : {1u, 4u, 8u, 16u}) {
        CHECK(run_attention({{20, 5, 128}, 1, {1000}, 1040, ls(splits, kb)}, seed++, false) <= 1.0);
        CHECK(run_attention({{8, 2, 40}, 1, {9}, 300, ls(splits, kb)}, seed++, false) <= 1.0);
      }
    // head dims below and above 8 column groups per lane; R = 1 and R = 8
    CHECK(run_attention({{4, 4, 16}, 1, {63}, 64, ls(3)}, seed++, false) <= 1.0);
    CHECK(run_attention({{8, 1, 256}, 1, {500}, 700, ls(4)}, seed++, false) <= 1.0);
    CHECK(run_attention({{2, 2, 136}, 1, {77}, 90, ls(5, 4)}, seed++, false) <= 1.0);
    // a sharper softmax, several tokens at different positions (a few decode tokens at once)
    CHECK(run_attention({{20, 5, 128}, 1, {4094}, 4095, ls(0)}, seed++, false) <= 1.0);
    CHECK(run_attention({{20, 5, 128}, 1, {999}, 1000, ls(0), 6.0f}, seed++, false) <= 1.0);
    CHECK(run_attention({{20, 5, 128}, 3, {640, 5, 1100}, 1200, ls(0)}, seed++, false) <= 1.0);
    CHECK(run_attention({{8, 2, 64}, 8, {0, 1, 2, 3, 100, 101, 102, 103}, 104, ls(3, 4)}, seed++, false) <= 1.0);
    // tokens x kv heads beyond the scratch's head: the counters follow the partials, filled before
    // each dispatch (520 x 8 > kAttentionCounterBytes / 4)
    {
      std::vector<uint32_t> pos(520);
      for (uint32_t t = 0; t < pos.size(); ++t) pos[t] = t % 37;
      ops::AttentionTuning two = ls(2, 4);
      two.min_split = 4;  // most tokens' keys in both splits: the merge runs
      const auto plan = ops::plan_attention(test::device().info(), {8, 8, 16}, 520, 40, two);
      CHECK(plan.counters_offset > 0);
      CHECK(run_attention({{8, 8, 16}, 520, pos, 40, two}, seed++, false) <= 1.0);
      const auto small = ops::plan_attention(test::device().info(), {8, 8, 16}, 4, 40, two);
      CHECK(small.counters_offset == 0);
    }
    // a long context: loop iterations per invocation stay within Mesa 22.3's 65535 (results would be
    // silently incomplete); one split covering all 16384 keys of a plan at the budget
    CHECK(run_attention({{4, 1, 64}, 1, {16383}, 16384, ls(1)}, seed++, false) <= 1.0);
  }
}

TEST_CASE("lane-split decode attention reads q rows at any float offset") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  if (!dev.info().subgroup_arithmetic) return;
  const HeadLayout h{8, 2, 64};
  const uint32_t tokens = 2, max_context = 200, q_col = 3, stride = h.n_heads * h.head_dim + 5;
  auto q = random_floats(size_t(tokens) * stride, 77, -1.0f, 1.0f);
  const size_t kv_elems = size_t(max_context) * h.n_kv_heads * h.head_dim;
  auto kh = random_halves(kv_elems, 78), vh = random_halves(kv_elems, 79);
  std::vector<uint32_t> pos{150, 199};
  Buffer qb = test::upload(q, "q"), positions = test::upload(pos, "positions");
  Buffer kc = test::upload(kh, "k"), vc = test::upload(vh, "v");
  const QkvView view{qb.range(), tokens, stride, q_col, 0, 0};
  for (uint32_t min_split : {1u, 64u, 1000u})
  for (bool texel : {false, true}) {  // texel K/V with q read as scalars (binding 7 unused)
    if (texel && !dev.info().texel_buffer_uint4) continue;
    CAPTURE(min_split);
    CAPTURE(texel);
    auto plan = ops::plan_attention(dev.info(), h, tokens, max_context,
                                    {.lane_split = true, .splits = 4, .min_split = min_split, .texel_loads = texel});
    Buffer out = device_buffer(size_t(tokens) * h.n_heads * h.head_dim * 4, "out");
    Buffer scratch = device_buffer(plan.scratch_bytes, "scratch");
    Recording rec(dev);
    ops::record_attention(rec, plan, {view, positions.range(), {kc.range(), vc.range(), max_context}, out.range(), 0,
                                      scratch.range()});
    rec.submit_and_wait();
    auto want = test::ref::attention(q, view, h, pos, kh, vh, 1.0f / std::sqrt(64.0f));
    const auto bound = test::ref::attention_bound(q, view, h, pos, kh, vh, 1.0f / std::sqrt(64.0f), want);
    CHECK(compare(test::download<float>(out, want.size()), want, bound).ratio <= 1.0);
  }
}

TEST_CASE("attention plans keep every invocation's loops within the budget") {
  const DeviceInfo& info = test::device().info();
  // the tiled kernel splits a long prefill context instead of looping past the budget
  auto p = ops::plan_attention(info, {20, 5, 128}, 64, 65536, {.lane_split = false});
  CHECK(p.split());
  CHECK(p.chunk < 65536);
  if (info.subgroup_arithmetic) {
    auto d = ops::plan_attention(info, {20, 5, 128}, 1, 1u << 20, {.lane_split = true, .splits = 1});
    CHECK(d.n_chunks > 1);  // raised from 1: a single split would loop 131072 times
  }
}

TEST_CASE("prefill attention: T 3 and 33, causal, after earlier cached positions") {
  test::ValidationGuard guard;
  uint32_t seed = 100;
  // both kernels (the tiled one with token blocks; the lane-split one, default on CPU devices)
  std::vector<bool> kernels{false};
  if (test::device().info().subgroup_arithmetic) kernels.push_back(true);
  for (bool lane_split : kernels) {
    CAPTURE(lane_split);
    auto run = [&](AttnCase c, bool expect_split) {
      c.tuning.lane_split = lane_split;
      return run_attention(c, seed++, expect_split);
    };
    // direct path (no split), blocks of tokens not dividing T
    CHECK(run({{20, 5, 128}, 33, consecutive(0, 33), 33}, false) <= 1.0);
    CHECK(run({{20, 5, 128}, 33, consecutive(500, 33), 600}, false) <= 1.0);
    CHECK(run({{4, 4, 64}, 33, consecutive(7, 33), 40, {.tokens_per_group = 5}}, false) <= 1.0);
    CHECK(run({{8, 2, 40}, 3, consecutive(2, 3), 5}, false) <= 1.0);
    CHECK(run({{4, 1, 16}, 33, consecutive(100, 33), 140, {.key_tile = 8}}, false) <= 1.0);
    // prefill through the split path (a long prompt continuation split over the context)
    CHECK(run({{20, 5, 128}, 33, consecutive(1000, 33), 1100, {.chunk = 256, .splits = 3}}, true) <= 1.0);
  }
}

TEST_CASE("a decode recording made once serves every step: positions written before each replay") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  const HeadLayout h{20, 5, 128};
  const uint32_t max_context = 1200, stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  auto act = random_floats(stride, 5, -1.0f, 1.0f);
  const size_t kv_elems = size_t(max_context) * h.n_kv_heads * h.head_dim;
  auto kh = random_halves(kv_elems, 6), vh = random_halves(kv_elems, 8);
  Buffer a = test::upload(act, "qkv"), kc = test::upload(kh, "k"), vc = test::upload(vh, "v");
  Buffer positions = dev.create_buffer(4, MemoryKind::HostUpload, "positions");
  for (bool lane_split : {false, true}) {
    CAPTURE(lane_split);
    if (lane_split && !dev.info().subgroup_arithmetic) continue;
    auto plan = ops::plan_attention(dev.info(), h, 1, max_context, {.lane_split = lane_split});
    REQUIRE(plan.split());
    Buffer out = device_buffer(h.n_heads * h.head_dim * 4, "out"), scratch = device_buffer(plan.scratch_bytes, "scratch");
    Recording rec(dev);
    ops::record_attention(rec, plan, {QkvView::fused(a.range(), 1, h), positions.range(), {kc.range(), vc.range(), max_context},
                                      out.range(), 0, scratch.range()});
    for (uint32_t p : {0u, 255u, 256u, 257u, 16u, 1199u}) {
      CAPTURE(p);
      dev.upload(positions, &p, 4);
      rec.submit_and_wait();
      auto want = test::ref::attention(act, QkvView::fused({}, 1, h), h, {p}, kh, vh, 1.0f / std::sqrt(128.0f));
      const auto bound =
          test::ref::attention_bound(act, QkvView::fused({}, 1, h), h, {p}, kh, vh, 1.0f / std::sqrt(128.0f), want);
      CHECK(compare(test::download<float>(out, want.size()), want, bound).ratio <= 1.0);
    }
  }
}

TEST_CASE("prefill then decode in one cache: rope + kv_store + attention end to end") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  const HeadLayout h{20, 5, 128};
  const float theta = 500000.0f;
  const uint32_t capacity = 512, prompt = 33, stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  const uint32_t start = 3;  // the prompt continues a sequence: rows 0..2 were cached earlier
  const uint64_t kv_bytes = ops::kv_cache_bytes(capacity, h.n_kv_heads, h.head_dim);
  auto early_k = random_halves(kv_bytes / 2, 50), early_v = random_halves(kv_bytes / 2, 51);
  Buffer kc = test::upload(early_k, "k cache"), vc = test::upload(early_v, "v cache");
  const ops::KvCacheLayer cache{kc.range(), vc.range(), capacity};
  std::vector<uint16_t> ref_k = early_k, ref_v = early_v;

  auto step = [&](uint32_t tokens, uint32_t first, uint32_t seed) {
    auto act = random_floats(size_t(tokens) * stride, seed, -1.0f, 1.0f);
    auto pos = consecutive(first, tokens);
    Buffer a = test::upload(act, "qkv"), positions = test::upload(pos, "positions");
    auto plan = ops::plan_attention(dev.info(), h, tokens, capacity);
    Buffer out = device_buffer(size_t(tokens) * h.n_heads * h.head_dim * 4, "out");
    Buffer scratch = device_buffer(plan.scratch_bytes, "scratch");
    const QkvView view = QkvView::fused(a.range(), tokens, h);
    Recording rec(dev);
    ops::record_rope_kv_store(rec, view, h, positions.range(), {theta, RopeForm::NeoX}, cache);
    ops::record_attention(rec, plan, {view, positions.range(), cache, out.range(), 0, scratch.range()});
    rec.submit_and_wait();
    // The rotation and the store within their own bounds (as the rope test checks them): q and k in
    // place, k in the cache, v stored as it is.
    auto want_act = act;
    test::ref::rope(want_act, view, h, pos, theta, RopeForm::NeoX);
    auto want_k = ref_k, want_v = ref_v;
    test::ref::kv_store(want_act, view, h, pos, want_k, want_v);
    const auto got_act = test::download<float>(a, act.size());
    CHECK(compare(got_act, want_act, test::ref::rope_error_bound(1, 1, first + tokens), 0.0).ratio <= 1.0);
    ref_k = test::download<uint16_t>(kc, want_k.size());
    ref_v = test::download<uint16_t>(vc, want_v.size());
    CHECK(test::ref::k_cache_error_ratio(ref_k, want_k, h.head_dim, RopeForm::NeoX, first + tokens) <= 1.0);
    CHECK(ref_v == want_v);
    // The attention on the q and K the device rotated (a conforming device's sin and cos may move them
    // by more than the attention's own rounding): its bound assumes the same inputs.
    auto want = test::ref::attention(got_act, view, h, pos, ref_k, ref_v, 1.0f / std::sqrt(128.0f));
    const auto bound = test::ref::attention_bound(got_act, view, h, pos, ref_k, ref_v, 1.0f / std::sqrt(128.0f), want);
    Worst w = compare(test::download<float>(out, want.size()), want, bound);
    MESSAGE("end to end T " << tokens << " at " << first << " (split " << plan.split() << "): max err " << w.err);
    return w.ratio;
  };
  CHECK(step(prompt, start, 60) <= 1.0);
  for (uint32_t i = 0; i < 3; ++i) CHECK(step(1, start + prompt + i, 61 + i) <= 1.0);
}

TEST_CASE("attention and rope shapes they cannot run are clear errors") {
  const DeviceInfo& info = test::device().info();
  CHECK_THROWS_WITH_AS(ops::plan_attention(info, {20, 6, 128}, 1, 64), doctest::Contains("multiple of n_kv_heads"), Error);
  CHECK_THROWS_WITH_AS(ops::plan_attention(info, {4, 4, 36}, 1, 64), doctest::Contains("multiple of 8"), Error);
  Buffer b = device_buffer(4096, "b");
  Recording rec(test::device());
  CHECK_THROWS_WITH_AS(ops::record_rope(rec, {b.range(), 1, 144, 0, 72, 0}, {4, 4, 18}, b.range(), {}),
                       doctest::Contains("multiple of 4"), Error);
  auto plan = ops::plan_attention(info, {4, 4, 64}, 1, 1000);
  CHECK_THROWS_WITH_AS(ops::record_attention(rec, plan, {QkvView::fused(b.range(), 1, {4, 4, 64}), b.range(),
                                                         {b.range(), b.range(), 100}, b.range(), 0, b.range()}),
                       doctest::Contains("KV cache holds 100"), Error);
}
