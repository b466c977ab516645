// Malformed GGUF files: each must raise ternvk::Error with a message naming the file and the
// problem, never crash or read outside the file.
#include <doctest/doctest.h>

#include "runtime/formats/gguf.h"
#include "runtime/formats/tensor_decode.h"
#include "sample_files.h"
#include "test_util.h"

using namespace ternvk;

namespace {

GgufFile open_bytes(std::vector<uint8_t> bytes) { return GgufFile::from_bytes(std::move(bytes), "bad.gguf"); }

// End of the last tensor's data: any shorter file is missing tensor bytes.
size_t end_of_tensor_data(const GgufFile& f) {
  uint64_t end = f.data_offset();
  for (const auto& t : f.tensors()) end = std::max(end, f.data_offset() + t.offset + *t.byte_size);
  return end;
}

}  // namespace

TEST_CASE("GGUF sample file is valid (the seed of every bad-input case)") {
  const auto f = open_bytes(test::sample_gguf());
  CHECK(f.tensors().size() == 6);
  for (const auto& t : f.tensors()) CHECK_NOTHROW(read_f32(f, t));
  CHECK(read_ternary(f, f.tensor("blk.0.attn_v.weight")).values ==
        read_ternary(f, f.tensor("blk.0.attn_q.weight")).values);
}

TEST_CASE("GGUF truncated at every byte before the end of its tensor data is an error") {
  const auto bytes = test::sample_gguf();
  const size_t end = end_of_tensor_data(open_bytes(bytes));
  for (size_t cut = 0; cut < end; ++cut) {
    CAPTURE(cut);
    const std::string message = test::error_message(
        [&] { (void)open_bytes(std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut)); });
    CHECK(message.find("bad.gguf") != std::string::npos);
  }
}

TEST_CASE("GGUF wrong magic and unsupported versions") {
  auto bytes = test::sample_gguf();
  bytes[0] = 'X';
  test::require_error([&] { open_bytes(bytes); }, "bad.gguf", "not a GGUF file", "XGUF", "expected \"GGUF\"");
  for (uint32_t version : {0u, 1u, 4u, 0xffffffffu}) {
    auto v = test::sample_gguf();
    test::poke<uint32_t>(v, 4, version);
    test::require_error([&] { open_bytes(v); }, "bad.gguf", "unsupported GGUF version",
                        std::to_string(version));
  }
  test::require_error([&] { open_bytes({'G', 'G'}); }, "not a GGUF file");
  test::require_error([&] { open_bytes({}); }, "not a GGUF file");
  CHECK(open_bytes(test::sample_gguf(2)).version() == 2);
}

TEST_CASE("GGUF absurd tensor and metadata counts") {
  auto bytes = test::sample_gguf();
  test::poke<uint64_t>(bytes, 8, uint64_t{1} << 60);
  test::require_error([&] { open_bytes(bytes); }, "tensor count", "larger than the file");
  bytes = test::sample_gguf();
  test::poke<uint64_t>(bytes, 16, ~uint64_t{0});
  test::require_error([&] { open_bytes(bytes); }, "metadata count", "larger than the file");
  bytes = test::sample_gguf();
  test::poke<uint64_t>(bytes, 8, 7);  // one tensor more than written: runs into the data
  CHECK_THROWS_AS(open_bytes(bytes), Error);
}

TEST_CASE("GGUF string and array lengths past the end of the file") {
  auto bytes = test::sample_gguf();
  const size_t key = test::find_bytes(bytes, "general.architecture");
  test::poke<uint64_t>(bytes, key - 8, uint64_t{1} << 40);
  test::require_error([&] { open_bytes(bytes); }, "bad.gguf", "string length", "past the end");
  bytes = test::sample_gguf();
  const size_t tokens = test::find_bytes(bytes, "tokenizer.ggml.tokens");
  // key, u32 type ARRAY, u32 element type STRING, u64 count
  test::poke<uint64_t>(bytes, tokens + 21 + 4 + 4, uint64_t{1} << 50);
  test::require_error([&] { open_bytes(bytes); }, "tokenizer.ggml.tokens", "claims", "elements");
  bytes = test::sample_gguf();
  test::poke<uint32_t>(bytes, tokens + 21, 13);  // value type 13 does not exist
  test::require_error([&] { open_bytes(bytes); }, "invalid metadata value type 13", "tokenizer.ggml.tokens");
}

TEST_CASE("GGUF tensor offset or size outside the file") {
  auto bytes = test::sample_gguf();
  const auto f = test::gguf_tensor_fields(bytes, "token_embd.weight");
  test::poke<uint64_t>(bytes, f.offset, uint64_t{1} << 40);
  test::require_error([&] { open_bytes(bytes); }, "bad.gguf", "'token_embd.weight'", "Q8_0",
                      "data section holds only");
  test::poke<uint64_t>(bytes, f.offset, ~uint64_t{0} - 3);  // offset + size wraps around 2^64
  test::require_error([&] { open_bytes(bytes); }, "'token_embd.weight'");
  bytes = test::sample_gguf();
  test::poke<uint64_t>(bytes, f.dims + 8, 100000);  // 100000 rows of Q8_0: far past the end
  test::require_error([&] { open_bytes(bytes); }, "'token_embd.weight'", "data section holds only");
}

