// Chained fused dispatches (fused_linear.comp's CHAIN variants, Recording::begin_chain): recorded with
// no barrier between them, each waiting in its shader until the link before has counted all its
// workgroups done. lavapipe runs a command buffer's dispatches one after another, so no test here can
// show a wait holding a later dispatch back; they show what every device must give: the bits of the
// same dispatches with barriers, each link's done count equal to the workgroups it dispatched (what
// the next link waits for), no timed-out flag, fewer barriers, and a wait that cannot be met giving
// up after its bound with the flag set.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <optional>

#include "common/device_profiles.h"
#include "common/gpu.h"
#include "common/random.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/core/half.h"
#include "runtime/ops/fused_linear.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

constexpr float kEps = 1e-5f;

// Three layers a chain: h = W1 n(x) (store), x += W2 n(h) (the residual add), y = W3 n(x) (store):
// each reads what the one before wrote, and the second rewrites what the first read.
struct ThreeLayers {
  uint32_t K = 136, H = 72, N = 40;
  std::optional<TernaryMatrixGpu> t1, t2, t3;
  std::optional<Fp16MatrixGpu> f1, f2, f3;
  std::vector<float> x0;
  Buffer norm_k, norm_h;

  ThreeLayers(Device& dev, bool fp16, uint32_t seed) {
    std::mt19937 rng(seed);
    auto ternary = [&](uint32_t rows, uint32_t cols, const char* name) {
      return TernaryMatrixGpu(dev, pack_ternary(test::random_ternary(rng, size_t(rows) * cols), rows, cols, 0.3f), name);
    };
    auto halves = [&](uint32_t rows, uint32_t cols, const char* name) {
      const auto v = test::random_floats(rng, size_t(rows) * cols, -0.5f, 0.5f);
      std::vector<uint16_t> h(v.size());
      for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_half(v[i]);
      return Fp16MatrixGpu(dev, h, rows, cols, name);
    };
    if (fp16) {
      f1.emplace(halves(H, K, "chain w1"));
      f2.emplace(halves(K, H, "chain w2"));
      f3.emplace(halves(N, K, "chain w3"));
    } else {
      t1.emplace(ternary(H, K, "chain w1"));
      t2.emplace(ternary(K, H, "chain w2"));
      t3.emplace(ternary(N, K, "chain w3"));
    }
    x0 = test::random_floats(rng, K, -2.0f, 2.0f);
    norm_k = test::upload(test::random_floats(rng, K, 0.5f, 1.5f), "norm K");
    norm_h = test::upload(test::random_floats(rng, H, 0.5f, 1.5f), "norm H");
  }

  // Records the three layers (links when `counters` is given, waiting for `extra` more workgroups
  // than the link before has) and runs them; returns y and x, and each link's workgroups.
  struct Run {
    std::vector<float> y, x;
    std::vector<uint32_t> groups;
    size_t barriers = 0;
  };
  Run run(Device& dev, const FusedLinear& op, const Buffer* counters, uint32_t extra = 0, uint32_t spin_limit = 0) {
    Buffer x = test::upload(x0, "x"), h = test::upload(std::vector<float>(H, NAN), "h"),
           y = test::upload(std::vector<float>(N, NAN), "y");
    Recording rec(dev);
    std::optional<FusedChainLinks> links;
    if (counters) {
      rec.fill(counters->range(), 0);
      rec.begin_chain();
      links.emplace(counters->range(), spin_limit, extra);
    }
    Run out;
    auto layer = [&](auto& w, BufferRange in, const Buffer& norm, BufferRange to, FusedEpilogue e) {
      std::optional<FusedChainLink> link;
      if (links) link = links->next();
      out.groups.push_back(op.record(rec, *w, {.x = in, .norm = norm.range(), .eps = kEps, .tokens = 1}, {to}, e,
                                     nullptr, link ? &*link : nullptr));
      if (links) links->recorded(out.groups.back());
    };
    auto three = [&](auto& w1, auto& w2, auto& w3) {
      layer(w1, x.range(), norm_k, h.range(), FusedEpilogue::Store);
      layer(w2, h.range(), norm_h, x.range(), FusedEpilogue::Accumulate);
      layer(w3, x.range(), norm_k, y.range(), FusedEpilogue::Store);
    };
    if (t1) three(t1, t2, t3);
    else three(f1, f2, f3);
    if (counters) rec.end_chain();
    rec.finish();
    out.barriers = rec.barrier_count();
    rec.submit_and_wait();
    out.y = test::download<float>(y, N);
    out.x = test::download<float>(x, K);
    return out;
  }
};

// The CPU device's shape and the GPU rule (many workgroups a matrix, 32-lane groups) forced here,
// once with float rows 32 lanes wide (wider than lavapipe's subgroups: pieces met in shared memory)
// and once as wide as this device's subgroups (reduced inside one by shuffles, as on a GPU).
std::vector<std::optional<FusedLinearShape>> chain_shapes() {
  FusedLinearShape widest = test::h200_like();
  widest.target_workgroups = 1u << 20;
  FusedLinearShape in_subgroup = widest;
  in_subgroup.float_lanes = std::min(32u, test::device().info().min_subgroup_size);
  return {std::nullopt, widest, in_subgroup};
}

}  // namespace

