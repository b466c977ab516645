// KV cache sequence slots (kv_cache.h): the store lands at row slot * capacity + position and
// nowhere else; attention reads only the rows of its token's own slot, for every kernel the device
// can run, in Mixed batches (one decode token per sequence) and in OneSequence prefill into one
// slot; a token gives the same bits alone or in a batch. Tolerances as in test_attention.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "common/gpu.h"
#include "ops_attention/reference.h"
#include "ops_attention/util.h"
#include "runtime/ops/attention.h"
#include "runtime/ops/kv_cache.h"
#include "runtime/ops/rope.h"

using namespace ternvk;
using namespace ternvk::test;
using ops::AttentionTuning;
using ops::HeadLayout;
using ops::QkvView;
using ops::SequenceLayout;

namespace {

constexpr uint16_t kGuard = 0x7bff;  // fp16 65504: never a value the tests store
constexpr uint16_t kNaN = 0x7e00;

// K and V of `sequences` slots of `capacity` rows, each inside a larger buffer whose bytes before
// and after the range the ops get are guards that must stay untouched. `k`/`v` mirror the ranges.
struct SlotCache {
  HeadLayout heads;
  uint32_t capacity, sequences;
  size_t halves, pad;
  std::vector<uint16_t> k, v;
  Buffer kb, vb;

  SlotCache(const HeadLayout& h, uint32_t cap, uint32_t seqs, uint32_t seed)
      : heads(h), capacity(cap), sequences(seqs), halves(size_t(cap) * seqs * h.n_kv_heads * h.head_dim),
        pad(std::max<uint64_t>(256, device().info().min_storage_buffer_offset_alignment) / 2),
        k(random_halves(halves, seed)), v(random_halves(halves, seed + 1)) {
    kb = device_buffer((halves + 2 * pad) * 2, "k cache");
    vb = device_buffer((halves + 2 * pad) * 2, "v cache");
    write();
  }
  size_t row_halves() const { return size_t(heads.n_kv_heads) * heads.head_dim; }
  ops::KvCacheLayer layer() const {
    return {kb.range(pad * 2, halves * 2), vb.range(pad * 2, halves * 2), capacity, sequences};
  }
  // Uploads k and v (with the guards) into the same buffers, so recordings stay valid.
  void write() {
    for (auto [host, buf] : {std::pair{&k, &kb}, std::pair{&v, &vb}}) {
      std::vector<uint16_t> all(pad, kGuard);
      all.insert(all.end(), host->begin(), host->end());
      all.insert(all.end(), pad, kGuard);
      device().upload(*buf, all.data(), all.size() * 2);
    }
  }
  // The ranges as the GPU left them; the guards around them must be intact.
  std::pair<std::vector<uint16_t>, std::vector<uint16_t>> read() const {
    std::pair<std::vector<uint16_t>, std::vector<uint16_t>> out;
    for (auto [host, buf] : {std::pair{&out.first, &kb}, std::pair{&out.second, &vb}}) {
      auto all = download<uint16_t>(*buf, halves + 2 * pad);
      for (size_t i = 0; i < pad; ++i) {
        REQUIRE_MESSAGE(all[i] == kGuard, "guard half " << i << " before the cache range was written");
        REQUIRE_MESSAGE(all[pad + halves + i] == kGuard, "guard half " << i << " after the cache range was written");
      }
      host->assign(all.begin() + pad, all.begin() + pad + halves);
    }
    return out;
  }
  // NaN in every row no token of the batch may read (other slots, and rows beyond each position).
  void poison_except(const std::vector<uint32_t>& slots, const std::vector<uint32_t>& pos) {
    std::vector<bool> live(size_t(capacity) * sequences, false);
    for (size_t t = 0; t < slots.size(); ++t)
      for (uint32_t p = 0; p <= pos[t]; ++p) live[size_t(std::min(slots[t], sequences - 1)) * capacity + p] = true;
    for (size_t r = 0; r < live.size(); ++r)
      if (!live[r])
        for (size_t e = 0; e < row_halves(); ++e) k[r * row_halves() + e] = v[r * row_halves() + e] = kNaN;
    write();
  }
};

// Compares the fp16 caches: K within the Vulkan precision of its rotation (k_cache_error_ratio;
// rows beyond the positions written hold the same untouched values on both sides), V exact (a
// plain conversion).
void check_cache(const std::vector<uint16_t>& got_k, const std::vector<uint16_t>& got_v,
                 const std::vector<uint16_t>& want_k, const std::vector<uint16_t>& want_v, uint32_t head_dim,
                 uint32_t max_pos) {
  REQUIRE(got_k.size() == want_k.size());
  size_t v_diff = 0;
  for (size_t i = 0; i < want_k.size(); ++i) v_diff += got_v[i] != want_v[i];
  CHECK(ref::k_cache_error_ratio(got_k, want_k, head_dim, ops::RopeForm::NeoX, max_pos) <= 1.0);
  CHECK(v_diff == 0);
}

float default_scale(const HeadLayout& h) { return 1.0f / std::sqrt(float(h.head_dim)); }

bool can_lane_split() { return device().info().subgroup_arithmetic; }
bool can_texel() { return device().info().texel_buffer_uint4; }

// One attention step recorded once: q rows (fused QKV), positions and slots of `tokens` tokens.
struct AttentionRun {
  ops::AttentionPlan plan;
  Buffer act, positions, slots, out, scratch;
  std::unique_ptr<Recording> rec;

