// The decode attention folded into the fused qkv dispatch (FoldedAttention; fused_linear.comp's
// ATTEND): the workgroup that completes a kv head's q, k and v rows attends for it. Checked against
// the same qkv dispatch followed by attention_flash_decode with the same plan: q|k|v and the KV cache
// bit for bit always, and the attention bit for bit wherever that plan runs the context as one split
// (the engine folds only there), else within the CPU reference's bound (ops_attention/reference.h:
// ref::attention_bound, fp16 K/V, fp32 scores, exp2 and sums). Shapes: this device's, a GPU-like fixed
// one, and the GPU rule at both ends (test::one_token_shapes: 4-subgroup workgroups, lane groups
// wider than this device's subgroups); ternary and fp16 weights; one and three KV slots; NeoX and adjacent pairs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>

#include "common/gpu.h"
#include "common/random.h"
#include "ops_attention/reference.h"
#include "ops_attention/util.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/core/half.h"
#include "runtime/ops/fused_linear.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

constexpr float kEps = 1e-5f;
constexpr uint32_t kCapacity = 160, kCols = 160;

struct Step {
  HeadLayout heads{8, 2, 32};
  RopeForm form = RopeForm::NeoX;
  uint32_t pos = 0, slot = 0, sequences = 1;
  bool fp16 = false;
};

// What one step left: q|k|v, the caches and the attention output.
struct Result {
  std::vector<float> qkv, attn;
  std::vector<uint16_t> k, v;
  bool counters_zero = true;
};

// One token's qkv (+ the attention) on `shape`, the attention planned with `plan`; folded or as the
// separate flash-decode dispatch.
Result run(const Step& st, const FusedLinearShape& shape, const AttentionPlan& plan, bool fold, uint32_t seed) {
  Device& dev = test::device();
  const HeadLayout& h = st.heads;
  const uint32_t rows = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  std::mt19937 rng(seed);
  const auto w = test::random_ternary(rng, size_t(rows) * kCols);
  std::optional<TernaryMatrixGpu> tern;
  std::optional<Fp16MatrixGpu> half;
  if (st.fp16) {
    std::vector<uint16_t> halves(w.size());
    for (size_t i = 0; i < w.size(); ++i) halves[i] = float_to_half(0.2f * w[i]);
    half.emplace(dev, halves, rows, kCols, "qkv");
  } else {
    tern.emplace(dev, pack_ternary(w, rows, kCols, 0.2f), "qkv");
  }
  const auto x = test::random_floats(rng, kCols, -2.0f, 2.0f);
  auto norm = test::random_floats(rng, kCols, 0.5f, 1.5f);
  const size_t cache_halves = size_t(kCapacity) * st.sequences * h.n_kv_heads * h.head_dim;
  // Earlier keys: random, as a prefill would have left them (smaller than q|k|v's, like a real cache).
  const auto k0 = test::random_halves(cache_halves, seed + 1), v0 = test::random_halves(cache_halves, seed + 2);
  Buffer gx = test::upload(x, "x"), gn = test::upload(norm, "norm");
  Buffer gp = test::upload(std::vector<uint32_t>{st.pos}, "positions"), gs = test::upload(std::vector<uint32_t>{st.slot}, "slots");
  Buffer gy = test::upload(std::vector<float>(rows, NAN), "qkv out");
  Buffer kc = test::upload(k0, "k cache"), vc = test::upload(v0, "v cache");
  Buffer out = test::upload(std::vector<float>(size_t(h.n_heads) * h.head_dim, NAN), "attention out");
  Buffer scratch = test::device_buffer(std::max<uint64_t>(plan.scratch_bytes, kAttentionCounterBytes), "scratch");
  clear_attention_counters(dev, scratch.range());
  RopeKvTarget target{h, {10000.0f, st.form}, gp.range(), {kc.range(), vc.range(), kCapacity, st.sequences},
                      st.sequences > 1 ? gs.range() : BufferRange{}};
  if (fold) target.attention = FoldedAttention{plan, out.range(), scratch.range()};
  FusedLinear op(dev, {.shape = shape});
  test::ValidationGuard guard;
  Recording rec(dev);
  const NormedInput in{.x = gx.range(), .norm = gn.range(), .eps = kEps, .tokens = 1};
  if (tern) op.record(rec, *tern, in, {gy.range()}, FusedEpilogue::RopeKvStore, &target);
  else op.record(rec, *half, in, {gy.range()}, FusedEpilogue::RopeKvStore, &target);
  if (!fold)
    record_attention(rec, plan, {.q = QkvView::fused(gy.range(), 1, h), .positions = gp.range(), .cache = target.cache,
                                 .out = out.range(), .scratch = scratch.range(), .slots = target.slots});
  CHECK(rec.dispatch_count() == (fold ? 1u : 2u));
  rec.submit_and_wait();
  Result r;
  r.qkv = test::download<float>(gy, rows);
  r.attn = test::download<float>(out, size_t(h.n_heads) * h.head_dim);
  r.k = test::download<uint16_t>(kc, cache_halves);
  r.v = test::download<uint16_t>(vc, cache_halves);
  const auto counters = test::download<uint32_t>(scratch, kAttentionCounterBytes / 4);
  for (uint32_t c : counters) r.counters_zero = r.counters_zero && c == 0;
  if (fold) {  // a replay (the counters it left serve the next): the same bits again
    rec.submit_and_wait();
    CHECK(test::download<float>(out, r.attn.size()) == r.attn);
  }
  return r;
}