TEST_CASE("chained fused layers give the barriered layers' bits, and each link counts its workgroups") {
  Device& dev = test::device();
  Buffer counters = test::upload(std::vector<uint32_t>(8, 0xdeadbeefu), "chain counters");
  for (bool fp16 : {false, true})
    for (const auto& shape : chain_shapes()) {
      CAPTURE(fp16);
      CAPTURE(bool(shape));
      ThreeLayers layers(dev, fp16, fp16 ? 2 : 1);
      const FusedLinear op(dev, {.shape = shape});
      test::ValidationGuard guard;
      const auto plain = layers.run(dev, op, nullptr);
      const auto chained = layers.run(dev, op, &counters);
      CHECK(std::memcmp(plain.y.data(), chained.y.data(), plain.y.size() * 4) == 0);
      CHECK(std::memcmp(plain.x.data(), chained.x.data(), plain.x.size() * 4) == 0);
      for (float v : chained.y) REQUIRE(std::isfinite(v));
      const auto c = test::download<uint32_t>(counters, 8);
      CHECK(c[0] == 0);  // no wait timed out
      for (size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        CHECK(c[i + 1] == chained.groups[i]);
      }
      CHECK(c[4] == 0);
      // The barriered run: one at the start and one before each later layer; chained: the one at the
      // start and the one begin_chain() puts after the counters' fill.
      CHECK(plain.barriers == 3);
      CHECK(chained.barriers == 2);
    }
}

TEST_CASE("a chained wait that cannot be met gives up after its bound and sets the flag") {
  Device& dev = test::device();
  Buffer counters = test::upload(std::vector<uint32_t>(8, 0), "chain counters");
  ThreeLayers layers(dev, false, 3);
  const FusedLinear op(dev);
  test::ValidationGuard guard;
  const auto plain = layers.run(dev, op, nullptr);
  // Each later link waits for one workgroup more than the link before has: every one of their
  // workgroups polls 64 times, then goes on.
  const auto stuck = layers.run(dev, op, &counters, 1, 64);
  const auto c = test::download<uint32_t>(counters, 8);
  CHECK(c[0] == 1);
  for (size_t i = 0; i < 3; ++i) CHECK(c[i + 1] == stuck.groups[i]);  // every workgroup still counted
  // A device that runs one dispatch after another (lavapipe) had finished each layer before the next
  // gave up waiting: the same bits. A GPU may have run the links together, unordered once they gave
  // up (what the engine's redo is for).
  if (dev.info().is_cpu()) CHECK(std::memcmp(plain.y.data(), stuck.y.data(), plain.y.size() * 4) == 0);
}

TEST_CASE("chain links and chained recordings refuse what cannot work, naming it") {
  Device& dev = test::device();
  std::mt19937 rng(4);
  const auto w = test::random_ternary(rng, size_t(64) * 64);
  TernaryMatrixGpu one(dev, pack_ternary(w, 64, 64, 1.0f), "one piece");
  TernaryMatrixGpu split(dev, pack_ternary(w, 64, 64, 1.0f), "split o", 16 * 20);
  REQUIRE(split.segments().size() > 1);
  Buffer x = test::upload(std::vector<float>(64, 1.0f)), y = test::upload(std::vector<float>(64, 0.0f));
  Buffer counters = test::upload(std::vector<uint32_t>(4, 0), "chain counters");
  const FusedLinear op(dev);
  const NormedInput in{.x = x.range(), .norm = x.range(), .tokens = 1};
  auto record = [&](const TernaryMatrixGpu& m, FusedChainLink link) {
    Recording rec(dev);
    op.record(rec, m, in, {y.range()}, FusedEpilogue::Store, nullptr, &link);
  };
  const BufferRange all = counters.range();
  CHECK_THROWS_WITH_AS(record(split, {.counters = all, .signal = 1}), doctest::Contains("split o"), Error);
  CHECK_THROWS_WITH_AS(record(one, {.counters = all, .wait = 1, .wait_count = 4, .signal = 1}),
                       doctest::Contains("invalid chain link"), Error);  // waits on its own counter
  CHECK_THROWS_WITH_AS(record(one, {.counters = all, .wait = 0, .wait_count = 4, .signal = 1}),
                       doctest::Contains("invalid chain link"), Error);  // a count on the flag
  CHECK_THROWS_WITH_AS(record(one, {.counters = all, .signal = 0}), doctest::Contains("invalid chain link"), Error);
  CHECK_THROWS_WITH_AS(record(one, {.counters = all, .signal = 4}), doctest::Contains("4 counters"), Error);
  CHECK_THROWS_WITH_AS(record(one, {.counters = all, .signal = 1, .spin_limit = 0}),
                       doctest::Contains("invalid chain link"), Error);
  CHECK_NOTHROW(record(one, {.counters = all, .signal = 3}));

  Recording rec(dev);
  rec.begin_chain();
  CHECK_THROWS_WITH_AS(rec.begin_chain(), doctest::Contains("begun twice"), Error);
  CHECK_THROWS_WITH_AS(rec.fill(counters.range(), 0), doctest::Contains("inside a chain"), Error);
  rec.end_chain();
  CHECK_NOTHROW(rec.fill(counters.range(), 0));
}