  AttentionRun(const HeadLayout& h, const std::vector<float>& qkv, const std::vector<uint32_t>& pos,
               const std::vector<uint32_t>& slot, const SlotCache& cache, const AttentionTuning& tuning,
               SequenceLayout layout) {
    const uint32_t tokens = uint32_t(pos.size());
    plan = ops::plan_attention(device().info(), h, tokens, cache.capacity, tuning, layout);
    if (tuning.lane_split) REQUIRE(plan.lane_split == *tuning.lane_split);
    if (tuning.texel_loads) REQUIRE(plan.texel_loads == (*tuning.texel_loads && plan.lane_split));
    act = upload(qkv, "qkv");
    positions = upload(pos, "positions");
    slots = upload(slot, "slots");
    out = device_buffer(size_t(tokens) * h.n_heads * h.head_dim * 4, "attention out");
    scratch = device_buffer(plan.scratch_bytes, "attention scratch");
    rec = std::make_unique<Recording>(device());
    ops::AttentionArgs args{QkvView::fused(act.range(), tokens, h), positions.range(), cache.layer(), out.range(), 0,
                            scratch.range()};
    args.slots = slots.range();
    ops::record_attention(*rec, plan, args);
    CHECK(rec->dispatch_count() == plan.dispatches());
  }
  std::vector<float> run() {
    rec->submit_and_wait();
    return download<float>(out, size_t(plan.tokens) * plan.heads.n_heads * plan.heads.head_dim);
  }
};

std::string describe(const ops::AttentionPlan& p) {
  return (p.lane_split ? "lane-split KB " + std::to_string(p.key_block) + (p.texel_loads ? " texel" : " storage")
                       : "tiled BT " + std::to_string(p.tokens_per_group)) +
         " chunks " + std::to_string(p.n_chunks) + "x" + std::to_string(p.chunk);
}

}  // namespace

TEST_CASE("kv_store with slots writes row slot * capacity + position and nowhere else") {
  ValidationGuard guard;
  const HeadLayout h{8, 2, 64};
  const uint32_t capacity = 37, sequences = 4, tokens = 8;
  const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  // out of order; slot 7 (>= sequences) and position 37 (>= capacity) are skipped
  const std::vector<uint32_t> slot{2, 0, 3, 2, 1, 7, 1, 0}, pos{5, 36, 0, 6, 20, 3, 37, 0};
  uint32_t seed = 500;
  for (bool fused : {false, true}) {
    for (bool with_slots : {true, false}) {
      CAPTURE(fused);
      CAPTURE(with_slots);
      auto host = random_floats(size_t(tokens) * stride, seed++, -1.0f, 1.0f);
      auto used_pos = pos;
      if (!with_slots) used_pos[7] = 12;  // all in slot 0: no two tokens on one row
      SlotCache cache(h, capacity, sequences, seed++);
      Buffer act = upload(host, "qkv"), positions = upload(used_pos, "positions"), slots = upload(slot, "slots");
      const QkvView view = QkvView::fused(act.range(), tokens, h);
      const BufferRange slot_range = with_slots ? slots.range() : BufferRange{};
      Recording rec(device());
      if (fused) ops::record_rope_kv_store(rec, view, h, positions.range(), {500000.0f}, cache.layer(), slot_range);
      else ops::record_kv_store(rec, view, h, positions.range(), cache.layer(), slot_range);
      CHECK(rec.dispatch_count() == 1);
      rec.submit_and_wait();

      auto want_act = host;
      if (fused) ref::rope(want_act, view, h, used_pos, 500000.0f, ops::RopeForm::NeoX);
      auto want_k = cache.k, want_v = cache.v;
      ref::kv_store(want_act, view, h, used_pos, want_k, want_v,
                    {with_slots ? slot : std::vector<uint32_t>{}, capacity, sequences});
      auto [got_k, got_v] = cache.read();
      check_cache(got_k, got_v, want_k, want_v, h.head_dim, capacity);
      // the rows that must have changed did (the reference is not trivially the initial cache)
      size_t changed = 0;
      for (size_t i = 0; i < want_v.size(); ++i) changed += got_v[i] != cache.v[i];
      CHECK(changed > 0);
    }
  }
}