// Splits attention_flash_decode runs a context of `live` keys as (its shader's rule).
uint32_t live_splits(const AttentionPlan& plan, uint32_t live) {
  const uint32_t splits = std::clamp((live + plan.min_split - 1) / plan.min_split, 1u, plan.n_chunks);
  const uint32_t step = plan.workgroup / plan.lanes_per_key * plan.key_block;
  const uint32_t per = ((live + splits - 1) / splits + step - 1) / step * step;
  return (live + per - 1) / per;
}

// Worst |got - reference| / bound of the attention over what the step left in the cache.
double error_ratio(const Step& st, const Result& r) {
  const std::vector<uint32_t> pos{st.pos};
  const test::ref::Slots slots{{st.slot}, kCapacity, st.sequences};
  const float scale = 1.0f / std::sqrt(float(st.heads.head_dim));
  const QkvView view = QkvView::fused({}, 1, st.heads);
  const auto want = test::ref::attention(r.qkv, view, st.heads, pos, r.k, r.v, scale, slots);
  const auto bound = test::ref::attention_bound(r.qkv, view, st.heads, pos, r.k, r.v, scale, want, slots);
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(r.attn[i])) return INFINITY;
    worst = std::max(worst, std::fabs(double(r.attn[i]) - want[i]) / bound[i]);
  }
  return worst;
}

}  // namespace

TEST_CASE("the attention folded into the qkv dispatch gives flash-decode's bits at one split, the reference's beyond") {
  const DeviceInfo& info = test::device().info();
  REQUIRE(info.subgroup_shuffle);
  uint32_t seed = 70;
  for (const FusedLinearShape& shape : test::one_token_shapes()) {
    // The flash-decode plan with the fused layers' workgroup and subgroup size (as the GPU plan
    // plans it); one split up to 8 keys, so that the longest contexts below take several.
    const AttentionPlan plan =
        plan_attention(info, {8, 2, 32}, 1, kCapacity,
                       {.workgroup = shape.workgroup, .min_split = 8, .flash_decode = true,
                        .subgroup_size = shape.required_subgroup_size});
    CAPTURE(shape.workgroup);
    REQUIRE(plan.n_chunks > 1);
    REQUIRE(one_split_keys(plan) == 8);
    REQUIRE(FusedLinear(test::device(), {.shape = shape}).why_no_folded_attention(plan, kCols, FusedLinear::Weights::Ternary) == "");
    REQUIRE(live_splits(plan, kCapacity) > 1);  // the separate attention merges several splits there
    for (const Step st : {Step{.pos = 0}, Step{.pos = 7}, Step{.form = RopeForm::AdjacentPairs, .pos = 5},
                          Step{.pos = 6, .slot = 2, .sequences = 3}, Step{.pos = 6, .fp16 = true},
                          Step{.pos = 30}, Step{.pos = 159, .slot = 1, .sequences = 3}, Step{.pos = 140, .fp16 = true}}) {
      CAPTURE(st.pos);
      CAPTURE(st.sequences);
      CAPTURE(st.fp16);
      ++seed;
      const Result apart = run(st, shape, plan, false, seed), folded = run(st, shape, plan, true, seed);
      CHECK(folded.qkv == apart.qkv);
      CHECK(folded.k == apart.k);
      CHECK(folded.v == apart.v);
      CHECK(folded.counters_zero);
      if (st.pos < one_split_keys(plan)) CHECK(folded.attn == apart.attn);
      CHECK(error_ratio(st, folded) <= 1.0);
      CHECK(error_ratio(st, apart) <= 1.0);
    }
  }
}

TEST_CASE("the folded attention is refused where its plan does not suit the fused layers") {
  Device& dev = test::device();
  const DeviceInfo& info = dev.info();
  FusedLinearShape shape = test::h200_like();
  shape.target_workgroups = 1;
  FusedLinear op(dev, {.shape = shape});
  const HeadLayout h{8, 2, 32};
  const AttentionPlan other_wg = plan_attention(info, h, 1, kCapacity, {.workgroup = 64, .flash_decode = true});
  CHECK(op.why_no_folded_attention(other_wg, kCols, FusedLinear::Weights::Ternary).find("workgroup") !=
        std::string::npos);
  const AttentionPlan two_tokens = plan_attention(info, h, 2, kCapacity, {.workgroup = 128, .flash_decode = true});
  CHECK(op.why_no_folded_attention(two_tokens, kCols, FusedLinear::Weights::Ternary).find("2 tokens") !=
        std::string::npos);
  // record() names the matrix and the reason.
  const uint32_t rows = 12 * 32;
  std::mt19937 rng(90);
  TernaryMatrixGpu w(dev, pack_ternary(test::random_ternary(rng, size_t(rows) * kCols), rows, kCols, 0.2f), "layer 3 qkv");
  Buffer x = test::upload(std::vector<float>(kCols, 1.0f)), y = test::upload(std::vector<float>(rows, 0.0f));
  Buffer p = test::upload(std::vector<uint32_t>{0}), kc = test::device_buffer(kCapacity * 2 * 32 * 2, "k"),
         vc = test::device_buffer(kCapacity * 2 * 32 * 2, "v"), out = test::device_buffer(8 * 32 * 4, "out"),
         scratch = test::device_buffer(kAttentionCounterBytes, "scratch");
  RopeKvTarget target{h, {10000.0f, RopeForm::NeoX}, p.range(), {kc.range(), vc.range(), kCapacity, 1}, {}};
  target.attention = FoldedAttention{other_wg, out.range(), scratch.range()};
  Recording rec(dev);
  CHECK_THROWS_WITH_AS(op.record(rec, w, {.x = x.range(), .norm = x.range(), .tokens = 1}, {y.range()},
                                 FusedEpilogue::RopeKvStore, &target),
                       doctest::Contains("layer 3 qkv"), Error);
}
