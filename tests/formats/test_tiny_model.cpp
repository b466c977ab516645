// The shared tiny-random bitnet model: its metadata, and its ternary tensors decoded from TQ2_0 and
// TQ1_0 (written by llama.cpp's llama-quantize, an independent writer) against the F32 original.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "runtime/formats/gguf.h"
#include "runtime/formats/tensor_decode.h"
#include "test_util.h"

using namespace ternvk;

namespace {

bool is_linear_weight(const std::string& name) {
  for (const char* part : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
    if (name.find(std::string(".") + part + ".") != std::string::npos) return true;
  }
  return false;
}

void check_ternary_matches_f32(const std::string& quantized_file) {
  const auto f32 = GgufFile::open(test::model_path("tiny-random-f32.gguf"));
  const auto q = GgufFile::open(test::model_path(quantized_file));
  int checked = 0;
  for (const GgufTensorInfo& info : f32.tensors()) {
    if (!is_linear_weight(info.name)) continue;
    CAPTURE(info.name);
    const TernaryMatrix reference = read_ternary(f32, info);
    const GgufTensorInfo& qinfo = q.tensor(info.name);
    const TernaryMatrix m = read_ternary(q, qinfo);
    REQUIRE(m.rows == reference.rows);
    REQUIRE(m.cols == reference.cols);
    REQUIRE(m.rows == info.ne[1]);
    CHECK(m.values == reference.values);
    CHECK(std::fabs(m.scale - reference.scale) <= 4e-4f * reference.scale);
    // The same check on dequantized values, the form the brief states it in.
    const std::vector<float> expected = read_f32(f32, info);
    const std::vector<float> got = read_f32(q, qinfo);
    REQUIRE(got.size() == expected.size());
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::fabs(got[i] - expected[i]) > 4e-4f * std::fabs(reference.scale)) ++bad;
    }
    CHECK(bad == 0);
    ++checked;
  }
  CHECK(checked == 14);  // 7 linear weights x 2 layers
}

}  // namespace

TEST_CASE("tiny-random-f32.gguf metadata reads as the bitnet architecture it is") {
  const auto f = GgufFile::open(test::model_path("tiny-random-f32.gguf"));
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.get_string("general.architecture") == "bitnet");
  CHECK(f.get_u32("bitnet.embedding_length") == 256);
  CHECK(f.get_u32("bitnet.block_count") == 2);
  CHECK(f.get_u32("bitnet.attention.head_count") == 8);
  CHECK(f.get_u32("bitnet.attention.head_count_kv") == 2);
  CHECK(f.get_u32("bitnet.feed_forward_length") == 768);
  CHECK(f.get_u32("bitnet.vocab_size") == 32000);
  CHECK(f.get_f32("bitnet.attention.layer_norm_rms_epsilon") == doctest::Approx(1e-5));
  CHECK(f.get_i64("bitnet.context_length") == 2048);
  CHECK(f.get_string("tokenizer.ggml.model") == "llama");
  CHECK(f.get_string_array("tokenizer.ggml.tokens").size() == 32000);
  CHECK(f.get_f32_array("tokenizer.ggml.scores").size() == 32000);
  CHECK(f.get_i32_array("tokenizer.ggml.token_type").size() == 32000);
  CHECK(f.get_u32("tokenizer.ggml.bos_token_id") == 1);
  CHECK(f.get_bool("tokenizer.ggml.add_bos_token") == true);
  CHECK(f.get_u32("no.such.key", 7) == 7);
  test::require_error([&] { (void)f.get_u32("no.such.key"); }, "no.such.key", "missing");
  test::require_error([&] { (void)f.get_string("bitnet.block_count"); }, "bitnet.block_count",
                      "u32", "expected string");

  CHECK(f.tensors().size() == 24);
  const GgufTensorInfo& embd = f.tensor("token_embd.weight");
  CHECK(embd.has_type(GgmlType::F16));
  CHECK(embd.ne[0] == 256);
  CHECK(embd.ne[1] == 32000);
  const GgufTensorInfo& q = f.tensor("blk.0.attn_q.weight");
  CHECK(q.n_dims == 2);
  CHECK(q.cols() == 256);
  CHECK(q.rows() == 256);
  CHECK(f.tensor("blk.1.attn_k.weight").rows() == 64);
  CHECK(f.find_tensor("output.weight") == nullptr);  // tied embeddings
  const std::vector<float> norm = read_f32(f, f.tensor("output_norm.weight"));
  CHECK(norm.size() == 256);
}

TEST_CASE("TQ2_0 tiny model decodes to the F32 file's ternary weights within 4e-4 relative") {
  check_ternary_matches_f32("tiny-random-tq2_0.gguf");
}

TEST_CASE("TQ1_0 tiny model decodes to the F32 file's ternary weights within 4e-4 relative") {
  check_ternary_matches_f32("tiny-random-tq1_0.gguf");
}

TEST_CASE("Q8_0 token embedding matches the F16 original within Q8_0 error") {
  const auto f32 = GgufFile::open(test::model_path("tiny-random-f32.gguf"));
  const auto q = GgufFile::open(test::model_path("tiny-random-tq2_0.gguf"));
  const GgufTensorInfo& ref_info = f32.tensor("token_embd.weight");
  const GgufTensorInfo& q_info = q.tensor("token_embd.weight");
  REQUIRE(q_info.has_type(GgmlType::Q8_0));
  const std::vector<float> ref = read_f32(f32, ref_info);
  const std::vector<float> got = read_f32(q, q_info);
  REQUIRE(got.size() == ref.size());
  // Q8_0: per block of 32, d = amax / 127 (stored fp16), so the error is at most d/2 plus the fp16
  // rounding of d times |q| <= 127.
  size_t bad = 0;
  for (size_t b = 0; b < ref.size() / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(ref[b * 32 + j]));
    const float tolerance = amax / 127.0f * 0.5f + amax * 1e-3f + 1e-7f;
    for (size_t j = 0; j < 32; ++j) {
      if (std::fabs(got[b * 32 + j] - ref[b * 32 + j]) > tolerance) ++bad;
    }
  }
  CHECK(bad == 0);
  // The fp16 path of an F16 tensor is bit-exact, and of Q8_0 agrees with the float path.
  const std::vector<uint16_t> bits = read_f16_bits(f32, ref_info);
  REQUIRE(bits.size() == ref.size());
  const auto raw = f32.tensor_bytes(ref_info);
  CHECK(std::memcmp(bits.data(), raw.data(), raw.size()) == 0);
  CHECK(read_f16_bits(q, q_info).size() == got.size());
}
