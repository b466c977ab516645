// The head's argmax in the same dispatch (FusedLinear::record_with_argmax; fused_linear.comp's
// ARGMAX): each workgroup's first maximum, merged by the last workgroup to finish. The pick must be
// record_argmax's over the logits the same dispatch stored, bit for bit, and the host's first
// maximum: ties go to the lowest index, NaN is never picked (a row of only NaN gives no index).
// Shapes: test::one_token_shapes (this device's, a 64-lane fixed one, the GPU rule at both ends);
// fp16 and int8 rows.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "common/gpu.h"
#include "common/random.h"
#include "ops_matmul/matmul_test_util.h"
#include "runtime/core/half.h"
#include "runtime/ops/argmax.h"
#include "runtime/ops/fused_linear.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

constexpr uint32_t kRows = 1000, kCols = 136;  // no tile multiple
constexpr uint16_t kHalfNan = 0x7e00;

enum class Rows { Random, Ties, SomeNan, AllNan };

// fp16 head rows for the case, for input x with norm weight `norm`: rows 37, 500 and 811 equal and
// the largest logit (each weight the sign of its input: sum |x norm| > any random row's); rows 3 and
// 600 as large but with a NaN (so a NaN taken for a number would win); or a NaN in every row.
std::vector<uint16_t> head_rows(Rows kind, uint32_t seed, const std::vector<float>& x, const std::vector<float>& norm) {
  auto f = test::random_floats(size_t(kRows) * kCols, seed, -1.0f, 1.0f);
  std::vector<uint16_t> h(f.size());
  for (size_t i = 0; i < f.size(); ++i) h[i] = float_to_half(f[i]);
  auto row = [&](uint32_t r) { return h.begin() + size_t(r) * kCols; };
  auto set_largest = [&](uint32_t r) {
    for (uint32_t c = 0; c < kCols; ++c) row(r)[c] = float_to_half(x[c] * norm[c] >= 0 ? 1.0f : -1.0f);
  };
  if (kind == Rows::Ties)
    for (uint32_t r : {37u, 500u, 811u}) set_largest(r);
  if (kind == Rows::SomeNan)
    for (uint32_t r : {3u, 600u}) {
      set_largest(r);
      row(r)[kCols / 2] = kHalfNan;
    }
  if (kind == Rows::AllNan)
    for (uint32_t r = 0; r < kRows; ++r) row(r)[r % kCols] = kHalfNan;
  return h;
}

// The host's first maximum of `logits` (NaN never), as (index, value): index ~0 for none.
ArgmaxResult host_argmax(const std::vector<float>& logits) {
  ArgmaxResult best{0xffffffffu, -INFINITY};
  for (uint32_t i = 0; i < logits.size(); ++i)
    if (logits[i] > best.value || (logits[i] == best.value && i < best.index)) best = {i, logits[i]};
  return best;
}

