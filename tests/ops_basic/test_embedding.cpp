// embedding: fp16 and fp32 tables, split into row segments (tiny ones forced), out-of-range ids.
// Tolerance: exact (fp16 -> fp32 and fp32 copies are exact).
#include <doctest/doctest.h>

#include <cstring>

#include "common/gpu.h"
#include "ops_basic/basic_util.h"
#include "runtime/core/half.h"
#include "runtime/ops/embedding.h"

using namespace ternvk;

namespace {

// The device layout of a table (uint32 words) and the fp32 values it holds.
struct Table {
  std::vector<uint32_t> words;
  std::vector<float> values;  // [vocab, cols]
  std::vector<float> scales;  // I8: [vocab]
};

Table make_table(ops::EmbeddingTable type, uint32_t vocab, uint32_t cols, uint32_t seed) {
  Table t;
  auto v = test::random_floats(size_t(vocab) * cols, seed, -4.0f, 4.0f);
  const uint64_t row_words = ops::embedding_row_bytes(type, cols) / 4;
  t.words.assign(vocab * row_words, 0);
  t.values.resize(v.size());
  if (type == ops::EmbeddingTable::I8) {
    // Per-row scales of different sizes; the value is q * scale, computed as the GPU does (float).
    for (uint32_t r = 0; r < vocab; ++r) {
      t.scales.push_back(0.01f * float(r % 7 + 1));
      for (uint32_t c = 0; c < cols; ++c) {
        const int q = int(v[size_t(r) * cols + c] * 31.0f);  // -124..124
        t.words[r * row_words + c / 4] |= uint32_t(uint8_t(int8_t(q))) << (8 * (c % 4));
        t.values[size_t(r) * cols + c] = float(q) * t.scales[r];
      }
    }
    return t;
  }
  for (uint32_t r = 0; r < vocab; ++r)
    for (uint32_t c = 0; c < cols; ++c) {
      float x = v[size_t(r) * cols + c];
      if (type == ops::EmbeddingTable::F16) {
        const uint16_t h = float_to_half(x);
        x = half_to_float(h);
        t.words[r * row_words + c / 2] |= uint32_t(h) << (16 * (c % 2));
      } else {
        std::memcpy(&t.words[r * row_words + c], &x, 4);
      }
      t.values[size_t(r) * cols + c] = x;
    }
  return t;
}

std::vector<float> embedding_ref(const Table& t, const std::vector<uint32_t>& ids, uint32_t vocab, uint32_t cols) {
  std::vector<float> out(ids.size() * cols, 0.0f);
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < vocab)
      std::memcpy(&out[i * cols], &t.values[size_t(ids[i]) * cols], cols * 4);
  return out;
}

// max_segment_bytes = 0: one segment.
void check_embedding(ops::EmbeddingTable type, uint32_t vocab, uint32_t cols, uint32_t tokens,
                     uint64_t max_segment_bytes) {
  CAPTURE(int(type));
  CAPTURE(vocab);
  CAPTURE(cols);
  CAPTURE(tokens);
  CAPTURE(max_segment_bytes);
  Device& dev = test::device();
  Table table = make_table(type, vocab, cols, vocab + cols);
  std::mt19937 rng(tokens * 7 + cols);
  std::vector<uint32_t> ids(tokens);
  for (auto& id : ids) id = rng() % vocab;
  ids[0] = vocab - 1;
  if (tokens > 2) {
    ids[1] = vocab;        // out of range: zeros
    ids[2] = 0xffffffffu;  // out of range: zeros
  }
  Buffer bt = test::upload(table.words, "embedding table");
  Buffer bs = test::upload(table.scales.empty() ? std::vector<float>(1) : table.scales, "embedding row scales");
  Buffer bi = test::upload(ids, "ids");
  Buffer bo = dev.create_buffer(uint64_t(tokens) * cols * 4, MemoryKind::DeviceLocal, "embedding out");
  Recording pre(dev);
  pre.fill(bo.range(), 0x7fc00000u);  // NaN everywhere: every element must be written
  pre.submit_and_wait();

  const uint64_t row_bytes = ops::embedding_row_bytes(type, cols);
  ops::EmbeddingArgs args{.ids = bi.range(), .out = bo.range(), .tokens = tokens, .cols = cols, .vocab = vocab,
                          .type = type, .scales = bs.range()};
  const uint64_t max_bytes = max_segment_bytes ? max_segment_bytes : vocab * row_bytes;
  for (const auto& s :
       ops::split_rows(vocab, row_bytes, max_bytes, dev.info().min_storage_buffer_offset_alignment))
    args.segments.push_back({bt.range(s.offset, s.bytes), s.first_row, s.rows});
  if (max_segment_bytes) CHECK(args.segments.size() > 1);
  Recording rec(dev);
  ops::record_embedding(rec, args);
  rec.submit_and_wait();
  CHECK(test::count_mismatches(test::download<float>(bo, ids.size() * cols), embedding_ref(table, ids, vocab, cols), 0,
                               0) == 0);
}

}  // namespace