TEST_CASE("GGUF absurd dims: too many, overflowing, or not a whole number of blocks") {
  auto bytes = test::sample_gguf();
  const auto f = test::gguf_tensor_fields(bytes, "blk.0.attn_q.weight");
  test::poke<uint32_t>(bytes, f.n_dims, 5);
  test::require_error([&] { open_bytes(bytes); }, "'blk.0.attn_q.weight'", "5 dimensions");
  bytes = test::sample_gguf();
  test::poke<uint64_t>(bytes, f.dims, uint64_t{1} << 62);
  test::poke<uint64_t>(bytes, f.dims + 8, uint64_t{1} << 62);
  test::require_error([&] { open_bytes(bytes); }, "'blk.0.attn_q.weight'", "absurd dimensions");
  bytes = test::sample_gguf();
  test::poke<uint64_t>(bytes, f.dims, ~uint64_t{0});
  test::require_error([&] { open_bytes(bytes); }, "'blk.0.attn_q.weight'", "absurd");
  bytes = test::sample_gguf();
  test::poke<uint64_t>(bytes, f.dims, 100);
  test::require_error([&] { open_bytes(bytes); }, "'blk.0.attn_q.weight'", "TQ2_0", "multiple");
}

TEST_CASE("GGUF unknown tensor type: the file opens, reading that tensor names it and the type") {
  GgufWriter w;
  w.add_tensor("mystery.weight", {16}, 99u, std::vector<uint8_t>(40, 1));
  const std::vector<float> ok = {1, 2};
  w.add_float_tensor("fine.weight", {2}, GgmlType::F32, ok);
  const auto f = open_bytes(w.to_bytes());
  CHECK(read_f32(f, f.tensor("fine.weight")) == ok);
  const auto& t = f.tensor("mystery.weight");
  test::require_error([&] { (void)f.tensor_bytes(t); }, "bad.gguf", "'mystery.weight'", "type 99");
  test::require_error([&] { read_f32(f, t); }, "'mystery.weight'", "99");
  test::require_error([&] { read_ternary(f, t); }, "'mystery.weight'", "99");
  // A known but non-ternary type asked for as ternary.
  const auto sample = open_bytes(test::sample_gguf());
  test::require_error([&] { read_ternary(sample, sample.tensor("token_embd.weight")); },
                      "'token_embd.weight'", "Q8_0", "ternary weight must be");
}

TEST_CASE("GGUF duplicate keys/tensors, bad alignment, and arrays nested too deep") {
  // Rename "test.i64" to "test.f64" in place: an exact duplicate key.
  auto bytes = test::sample_gguf();
  const size_t i64 = test::find_bytes(bytes, "test.i64");
  std::memcpy(bytes.data() + i64, "test.f64", 8);
  test::require_error([&] { open_bytes(bytes); }, "'test.f64'", "appears twice");

  GgufWriter dup;
  dup.add_tensor("t", {1}, GgmlType::F32, std::vector<uint8_t>(4));
  dup.add_tensor("t", {1}, GgmlType::F32, std::vector<uint8_t>(4));
  test::require_error([&] { open_bytes(dup.to_bytes()); }, "'t'", "appears twice");

  for (uint32_t align : {0u, 3u, 48u}) {
    GgufWriter w;
    w.set_u32("general.alignment", align);
    test::require_error([&] { open_bytes(w.to_bytes()); }, "general.alignment");
  }
  GgufWriter s;
  s.set_string("general.alignment", "32");
  test::require_error([&] { open_bytes(s.to_bytes()); }, "general.alignment", "string");

  GgufArray deep;
  deep.element_type = GgufType::U8;
  deep.unsigned_values = {1};
  for (int level = 0; level < 40; ++level) {
    GgufArray outer;
    outer.element_type = GgufType::ARRAY;
    outer.arrays.push_back(std::move(deep));
    deep = std::move(outer);
  }
  GgufWriter nest;
  nest.set("deep", GgufValue::of_array(deep));
  test::require_error([&] { open_bytes(nest.to_bytes()); }, "'deep'", "nests arrays deeper");
}

TEST_CASE("GGUF ternary data with a corrupt scale or code is caught when decoded") {
  auto bytes = test::sample_gguf();
  const auto good = open_bytes(bytes);
  const auto& v = good.tensor("blk.0.attn_v.weight");  // I2_S: scale at byte n/4
  const size_t scale_at = good.data_offset() + v.offset + 512 / 4;
  test::poke<float>(bytes, scale_at, -1.0f);
  const auto bad = open_bytes(bytes);
  test::require_error([&] { read_ternary(bad, bad.tensor("blk.0.attn_v.weight")); }, "bad.gguf",
                      "'blk.0.attn_v.weight'", "I2_S scale");
}
