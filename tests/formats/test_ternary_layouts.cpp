// Ternary layouts: encode -> decode round trips, hand-built byte examples that pin the bit
// positions of formats.md (so a wrong layout guess fails loudly), and the sanity checks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/core/half.h"
#include "runtime/formats/ternary_decode.h"
#include "runtime/formats/ternary_encode.h"
#include "ternary_test_data.h"
#include "test_util.h"

using namespace ternvk;

namespace {

RawTensor raw(int64_t rows, int64_t cols, const std::vector<uint8_t>& bytes) {
  return RawTensor{"test tensor 'w'", rows, cols, bytes};
}

void check_same(const TernaryMatrix& got, const TernaryMatrix& want) {
  CHECK(got.rows == want.rows);
  CHECK(got.cols == want.cols);
  CHECK(got.values == want.values);
}

}  // namespace

TEST_CASE("I2_S round trip: random ternary -> encode -> decode is identical") {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{4, 32}, {3, 256}, {128, 640}, {1, 128}}) {
    const auto m = test::random_ternary(rows, cols, 0.0371f, static_cast<uint32_t>(rows * cols));
    const auto bytes = encode_i2_s(m);
    CHECK(bytes.size() == static_cast<size_t>(rows * cols / 4 + 32));
    const auto got = decode_i2_s(raw(rows, cols, bytes));
    check_same(got, m);
    CHECK(got.scale == m.scale);  // stored as f32: exact
  }
}

TEST_CASE("HF packed round trip: random ternary [out, in] -> U8 [out/4, in] -> identical") {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{4, 1}, {8, 3}, {64, 96}, {2560 / 8, 40}}) {
    const auto m = test::random_ternary(rows, cols, 1.25f, static_cast<uint32_t>(rows + cols));
    const auto packed = pack_hf_ternary(m);
    CHECK(packed.size() == static_cast<size_t>(rows / 4 * cols));
    const auto got = decode_hf_packed(raw(rows / 4, cols, packed), 1.25f);
    check_same(got, m);
    CHECK(got.scale == 1.25f);
  }
}

TEST_CASE("TQ2_0 and TQ1_0 round trip: our encoders agree with our decoders") {
  const auto m = test::random_ternary(6, 512, 0.02f, 7);
  const auto tq2 = decode_tq2_0(raw(6, 512, encode_tq2_0(m)));
  const auto tq1 = decode_tq1_0(raw(6, 512, encode_tq1_0(m)));
  check_same(tq2, m);
  check_same(tq1, m);
  CHECK(tq2.scale == half_to_float(float_to_half(0.02f)));
  CHECK(tq1.scale == tq2.scale);
}

TEST_CASE("I2_S hand-built bytes, 128-block x86 layout (uncertain: ARM builds use 64-blocks)") {
  // formats.md: value j of a 128-block is in byte j % 32 at shift 6 - 2*(j/32); 0=-1, 1=0, 2=+1.
  // Values: v[0] = +1, v[33] = -1, v[127] = +1, all others 0.
  std::vector<uint8_t> bytes(128 / 4 + 32, 0x55);  // 0x55: four zeros (code 1) per byte
  bytes[0] = 0x95;   // j=0 code 2 at shift 6, j=32/64/96 code 1 at shifts 4/2/0
  bytes[1] = 0x45;   // j=1 code 1 <<6, j=33 code 0 <<4, j=65 code 1 <<2, j=97 code 1 <<0
  bytes[31] = 0x56;  // j=31/63/95 code 1, j=127 code 2 at shift 0
  const float scale = 0.5f;
  std::memcpy(bytes.data() + 32, &scale, 4);
  std::fill(bytes.begin() + 36, bytes.end(), 0);
  const auto m = decode_i2_s(raw(1, 128, bytes));
  std::vector<int8_t> want(128, 0);
  want[0] = 1;
  want[33] = -1;
  want[127] = 1;
  CHECK(m.values == want);
  CHECK(m.scale == 0.5f);
  CHECK(encode_i2_s(m) == bytes);
}

TEST_CASE("HF packed hand-built bytes: packed row r holds rows r + i*out/4 at bits 2i") {
  // out = 8, in = 1: packed row 0 holds rows 0,2,4,6; packed row 1 holds rows 1,3,5,7.
  // W = [+1, 0, -1, 0, 0, 0, +1, -1]; stored code = w + 1.
  const std::vector<uint8_t> packed = {0x92, 0x15};
  const auto m = decode_hf_packed(raw(2, 1, packed), 2.0f);
  CHECK(m.rows == 8);
  CHECK(m.values == std::vector<int8_t>{1, 0, -1, 0, 0, 0, 1, -1});
}