TEST_CASE("Mixed decode batch: each token attends to its own slot only, with every kernel") {
  ValidationGuard guard;
  struct Config {
    std::string name;
    AttentionTuning tuning;
    bool bit_equal_alone;  // same plan parameters for T=1 and the batch
  };
  std::vector<Config> configs{
      {"tiled, no split", {.chunk = 512, .lane_split = false}, true},
      {"tiled, split", {.chunk = 64, .lane_split = false}, true},
      {"tiled, default", {.lane_split = false}, true},
      {"tiled, 4 tokens of different slots per block", {.tokens_per_group = 4, .chunk = 128, .lane_split = false}, true},
  };
  if (can_lane_split()) {
    configs.push_back({"lane-split, 1 split", {.lane_split = true, .splits = 1}, true});
    configs.push_back({"lane-split, 3 splits", {.lane_split = true, .splits = 3, .key_block = 4, .min_split = 16}, true});
    // the default split count depends on T (enough workgroups for the device): not the same bits
    configs.push_back({"lane-split, default", {.lane_split = true}, false});
    // both loads of the K/V cache: storage buffers, and uniform texel buffers (attention_decode_texel;
    // the default on CPU devices)
    for (bool texel : {false, true}) {
      if (texel && !can_texel()) continue;
      const std::string loads = texel ? "texel" : "storage";
      configs.push_back({"lane-split " + loads + ", 1 split", {.lane_split = true, .splits = 1, .texel_loads = texel}, true});
      configs.push_back({"lane-split " + loads + ", 3 splits",
                         {.lane_split = true, .splits = 3, .key_block = 4, .min_split = 16, .texel_loads = texel},
                         true});
    }
  }
  const uint32_t capacity = 300, sequences = 4;
  // one token per sequence, not in slot order, positions not aligned to any tile; the last token's
  // slot 9 is out of range and reads the last slot (documented clamp)
  const std::vector<uint32_t> slot{3, 0, 2, 1, 9}, pos{250, 0, 17, 129, 40};
  const std::vector<uint32_t> clamped{3, 0, 2, 1, 3};
  const uint32_t T = uint32_t(slot.size());
  uint32_t seed = 600;
  for (const HeadLayout& h : {HeadLayout{20, 5, 128}, HeadLayout{8, 2, 40}}) {
    const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
    for (const auto& cfg : configs) {
      CAPTURE(cfg.name);
      CAPTURE(h.head_dim);
      SlotCache cache(h, capacity, sequences, seed++);
      auto qkv = random_floats(size_t(T) * stride, seed++, -1.0f, 1.0f);
      AttentionRun batch(h, qkv, pos, slot, cache, cfg.tuning, SequenceLayout::Mixed);
      auto got = batch.run();
      auto want = ref::attention(qkv, QkvView::fused({}, T, h), h, pos, cache.k, cache.v, default_scale(h),
                                 {clamped, capacity, sequences});
      const auto bound = ref::attention_bound(qkv, QkvView::fused({}, T, h), h, pos, cache.k, cache.v,
                                              default_scale(h), want, {clamped, capacity, sequences});
      Worst w = compare(got, want, bound);
      MESSAGE("Mixed T " << T << " hd " << h.head_dim << " " << cfg.name << " (" << describe(batch.plan)
                         << "): max err " << w.err << " (" << w.ratio << " of tolerance)");
      CHECK(w.ratio <= 1.0);

      // Each token alone (T=1, its slot) gives the same result, bit for bit where the plans agree.
      const size_t row = size_t(h.n_heads) * h.head_dim;
      for (uint32_t t = 0; t < T; ++t) {
        CAPTURE(t);
        std::vector<float> q1(qkv.begin() + size_t(t) * stride, qkv.begin() + size_t(t + 1) * stride);
        AttentionRun alone(h, q1, {pos[t]}, {slot[t]}, cache, cfg.tuning, SequenceLayout::Mixed);
        auto one = alone.run();
        const std::vector<float> batched(got.begin() + t * row, got.begin() + (t + 1) * row);
        if (cfg.bit_equal_alone) {
          CHECK(std::memcmp(one.data(), batched.data(), row * 4) == 0);
        } else {
          const std::vector<float> want_t(want.begin() + t * row, want.begin() + (t + 1) * row);
          const std::vector<double> bound_t(bound.begin() + t * row, bound.begin() + (t + 1) * row);
          CHECK(compare(one, want_t, bound_t).ratio <= 1.0);
        }
      }

      // Rows no token may read (other slots, rows past each position) turned to NaN: same bits.
      cache.poison_except(clamped, pos);
      CHECK(std::memcmp(batch.run().data(), got.data(), got.size() * 4) == 0);
    }
  }
}