TEST_CASE("embedding from an fp16 table matches the CPU exactly") {
  test::ValidationGuard guard;
  for (uint32_t cols : {1u, 7u, 13u, 255u, 257u, 2563u})
    for (uint32_t tokens : {1u, 3u, 17u}) check_embedding(ops::EmbeddingTable::F16, 37, cols, tokens, 0);
}

TEST_CASE("embedding from an fp32 table matches the CPU exactly") {
  test::ValidationGuard guard;
  for (uint32_t cols : {1u, 7u, 257u, 2563u})
    for (uint32_t tokens : {1u, 17u}) check_embedding(ops::EmbeddingTable::F32, 37, cols, tokens, 0);
}

TEST_CASE("embedding from an int8 table (the int8 head's rows) matches the CPU exactly") {
  test::ValidationGuard guard;
  for (uint32_t cols : {1u, 7u, 13u, 16u, 255u, 2563u})
    for (uint32_t tokens : {1u, 3u, 17u}) check_embedding(ops::EmbeddingTable::I8, 37, cols, tokens, 0);
  check_embedding(ops::EmbeddingTable::I8, 101, 13, 17, 3 * 16 * 16);  // forced segments
}

TEST_CASE("embedding over tiny row segments (forced) matches the CPU") {
  test::ValidationGuard guard;
  // Segments of a few rows each, aligned to minStorageBufferOffsetAlignment.
  check_embedding(ops::EmbeddingTable::F16, 101, 13, 17, 3 * 16 * 2);
  check_embedding(ops::EmbeddingTable::F16, 101, 2563, 17, 7 * 2568 * 2);
  check_embedding(ops::EmbeddingTable::F32, 101, 7, 17, 256);
  check_embedding(ops::EmbeddingTable::F32, 50, 1, 3, 64);
}

TEST_CASE("split_rows keeps segments aligned and under the limit") {
  // The 2B4T head/embedding: 128256 x 2560 fp16 is 657 MB, more than lavapipe's 128 MiB range.
  const uint64_t row_bytes = ops::embedding_row_bytes(ops::EmbeddingTable::F16, 2560);
  CHECK(row_bytes == 5120);
  auto segs = ops::split_rows(128256, row_bytes, 128ull << 20, 256);
  REQUIRE(segs.size() == 5);
  uint32_t next = 0;
  for (const auto& s : segs) {
    CHECK(s.first_row == next);
    CHECK(s.offset % 256 == 0);
    CHECK(s.bytes <= (128ull << 20));
    CHECK(s.bytes == s.rows * row_bytes);
    next += s.rows;
  }
  CHECK(next == 128256);
  // Rows of 12 bytes with 16-byte alignment: segments hold multiples of 4 rows.
  for (const auto& s : ops::split_rows(10, 12, 60, 16)) CHECK(s.offset % 16 == 0);
  CHECK(ops::embedding_row_bytes(ops::EmbeddingTable::F16, 13) == 32);
  CHECK_THROWS_WITH_AS(ops::split_rows(10, 5120, 4096, 16), doctest::Contains("does not fit"), Error);
}

TEST_CASE("embedding: bad segments and ids are actionable errors") {
  Device& dev = test::device();
  Buffer table = dev.create_buffer(64 * 32, MemoryKind::DeviceLocal, "table");
  Buffer ids = dev.create_buffer(16, MemoryKind::DeviceLocal, "ids");
  Buffer out = dev.create_buffer(4 * 13 * 4, MemoryKind::DeviceLocal, "out");
  Recording rec(dev);
  ops::EmbeddingArgs a{.ids = ids.range(), .out = out.range(), .tokens = 4, .cols = 13, .vocab = 64};
  a.segments = {{table.range(0, 32 * 32), 0, 32}, {table.range(32 * 32, 32 * 32), 33, 31}};
  CHECK_THROWS_WITH_AS(ops::record_embedding(rec, a), doctest::Contains("starts at row 33 but row 32"), Error);
  a.segments = {{table.range(0, 32 * 32), 0, 32}};
  CHECK_THROWS_WITH_AS(ops::record_embedding(rec, a), doctest::Contains("cover 32 rows but the vocabulary has 64"),
                       Error);
  a.segments = {{table.range(0, 16 * 32), 0, 64}};
  CHECK_THROWS_WITH_AS(ops::record_embedding(rec, a), doctest::Contains("need 2048"), Error);
  std::vector<uint32_t> good = {0, 5, 63}, bad = {0, 64};
  CHECK_NOTHROW(ops::validate_token_ids(good, 64));
  CHECK_THROWS_WITH_AS(ops::validate_token_ids(bad, 64), doctest::Contains("token id 64 at position 1"), Error);
}
