// argmax and topk vs CPU references (a linear scan; std::partial_sort). Tolerance: exact — the same
// indices and the same values, in the same order. Rows include many equal values, -inf, +inf, NaN,
// rows of only -inf and rows of only NaN; plans include the device's default, tiny chunks (many
// parts), the shared-memory reduction and odd workgroup sizes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/gpu.h"
#include "ops_basic/basic_util.h"
#include "runtime/ops/argmax.h"
#include "runtime/ops/topk.h"

using namespace ternvk;

namespace {

constexpr uint32_t kNone = 0xffffffffu;
const float kInf = std::numeric_limits<float>::infinity();

bool before(float va, uint32_t ia, float vb, uint32_t ib) { return va > vb || (va == vb && ia < ib); }

// Row kinds: 0 random, 1 few distinct values (many ties) with -inf sprinkled, 2 all -inf,
// 3 random with NaN and +inf, 4 all NaN, 5 all equal.
std::vector<float> make_logits(uint32_t rows, uint32_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-20.0f, 20.0f);
  std::vector<float> x(size_t(rows) * cols);
  for (uint32_t r = 0; r < rows; ++r) {
    const uint32_t kind = r % 6;
    for (uint32_t c = 0; c < cols; ++c) {
      float v = dist(rng);
      switch (kind) {
        case 1: v = (rng() % 5 == 0) ? -kInf : float(int(rng() % 4)) - 1.5f; break;
        case 2: v = -kInf; break;
        case 3: v = (rng() % 97 == 0) ? std::nanf("") : (rng() % 1013 == 0 ? kInf : v); break;
        case 4: v = std::nanf(""); break;
        case 5: v = 0.25f; break;
        default: break;
      }
      x[size_t(r) * cols + c] = v;
    }
  }
  return x;
}

std::vector<ops::TopKEntry> topk_ref(const std::vector<float>& x, uint32_t rows, uint32_t cols, uint32_t k) {
  std::vector<ops::TopKEntry> out;
  for (uint32_t r = 0; r < rows; ++r) {
    std::vector<ops::TopKEntry> row;
    for (uint32_t c = 0; c < cols; ++c)
      if (!std::isnan(x[size_t(r) * cols + c])) row.push_back({c, x[size_t(r) * cols + c]});
    const size_t n = std::min<size_t>(k, row.size());
    std::partial_sort(row.begin(), row.begin() + n, row.end(),
                      [](const auto& a, const auto& b) { return before(a.value, a.index, b.value, b.index); });
    row.resize(n);
    row.resize(k, ops::TopKEntry{kNone, -kInf});
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

std::vector<ops::ArgmaxResult> argmax_ref(const std::vector<float>& x, uint32_t rows, uint32_t cols) {
  std::vector<ops::ArgmaxResult> out;
  for (const auto& e : topk_ref(x, rows, cols, 1)) out.push_back({e.index, e.value});
  return out;
}

template <class Entry>
size_t count_wrong(const std::vector<Entry>& got, const std::vector<Entry>& want, uint32_t per_row) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i].index != want[i].index || !(got[i].value == want[i].value)) {
      if (bad == 0)
        MESSAGE("first mismatch at row " << i / per_row << " rank " << i % per_row << ": got (" << got[i].index << ", "
                                         << got[i].value << "), want (" << want[i].index << ", " << want[i].value
                                         << ")");
      ++bad;
    }
  return bad;
}

void check_argmax(uint32_t rows, uint32_t cols, const ops::RowReduceTuning& tuning) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(tuning.workgroup);
  CAPTURE(tuning.chunk);
  Device& dev = test::device();
  auto x = make_logits(rows, cols, rows * 7919 + cols);
  Buffer bx = test::upload(x, "logits");
  const auto plan = ops::plan_argmax(dev.info(), rows, cols, tuning);
  CAPTURE(plan.parts);
  Buffer out = dev.create_buffer(rows * sizeof(ops::ArgmaxResult), MemoryKind::DeviceLocal, "argmax out");
  Buffer scratch;
  if (plan.scratch_bytes) scratch = dev.create_buffer(plan.scratch_bytes, MemoryKind::DeviceLocal, "argmax scratch");
  Recording rec(dev);
  ops::record_argmax(rec, {.logits = bx.range(), .out = out.range(), .scratch = scratch ? scratch.range() : BufferRange{},
                           .rows = rows, .cols = cols, .plan = plan});
  CHECK(rec.dispatch_count() == (plan.parts > 1 ? 2u : 1u));
  rec.submit_and_wait();
  CHECK(count_wrong(test::download<ops::ArgmaxResult>(out, rows), argmax_ref(x, rows, cols), 1) == 0);
}