TEST_CASE("OneSequence prefill into slot 2 of 3, then a Mixed decode step: rope + kv_store + attention") {
  ValidationGuard guard;
  const HeadLayout h{20, 5, 128};
  const float theta = 500000.0f;
  const uint32_t capacity = 64, sequences = 3, prompt = 13, start = 5;  // slot 2 rows 0..4 cached earlier
  const uint32_t stride = (h.n_heads + 2 * h.n_kv_heads) * h.head_dim;
  // (each config's inputs come from its own seeds: runs with the same seed see the same q/k/v)
  struct Config {
    std::string name;
    AttentionTuning tuning;
    uint32_t seed;
  };
  std::vector<Config> configs{
      {"tiled, default", {.lane_split = false}, 700},
      {"tiled, split", {.key_tile = 16, .chunk = 16, .lane_split = false}, 702},
      {"tiled, 5 tokens per block", {.tokens_per_group = 5, .lane_split = false}, 704},
  };
  if (can_lane_split()) {
    configs.push_back({"lane-split, default", {.lane_split = true}, 706});
    configs.push_back({"lane-split, 2 splits", {.lane_split = true, .splits = 2, .min_split = 4}, 708});
    // K/V written by rope_kv_store (storage) and read as texel views in the same recording: the
    // automatic barrier must see the texel binding as a read of the cache buffer
    for (bool texel : {false, true}) {
      if (texel && !can_texel()) continue;
      const std::string loads = texel ? "texel" : "storage";
      configs.push_back({"lane-split " + loads + ", default", {.lane_split = true, .texel_loads = texel}, 706});
      configs.push_back({"lane-split " + loads + ", 2 splits",
                         {.lane_split = true, .splits = 2, .min_split = 4, .texel_loads = texel}, 708});
    }
  }
  for (const auto& [name, tuning, first_seed] : configs) {
    CAPTURE(name);
    uint32_t seed = first_seed;
    SlotCache cache(h, capacity, sequences, 690);  // the same earlier contents for every config
    auto ref_k = cache.k, ref_v = cache.v;
    auto step = [&](const std::vector<uint32_t>& pos, const std::vector<uint32_t>& slot, SequenceLayout layout) {
      const uint32_t T = uint32_t(pos.size());
      auto qkv = random_floats(size_t(T) * stride, seed++, -1.0f, 1.0f);
      Buffer act = upload(qkv, "qkv"), positions = upload(pos, "positions"), slots = upload(slot, "slots");
      auto plan = ops::plan_attention(device().info(), h, T, capacity, tuning, layout);
      Buffer out = device_buffer(size_t(T) * h.n_heads * h.head_dim * 4, "out");
      Buffer scratch = device_buffer(plan.scratch_bytes, "scratch");
      const QkvView view = QkvView::fused(act.range(), T, h);
      Recording rec(device());
      ops::record_rope_kv_store(rec, view, h, positions.range(), {theta}, cache.layer(), slots.range());
      ops::AttentionArgs args{view, positions.range(), cache.layer(), out.range(), 0, scratch.range()};
      args.slots = slots.range();
      ops::record_attention(rec, plan, args);
      rec.submit_and_wait();

      const ref::Slots ref_slots{slot, capacity, sequences};
      ref::rope(qkv, view, h, pos, theta, ops::RopeForm::NeoX);
      ref::kv_store(qkv, view, h, pos, ref_k, ref_v, ref_slots);
      auto [got_k, got_v] = cache.read();
      check_cache(got_k, got_v, ref_k, ref_v, h.head_dim, capacity);  // other slots and rows untouched
      // Attention is checked on the q, K and V the GPU rotated and stored (within rope_error_bound of
      // ours, which check_cache allows): ref::attention_bound assumes the same inputs.
      ref_k = got_k;
      ref_v = got_v;
      const auto got_qkv = download<float>(act, qkv.size());
      CHECK(compare(got_qkv, qkv, ref::rope_error_bound(1, 1, capacity), 0.0).ratio <= 1.0);
      auto want = ref::attention(got_qkv, view, h, pos, ref_k, ref_v, default_scale(h), ref_slots);
      const auto bound = ref::attention_bound(got_qkv, view, h, pos, ref_k, ref_v, default_scale(h), want, ref_slots);
      Worst w = compare(download<float>(out, want.size()), want, bound);
      MESSAGE(name << ": T " << T << " (" << describe(plan) << "): max err " << w.err << " (" << w.ratio
                   << " of tolerance)");
      return w.ratio;
    };
    CHECK(step(consecutive(start, prompt), std::vector<uint32_t>(prompt, 2), SequenceLayout::OneSequence) <= 1.0);
    // one decode token per sequence: slot 2 continues the prompt; slots 0 and 1 attend to their own
    // (random) earlier rows, including position capacity - 1
    CHECK(step({0, start + prompt, capacity - 1}, {1, 2, 0}, SequenceLayout::Mixed) <= 1.0);
  }
}

