// GgufWriter -> GgufFile: every metadata type (nested arrays included), v2 and v3, custom
// alignment, tensors, and the typed getters' conversions and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "runtime/formats/gguf.h"
#include "runtime/formats/gguf_writer.h"
#include "runtime/formats/tensor_decode.h"
#include "test_util.h"

using namespace ternvk;

namespace {

GgufArray nested_array() {
  GgufArray inner_a;
  inner_a.element_type = GgufType::I16;
  inner_a.signed_values = {-3, 4};
  GgufArray inner_b;
  inner_b.element_type = GgufType::STRING;
  inner_b.strings = {"x", "", "yz"};
  GgufArray outer;
  outer.element_type = GgufType::ARRAY;
  outer.arrays = {inner_a, inner_b};
  return outer;
}

GgufWriter writer_with_every_type(uint32_t version) {
  GgufWriter w(version);
  w.set("t.u8", GgufValue::u8(250));
  w.set("t.i8", GgufValue::i8(-100));
  w.set("t.u16", GgufValue::u16(65000));
  w.set("t.i16", GgufValue::i16(-32000));
  w.set("t.u32", GgufValue::u32(4000000000u));
  w.set("t.i32", GgufValue::i32(-2000000000));
  w.set("t.f32", GgufValue::f32(1.5f));
  w.set("t.bool", GgufValue::boolean(true));
  w.set("t.string", GgufValue::string("héllo"));
  w.set("t.u64", GgufValue::u64(uint64_t{1} << 40));
  w.set("t.i64", GgufValue::i64(-(int64_t{1} << 40)));
  w.set("t.f64", GgufValue::f64(0.125));
  w.set("t.strings", GgufValue::string_array({"a", "bb", ""}));
  w.set("t.f32s", GgufValue::f32_array({0.5f, -2.0f}));
  w.set("t.i32s", GgufValue::i32_array({1, -2, 3}));
  w.set("t.u32s", GgufValue::u32_array({7, 8}));
  GgufArray bools;
  bools.element_type = GgufType::BOOL;
  bools.unsigned_values = {1, 0, 1};
  w.set("t.bools", GgufValue::of_array(bools));
  w.set("t.nested", GgufValue::of_array(nested_array()));
  return w;
}

}  // namespace

TEST_CASE("GGUF writer and reader agree on every metadata type, v2 and v3") {
  for (uint32_t version : {2u, 3u}) {
    CAPTURE(version);
    const auto f = GgufFile::from_bytes(writer_with_every_type(version).to_bytes(), "every-type.gguf");
    CHECK(f.version() == version);
    CHECK(f.metadata().size() == 18);
    CHECK(f.find("t.u8")->type == GgufType::U8);
    CHECK(f.get_u32("t.u8") == 250);
    CHECK(f.get_i32("t.i8") == -100);
    CHECK(f.get_u32("t.u16") == 65000);
    CHECK(f.get_i32("t.i16") == -32000);
    CHECK(f.get_u32("t.u32") == 4000000000u);
    CHECK(f.get_i32("t.i32") == -2000000000);
    CHECK(f.get_f32("t.f32") == 1.5f);
    CHECK(f.get_bool("t.bool") == true);
    CHECK(f.get_string("t.string") == "héllo");
    CHECK(f.get_u64("t.u64") == uint64_t{1} << 40);
    CHECK(f.get_i64("t.i64") == -(int64_t{1} << 40));
    CHECK(f.get_f32("t.f64") == 0.125f);
    CHECK(f.find("t.f64")->type == GgufType::F64);
    CHECK(f.get_string_array("t.strings") == std::vector<std::string>{"a", "bb", ""});
    CHECK(f.get_f32_array("t.f32s") == std::vector<float>{0.5f, -2.0f});
    CHECK(f.get_i32_array("t.i32s") == std::vector<int32_t>{1, -2, 3});
    CHECK(f.get_i32_array("t.u32s") == std::vector<int32_t>{7, 8});
    CHECK(f.find("t.bools")->array.unsigned_values == std::vector<uint64_t>{1, 0, 1});
    const GgufArray& nested = f.find("t.nested")->array;
    REQUIRE(nested.element_type == GgufType::ARRAY);
    REQUIRE(nested.arrays.size() == 2);
    CHECK(nested.arrays[0].element_type == GgufType::I16);
    CHECK(nested.arrays[0].signed_values == std::vector<int64_t>{-3, 4});
    CHECK(nested.arrays[1].strings == std::vector<std::string>{"x", "", "yz"});
    CHECK(f.tensors().empty());
  }
}