void check_topk(uint32_t rows, uint32_t cols, uint32_t k, const ops::RowReduceTuning& tuning) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(k);
  CAPTURE(tuning.workgroup);
  CAPTURE(tuning.chunk);
  Device& dev = test::device();
  auto x = make_logits(rows, cols, rows * 104729 + cols + k);
  Buffer bx = test::upload(x, "logits");
  const auto plan = ops::plan_topk(dev.info(), rows, cols, k, tuning);
  CAPTURE(plan.parts);
  CAPTURE(plan.subgroup_reduce);
  Buffer out = dev.create_buffer(uint64_t(rows) * k * sizeof(ops::TopKEntry), MemoryKind::DeviceLocal, "topk out");
  Buffer scratch;
  if (plan.scratch_bytes) scratch = dev.create_buffer(plan.scratch_bytes, MemoryKind::DeviceLocal, "topk scratch");
  Recording rec(dev);
  ops::record_topk(rec, {.logits = bx.range(), .out = out.range(), .scratch = scratch ? scratch.range() : BufferRange{},
                         .rows = rows, .cols = cols, .k = k, .plan = plan});
  rec.submit_and_wait();
  CHECK(count_wrong(test::download<ops::TopKEntry>(out, size_t(rows) * k), topk_ref(x, rows, cols, k), k) == 0);
}

}  // namespace

TEST_CASE("argmax matches the CPU (ties to the lowest index) with the device's plan") {
  test::ValidationGuard guard;
  for (uint32_t rows : {1u, 3u, 17u})
    for (uint32_t cols : {1u, 7u, 13u, 255u, 257u, 2563u, 128259u}) check_argmax(rows, cols, {});
}

TEST_CASE("argmax: many parts, both reductions, odd workgroups") {
  test::ValidationGuard guard;
  for (bool sub : {true, false})
    for (uint32_t wg : {1u, 8u, 13u, 64u}) {
      check_argmax(7, 2563, {.workgroup = wg, .chunk = 37, .subgroup_reduce = sub});
      check_argmax(6, 257, {.workgroup = wg, .chunk = 5000, .subgroup_reduce = sub});
    }
}

TEST_CASE("topk matches std::partial_sort with the device's plan") {
  test::ValidationGuard guard;
  for (uint32_t k : {1u, 5u, 64u})
    for (uint32_t rows : {1u, 3u, 17u})
      for (uint32_t cols : {1u, 7u, 13u, 255u, 257u, 2563u}) check_topk(rows, cols, k, {});
  check_topk(6, 128259, 64, {});
  check_topk(1, 128259, 40, {});
  check_topk(2, 128259, 256, {});  // kMaxTopK over a 128k vocabulary
}

TEST_CASE("topk: many parts, both reductions, odd workgroups, k beyond the row") {
  test::ValidationGuard guard;
  for (bool sub : {true, false})
    for (uint32_t wg : {1u, 8u, 13u, 64u}) {
      check_topk(6, 2563, 17, {.workgroup = wg, .chunk = 37, .subgroup_reduce = sub});
      check_topk(6, 257, 64, {.workgroup = wg, .chunk = 100, .subgroup_reduce = sub});
    }
  check_topk(6, 7, 13, {});                  // k > cols: padded with (0xffffffff, -inf)
  check_topk(6, 300, 200, {.chunk = 16});    // chunks shorter than k
}

TEST_CASE("argmax and topk: bad shapes and plans are actionable errors") {
  Device& dev = test::device();
  Buffer a = dev.create_buffer(4096, MemoryKind::DeviceLocal, "a");
  Buffer b = dev.create_buffer(4096, MemoryKind::DeviceLocal, "b");
  Recording rec(dev);
  auto plan = ops::plan_argmax(dev.info(), 1, 1000, {.chunk = 100});
  CHECK(plan.parts == 10);
  CHECK_THROWS_WITH_AS(ops::record_argmax(rec, {.logits = a.range(), .out = b.range(), .rows = 1, .cols = 1000,
                                                .plan = plan}),
                       doctest::Contains("scratch holds 0 bytes but needs 80"), Error);
  CHECK_THROWS_WITH_AS(ops::record_argmax(rec, {.logits = a.range(), .out = b.range(), .scratch = b.range(),
                                                .rows = 1, .cols = 999 * 2, .plan = plan}),
                       doctest::Contains("does not match 1998 columns"), Error);
  // lavapipe cuts loop nests after 65535 iterations: plans over the budget are refused.
  CHECK_THROWS_WITH_AS(ops::plan_topk(dev.info(), 1, 300, 200, {.workgroup = 8, .chunk = 16}),
                       doctest::Contains("over the budget"), Error);
  CHECK_THROWS_WITH_AS(ops::plan_topk(dev.info(), 1, 100000000, 256), doctest::Contains("more than two passes"), Error);
  CHECK_THROWS_WITH_AS(ops::plan_argmax(dev.info(), 1, 1000000, {.workgroup = 1, .chunk = 1000000}),
                       doctest::Contains("loop budget"), Error);
  CHECK_THROWS_WITH_AS(ops::record_topk(rec, {.logits = a.range(), .out = b.range(), .rows = 1, .cols = 10, .k = 0}),
                       doctest::Contains("k = 0 is outside"), Error);
  CHECK_THROWS_WITH_AS(ops::record_topk(rec, {.logits = a.range(), .out = b.range(), .rows = 2, .cols = 1000, .k = 4}),
                       doctest::Contains("logits holds 4096 bytes but needs 8000"), Error);
}