TEST_CASE("attention plans: Mixed keeps one token per workgroup on the tiled kernel") {
  const DeviceInfo& info = device().info();
  const HeadLayout h{20, 5, 128};
  auto one = ops::plan_attention(info, h, 8, 1024, {.lane_split = false}, SequenceLayout::OneSequence);
  auto mixed = ops::plan_attention(info, h, 8, 1024, {.lane_split = false}, SequenceLayout::Mixed);
  CHECK(one.tokens_per_group > 1);
  CHECK(mixed.tokens_per_group == 1);
  CHECK(mixed.split());  // batched decode splits the context as single decode does
  CHECK(mixed.layout == SequenceLayout::Mixed);
  if (can_lane_split()) {
    auto ls = ops::plan_attention(info, h, 8, 1024, {.lane_split = true}, SequenceLayout::Mixed);
    CHECK(ls.tokens_per_group == 1);
  }
}

TEST_CASE("KV cache slots that do not fit are clear errors") {
  const HeadLayout h{4, 2, 64};
  const uint32_t capacity = 16, T = 4;
  const uint64_t one_seq = ops::kv_cache_bytes(capacity, h.n_kv_heads, h.head_dim);
  Buffer kv = device_buffer(2 * one_seq, "kv");  // room for 2 sequences
  Buffer act = device_buffer(uint64_t(T) * (h.n_heads + 2 * h.n_kv_heads) * h.head_dim * 4, "act");
  Buffer pos = device_buffer(T * 4, "positions"), small_slots = device_buffer(16, "slots");
  Buffer out = device_buffer(uint64_t(T) * h.n_heads * h.head_dim * 4, "out");
  const QkvView view = QkvView::fused(act.range(), T, h);
  const BufferRange slots_range = small_slots.range(0, 8);  // 2 of the 4 uint32 needed
  const ops::KvCacheLayer three{kv.range(), kv.range(), capacity, 3};
  const ops::KvCacheLayer two{kv.range(), kv.range(), capacity, 2};
  const ops::KvCacheLayer none{kv.range(), kv.range(), capacity, 0};
  Recording rec(device());
  CHECK_THROWS_WITH_AS(ops::record_kv_store(rec, view, h, pos.range(), three), doctest::Contains("3 sequences x 16 positions need"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::record_rope_kv_store(rec, view, h, pos.range(), {}, three, {}),
                       doctest::Contains(("need " + std::to_string(3 * one_seq)).c_str()), Error);
  CHECK_THROWS_WITH_AS(ops::record_kv_store(rec, view, h, pos.range(), two, slots_range),
                       doctest::Contains("slots range holds 8 bytes; 4 tokens need 16"), Error);
  CHECK_THROWS_WITH_AS(ops::record_kv_store(rec, view, h, pos.range(), none), doctest::Contains("no sequence slots"),
                       Error);
  auto plan = ops::plan_attention(device().info(), h, T, capacity, {}, SequenceLayout::Mixed);
  Buffer scratch = device_buffer(plan.scratch_bytes, "scratch");
  ops::AttentionArgs args{view, pos.range(), three, out.range(), 0, scratch.range()};
  CHECK_THROWS_WITH_AS(ops::record_attention(rec, plan, args), doctest::Contains("3 sequences x 16 positions need"),
                       Error);
  args.cache = two;
  args.slots = slots_range;
  CHECK_THROWS_WITH_AS(ops::record_attention(rec, plan, args), doctest::Contains("slots range holds 8 bytes"), Error);
  CHECK(rec.dispatch_count() == 0);
}