TEST_CASE("TQ2_0 hand-built block: element i in byte (i/128)*32 + i%32 at bits 2*((i%128)/32)") {
  std::vector<uint8_t> block(66, 0x55);  // all zeros
  block[0] = 0x52;   // element 0: code 2 at bits 0..1; element 32: code 0 at bits 2..3; 64, 96: 0
  block[32] = 0x95;  // elements 128, 160, 192: code 1; element 224: code 2 at bits 6..7
  const uint16_t d = float_to_half(0.25f);
  std::memcpy(block.data() + 64, &d, 2);
  const auto m = decode_tq2_0(raw(1, 256, block));
  std::vector<int8_t> want(256, 0);
  want[0] = 1;
  want[32] = -1;
  want[224] = 1;
  CHECK(m.values == want);
  CHECK(m.scale == 0.25f);
}

TEST_CASE("code 3 is rejected in I2_S, TQ2_0 and HF packed data, naming the tensor") {
  const auto m = test::random_ternary(2, 256, 0.1f, 3);
  auto i2s = encode_i2_s(m);
  i2s[5] |= 0xc0;
  test::require_error([&] { decode_i2_s(raw(2, 256, i2s)); }, "test tensor 'w'", "value 5 ", "code 3");
  auto tq2 = encode_tq2_0(m);
  tq2[70] |= 0x03;  // second block, byte 4
  test::require_error([&] { decode_tq2_0(raw(2, 256, tq2)); }, "'w'", "TQ2_0 block 1 element 4 ", "code 3");
  std::vector<uint8_t> hf = pack_hf_ternary(test::random_ternary(4, 3, 1.0f, 4));
  hf[2] |= 0x30;
  test::require_error([&] { decode_hf_packed(raw(1, 3, hf), 1.0f); }, "'w'", "code 3", "[0, 2]");
}

TEST_CASE("TQ block scales must agree: one BitNet tensor has one scale") {
  const auto m = test::random_ternary(1, 512, 0.5f, 9);
  auto tq2 = encode_tq2_0(m);
  const uint16_t other = float_to_half(0.75f);
  std::memcpy(tq2.data() + 66 + 64, &other, 2);
  test::require_error([&] { decode_tq2_0(raw(1, 512, tq2)); }, "'w'", "block 1", "0.75", "block 0",
                      "0.5");
  auto tq1 = encode_tq1_0(m);
  std::memcpy(tq1.data() + 54 + 52, &other, 2);
  test::require_error([&] { decode_tq1_0(raw(1, 512, tq1)); }, "TQ1_0 block 1", "0.75");
  // Within fp16 rounding (one ulp) is accepted.
  const uint16_t next = static_cast<uint16_t>(float_to_half(0.5f) + 1);
  std::memcpy(tq2.data() + 66 + 64, &next, 2);
  CHECK(decode_tq2_0(raw(1, 512, tq2)).scale == 0.5f);
  // An all-zero block may carry any d (llama.cpp writes 0 there).
  TernaryMatrix z = m;
  std::fill(z.values.begin() + 256, z.values.end(), 0);
  auto tqz = encode_tq2_0(z);
  const uint16_t zero = 0;
  std::memcpy(tqz.data() + 66 + 64, &zero, 2);
  CHECK(decode_tq2_0(raw(1, 512, tqz)).values == z.values);
}

TEST_CASE("ternary scales must be finite and > 0") {
  auto m = test::random_ternary(1, 128, 1.0f, 1);
  for (float bad : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity()}) {
    m.scale = bad;
    auto bytes = encode_i2_s(m);
    test::require_error([&] { decode_i2_s(raw(1, 128, bytes)); }, "'w'", "I2_S scale", "> 0");
  }
  test::require_error([&] { decode_hf_packed(raw(1, 1, {0x55}), 0.0f); }, "'w'", "> 0");
}

TEST_CASE("float tensors must be ternary x one scale to be read as ternary") {
  std::vector<float> good = {0.5f, -0.5f, 0.0f, 0.5f};
  const auto m = ternary_from_floats(raw(2, 2, {}), good);
  CHECK(m.values == std::vector<int8_t>{1, -1, 0, 1});
  CHECK(m.scale == 0.5f);
  std::vector<float> bad = {0.5f, -0.25f, 0.0f, 0.5f};
  test::require_error([&] { ternary_from_floats(raw(2, 2, {}), bad); }, "'w'", "value 1", "row 0",
                      "-0.25", "0.5", "not ternary");
  const auto zeros = ternary_from_floats(raw(1, 3, {}), std::vector<float>(3, 0.0f));
  CHECK(zeros.scale == 1.0f);
}

TEST_CASE("ternary decoders check sizes and block multiples") {
  test::require_error([&] { decode_i2_s(raw(1, 100, std::vector<uint8_t>(57))); }, "multiple of 128");
  test::require_error([&] { decode_i2_s(raw(1, 128, std::vector<uint8_t>(63))); }, "needs 64 bytes",
                      "found 63");
  test::require_error([&] { decode_tq2_0(raw(1, 128, std::vector<uint8_t>(66))); }, "block size 256");
  test::require_error([&] { decode_tq1_0(raw(1, 256, std::vector<uint8_t>(53))); }, "needs 54");
  test::require_error([&] { decode_hf_packed(raw(-1, 4, {}), 1.0f); }, "invalid shape");
}