bool same(const ArgmaxResult& a, const ArgmaxResult& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("the head's argmax in its own dispatch picks record_argmax's token, ties and NaN included") {
  Device& dev = test::device();
  uint32_t seed = 120;
  for (const FusedLinearShape& shape : test::one_token_shapes()) {
    CAPTURE(shape.workgroup);
    FusedLinear op(dev, {.shape = shape});
    for (const bool int8 : {false, true})
      for (const Rows kind : {Rows::Random, Rows::Ties, Rows::SomeNan, Rows::AllNan}) {
        CAPTURE(int8);
        CAPTURE(int(kind));
        const auto x = test::random_floats(kCols, ++seed, -2.0f, 2.0f);
        const auto norm = test::random_floats(kCols, seed + 1, 0.5f, 1.5f);
        const auto halves = head_rows(kind, seed + 2, x, norm);
        const Fp16MatrixGpu f16(dev, halves, kRows, kCols, "head");
        std::optional<Int8MatrixGpu> i8;
        if (int8) {  // int8 values hold no NaN: the rows' scales do
          std::vector<uint16_t> finite = halves;
          for (auto& v : finite) v = v == kHalfNan ? 0 : v;
          Int8Rows q = quantize_rows_int8(finite, kRows, kCols);
          if (kind == Rows::SomeNan) q.scales[3] = q.scales[600] = NAN;
          if (kind == Rows::AllNan) std::fill(q.scales.begin(), q.scales.end(), NAN);
          i8.emplace(dev, q, "head");
        }
        Buffer gx = test::upload(x, "x"), gn = test::upload(norm, "norm");
        Buffer logits = test::upload(std::vector<float>(kRows, 0.0f), "logits");
        Buffer picked = test::upload(std::vector<uint32_t>{7, 7}, "pick");
        Buffer want_buf = test::upload(std::vector<uint32_t>{7, 7}, "record_argmax's pick");
        Buffer scratch = test::upload(std::vector<uint32_t>(FusedLinear::argmax_scratch_bytes(kRows) / 4, 0u), "scratch");
        const RowReducePlan plan = plan_argmax(dev.info(), 1, kRows);
        Buffer argmax_scratch = test::upload(std::vector<uint8_t>(std::max<uint64_t>(plan.scratch_bytes, 16), 0), "argmax scratch");
        const NormedInput in{.x = gx.range(), .norm = gn.range(), .eps = 1e-5f, .tokens = 1};
        test::ValidationGuard guard;
        Recording rec(dev);
        const FusedArgmax target{.scratch = scratch.range(), .result = picked.range()};
        if (i8) op.record_with_argmax(rec, *i8, in, {logits.range()}, target);
        else op.record_with_argmax(rec, f16, in, {logits.range()}, target);
        CHECK(rec.dispatch_count() == 1);
        // record_argmax over the logits that dispatch stored.
        record_argmax(rec, {.logits = logits.range(), .out = want_buf.range(), .scratch = argmax_scratch.range(),
                            .rows = 1, .cols = kRows, .plan = plan});
        rec.submit_and_wait();
        const auto got_words = test::download<uint32_t>(picked, 2), want_words = test::download<uint32_t>(want_buf, 2);
        ArgmaxResult got, want;
        std::memcpy(&got, got_words.data(), 8);
        std::memcpy(&want, want_words.data(), 8);
        CHECK(same(got, want));
        CHECK(same(got, host_argmax(test::download<float>(logits, kRows))));
        if (kind == Rows::Ties) CHECK(got.index == 37);
        if (kind == Rows::SomeNan) CHECK((got.index != 3 && got.index != 600 && got.index < kRows));
        if (kind == Rows::AllNan) CHECK(got.index == 0xffffffffu);
        CHECK(test::download<uint32_t>(scratch, 1)[0] == 0);  // the counter is back at 0
        // A replay picks the same again (the counter it left serves the next).
        dev.upload(picked, std::vector<uint32_t>{7, 7}.data(), 8);
        rec.submit_and_wait();
        CHECK(test::download<uint32_t>(picked, 2) == got_words);
      }
  }
}

TEST_CASE("the head's argmax in its own dispatch is refused for several tokens or segments, naming the matrix") {
  Device& dev = test::device();
  FusedLinear op(dev);
  const auto halves = head_rows(Rows::Random, 9, std::vector<float>(kCols, 1.0f), std::vector<float>(kCols, 1.0f));
  const Fp16MatrixGpu split(dev, halves, kRows, kCols, "split head", 16 * 17 * 40);
  REQUIRE(split.segments().size() > 1);
  Buffer x = test::upload(std::vector<float>(2 * kCols, 1.0f)), y = test::upload(std::vector<float>(2 * kRows, 0.0f));
  Buffer scratch = test::upload(std::vector<uint32_t>(FusedLinear::argmax_scratch_bytes(kRows) / 4, 0u));
  Buffer out = test::upload(std::vector<uint32_t>{0, 0});
  Recording rec(dev);
  const FusedArgmax target{.scratch = scratch.range(), .result = out.range()};
  std::string message;
  try {
    op.record_with_argmax(rec, split, {.x = x.range(), .norm = x.range(), .tokens = 1}, {y.range()}, target);
  } catch (const Error& e) {
    message = e.what();
  }
  CHECK(message.find("split head") != std::string::npos);
  CHECK(message.find("one segment") != std::string::npos);
  // The result may not share the logits' buffer.
  const Fp16MatrixGpu one(dev, halves, kRows, kCols, "head");
  CHECK_THROWS_WITH_AS(op.record_with_argmax(rec, one, {.x = x.range(), .norm = x.range(), .tokens = 1}, {y.range()},
                                             {.scratch = scratch.range(), .result = y.range(0, 8)}),
                       doctest::Contains("separate buffers"), Error);
  const Fp16MatrixGpu whole(dev, halves, kRows, kCols, "whole head");
  CHECK_THROWS_WITH_AS(op.record_with_argmax(rec, whole, {.x = x.range(), .norm = x.range(), .tokens = 2}, {y.range()}, target),
                       doctest::Contains("one token"), Error);
}