TEST_CASE("GGUF integer getters accept any integer type that fits and name the key otherwise") {
  const auto f = GgufFile::from_bytes(writer_with_every_type(3).to_bytes(), "every-type.gguf");
  CHECK(f.get_i64("t.u32") == 4000000000);
  CHECK(f.get_u64("t.u8") == 250);
  CHECK(f.get_f32("t.i8") == -100.0f);
  test::require_error([&] { (void)f.get_u32("t.i8"); }, "every-type.gguf", "t.i8", "-100", "does not fit");
  test::require_error([&] { (void)f.get_u32("t.u64"); }, "t.u64", "does not fit");
  test::require_error([&] { (void)f.get_i32("t.u32"); }, "t.u32", "4000000000");
  test::require_error([&] { (void)f.get_bool("t.u8"); }, "t.u8", "is u8", "expected bool");
  test::require_error([&] { (void)f.get_string_array("t.f32s"); }, "t.f32s", "array of f32",
                      "expected array of string");
  test::require_error([&] { (void)f.get_i32_array("t.strings"); }, "t.strings", "array of string");
  CHECK(f.get_string("missing", "fallback") == "fallback");
  test::require_error([&] { (void)f.get_string("t.u8", "fallback"); }, "t.u8", "expected string");
}

TEST_CASE("GGUF tensors round-trip with their shapes, types and alignment") {
  for (uint32_t alignment : {32u, 64u, 1u}) {
    CAPTURE(alignment);
    GgufWriter w;
    if (alignment != 32) w.set_alignment(alignment);
    w.set_string("general.architecture", "bitnet");
    std::vector<float> a(5 * 3), b(7);
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.25f - 1.0f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i);
    w.add_float_tensor("a", {5, 3}, GgmlType::F32, a);
    w.add_float_tensor("b", {7}, GgmlType::F16, b);
    w.add_float_tensor("c", {7, 1, 1, 1}, GgmlType::BF16, b);
    const auto f = GgufFile::from_bytes(w.to_bytes(), "tensors.gguf");
    CHECK(f.alignment() == alignment);
    CHECK(f.data_offset() % alignment == 0);
    REQUIRE(f.tensors().size() == 3);
    const GgufTensorInfo& ta = f.tensor("a");
    CHECK(ta.n_dims == 2);
    CHECK(ta.cols() == 5);
    CHECK(ta.rows() == 3);
    CHECK(ta.offset % alignment == 0);
    CHECK(read_f32(f, ta) == a);
    CHECK(read_f32(f, f.tensor("b")) == b);  // small integers are exact in fp16 and bf16
    CHECK(read_f32(f, f.tensor("c")) == b);
    CHECK(f.tensor("c").n_dims == 4);
  }
}

TEST_CASE("GGUF writer refuses data whose size does not match the shape") {
  GgufWriter w;
  test::require_error([&] { w.add_tensor("x", {256, 2}, GgmlType::TQ2_0, std::vector<uint8_t>(100)); },
                      "'x'", "132", "100");
  test::require_error([&] { w.add_tensor("y", {100}, GgmlType::TQ2_0, std::vector<uint8_t>(66)); },
                      "'y'", "multiple");
}

TEST_CASE("GGUF file on disk: open, move, and a missing path names the path") {
  const auto dir = test::scratch_dir("gguf_disk");
  GgufWriter w;
  w.set_u32("k", 5);
  w.write(dir / "small.gguf");
  GgufFile f = GgufFile::open(dir / "small.gguf");
  GgufFile moved = std::move(f);
  CHECK(moved.get_u32("k") == 5);
  CHECK(moved.path().find("small.gguf") != std::string::npos);
  test::require_error([&] { (void)GgufFile::open(dir / "nope.gguf"); }, "nope.gguf", "cannot open");
  test::require_error([&] { (void)GgufFile::open(dir); }, "not a regular file");
}

TEST_CASE("vocab-only tokenizer GGUFs open (no tensors) and expose their arrays") {
  const auto f = GgufFile::open(test::shared_path("data/tokenizers/ggml-vocab-gpt-2.gguf"));
  CHECK(f.tensors().empty());
  CHECK(f.get_string("tokenizer.ggml.model") == "gpt2");
  CHECK(f.get_string_array("tokenizer.ggml.merges").size() == 50000);
  CHECK(f.get_i32_array("tokenizer.ggml.token_type").size() == 50257);
  const auto l3 = GgufFile::open(test::shared_path("data/tokenizers/llama3/llama3-vocab.gguf"));
  CHECK(l3.get_string_array("tokenizer.ggml.tokens").size() == 128256);
  CHECK(l3.get_u32("tokenizer.ggml.bos_token_id") == 128000);
}
