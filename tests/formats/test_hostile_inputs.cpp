// Files made to hurt the loaders: JSON nested deep enough to overflow any recursion, counts that
// claim far more than the file holds, values of the wrong type or range, and NaN or infinity in
// float tensors. Each must be a ternvk::Error naming the file and the key or tensor, with host
// memory bounded by the file's size (measured with common/heap_limit.h).
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>

#include "common/heap_limit.h"
#include "runtime/formats/gguf.h"
#include "runtime/formats/hf_config.h"
#include "runtime/formats/hf_tensor_decode.h"
#include "runtime/formats/json_input.h"
#include "runtime/formats/safetensors.h"
#include "runtime/formats/tensor_decode.h"
#include "sample_files.h"
#include "test_util.h"

using namespace ternvk;

namespace {

constexpr size_t kDeep = 500000;  // far past the stack any recursive walk of it would need

std::string nested(size_t depth, const std::string& inner = "") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

std::string with(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::vector<uint8_t> safetensors_with_header(const std::string& header) {
  std::vector<uint8_t> out(8 + header.size());
  const uint64_t len = header.size();
  std::memcpy(out.data(), &len, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A GGUF v3 header (no tensors) announcing `kv_count` entries; the caller appends them.
std::vector<uint8_t> gguf_header(uint64_t kv_count) {
  std::vector<uint8_t> b;
  auto put = [&](const auto& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(v));
  };
  put(uint32_t{0x46554747});
  put(uint32_t{3});
  put(uint64_t{0});
  put(kv_count);
  return b;
}

template <typename T>
void append(std::vector<uint8_t>& b, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(v));
}

void append_key(std::vector<uint8_t>& b, const std::string& key) {
  append(b, uint64_t(key.size()));
  b.insert(b.end(), key.begin(), key.end());
}

constexpr size_t kMiB = size_t{1} << 20;

}  // namespace

TEST_CASE("JSON nested half a million levels deep is refused before parsing, naming the file") {
  // Each value sits where the loaders used to print it in an error (json::dump() recurses).
  test::require_error([&] { parse_hf_config_json("{\"hidden_size\": " + nested(kDeep) + "}", "deep/config.json"); },
                      "deep/config.json", "nested deeper than 64 levels");
  const auto dir = test::scratch_dir("deep_json");
  write_text(dir / "config.json", "{\"eos_token_id\": " + nested(kDeep, "1") + "}");
  test::require_error([&] { (void)load_hf_config(dir); }, (dir / "config.json").string(), "nested deeper");

  const std::string header = "{\"t\": {\"dtype\": \"F32\", \"shape\": [" + nested(kDeep) + "], \"data_offsets\": [0, 0]}}";
  test::require_error([&] { (void)SafetensorsFile::from_bytes(safetensors_with_header(header), "deep.safetensors"); },
                      "deep.safetensors", "nested deeper");

  write_text(dir / "model.safetensors.index.json", "{\"weight_map\": {\"a\": " + nested(kDeep) + "}}");
  test::require_error([&] { (void)SafetensorsModel::open(dir); }, "model.safetensors.index.json", "nested deeper");

  // The limit is exact: 64 levels parse, 65 do not; brackets inside strings do not count.
  CHECK(parse_json_text(nested(64), "x").is_array());
  CHECK(parse_json_text("[\"" + std::string(1000, '[') + "\"]", "x").is_array());
  test::require_error([&] { (void)parse_json_text(nested(65), "x.json"); }, "x.json", "at byte 64");
}

TEST_CASE("config.json values of the wrong type or out of range name the file and the key") {
  const std::string good = test::kSampleConfigJson;
  test::require_error([&] { parse_hf_config_json(with(good, "2560", "{\"a\": [1, 2]}"), "c.json"); }, "c.json",
                      "\"hidden_size\"", "an object of 1 key");
  test::require_error([&] { parse_hf_config_json(with(good, "128001", "[1, \"x\"]"), "c.json"); }, "c.json",
                      "\"eos_token_id\"", "\"x\"");
  test::require_error([&] { parse_hf_config_json(with(good, "128001", "128256"), "c.json"); }, "c.json",
                      "\"eos_token_id\"", "outside the vocabulary of 128256");
  test::require_error([&] { parse_hf_config_json(with(good, "128000", "-5"), "c.json"); }, "c.json",
                      "\"bos_token_id\"", "-5");
  test::require_error([&] { parse_hf_config_json(with(good, "128000", "18446744073709551615"), "c.json"); },
                      "\"bos_token_id\"", "18446744073709551615");
  test::require_error([&] { parse_hf_config_json(with(good, "true", std::string(5000, 'x')), "c.json"); }, "c.json",
                      "not valid JSON");
  // A long string is clipped in the message, not copied whole.
  const std::string message = test::error_message(
      [&] { parse_hf_config_json(with(good, "\"autobitlinear\"", "\"" + std::string(100000, 'r') + "\""), "c.json"); });
  CHECK(message.find("\"quantization_config.linear_class\" is \"rrr") != std::string::npos);
  CHECK(message.size() < 2000);
}

TEST_CASE("a safetensors shape holding anything but sizes names the tensor") {
  const std::string header = R"({"w": {"dtype": "F32", "shape": [2, {"a": [[[1]]]}], "data_offsets": [0, 8]}})";
  test::require_error([&] { (void)SafetensorsFile::from_bytes(safetensors_with_header(header), "s.safetensors"); },
                      "s.safetensors", "tensor 'w'", "\"shape\" holds an object of 1 key");
}

TEST_CASE("a GGUF claiming millions of metadata entries is refused without allocating for them") {
  // 8 MiB: room for ~645k minimal entries. One real entry, then an invalid type.
  const size_t size = 8 * kMiB;
  std::vector<uint8_t> b = gguf_header((size - 24) / 13);
  append_key(b, "a");
  append(b, uint32_t{4});
  append(b, uint32_t{1});
  append_key(b, "b");
  append(b, uint32_t{0xffff});
  b.resize(size, 0);
  test::HeapLimit heap(4 * kMiB);  // a reservation for the claimed count would need ~140 MiB
  test::require_error([&] { (void)GgufFile::from_bytes(std::move(b), "claims.gguf"); }, "claims.gguf",
                      "invalid metadata value type 65535");
  MESSAGE("peak host memory while parsing: " << heap.peak() << " bytes");
}

TEST_CASE("GGUF metadata that would take many times the file's size in memory is refused, naming the key") {
  const size_t size = 8 * kMiB;
  SUBCASE("an array of 8M u8 (8 bytes each in memory)") {
    std::vector<uint8_t> b = gguf_header(1);
    append_key(b, "huge.bytes");
    append(b, uint32_t{9});   // ARRAY
    append(b, uint32_t{0});   // of U8
    append(b, uint64_t(size - b.size() - 8));
    b.resize(size, 7);
    test::HeapLimit heap(24 * kMiB);  // growing a vector of 8M uint64 would take 64-128 MiB
    test::require_error([&] { (void)GgufFile::from_bytes(std::move(b), "bytes.gguf"); }, "bytes.gguf",
                        "'huge.bytes' would take more host memory");
  }
  SUBCASE("an array of 700k empty arrays (128 bytes each in memory)") {
    std::vector<uint8_t> b = gguf_header(1);
    append_key(b, "huge.nest");
    append(b, uint32_t{9});  // ARRAY
    append(b, uint32_t{9});  // of ARRAY
    const uint64_t n = (size - b.size() - 8) / 12;
    append(b, n);
    for (uint64_t i = 0; i < n; ++i) {
      append(b, uint32_t{0});  // each: U8, no elements
      append(b, uint64_t{0});
    }
    test::HeapLimit heap(24 * kMiB);
    test::require_error([&] { (void)GgufFile::from_bytes(std::move(b), "nest.gguf"); }, "nest.gguf",
                        "'huge.nest' would take more host memory");
  }
}

TEST_CASE("NaN and infinity in float tensors are refused when read, naming the tensor and the value") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> norm = {1, 2, 3, 4, 5, 6, 7, 8};
  GgufWriter w;
  w.set_string("general.architecture", "bitnet");
  norm[5] = nan;
  w.add_float_tensor("f32.nan", {8}, GgmlType::F32, norm);
  norm[5] = 6;
  norm[2] = -inf;
  w.add_float_tensor("f16.inf", {4, 2}, GgmlType::F16, norm);
  norm[2] = 3;
  norm[7] = nan;
  w.add_float_tensor("bf16.nan", {8}, GgmlType::BF16, norm);
  norm[7] = 1e6f;  // finite in F32, but past fp16's 65504
  w.add_float_tensor("f32.big", {8}, GgmlType::F32, norm);
  std::vector<uint8_t> q8(34, 1);
  const uint16_t inf_half = 0x7c00;
  std::memcpy(q8.data(), &inf_half, 2);
  w.add_tensor("q8.inf_scale", {32, 1}, GgmlType::Q8_0, q8);
  const auto f = GgufFile::from_bytes(w.to_bytes(), "nan.gguf");
  test::require_error([&] { (void)read_f32(f, f.tensor("f32.nan")); }, "nan.gguf: tensor 'f32.nan'", "value 5",
                      "is NaN");
  test::require_error([&] { (void)read_f16_bits(f, f.tensor("f16.inf")); }, "tensor 'f16.inf'",
                      "value 2 (row 0, col 2) is -inf");
  test::require_error([&] { (void)read_f32(f, f.tensor("bf16.nan")); }, "tensor 'bf16.nan'", "value 7", "NaN");
  CHECK(read_f32(f, f.tensor("f32.big")).at(7) == 1e6f);  // fine as float (norms stay f32)
  test::require_error([&] { (void)read_f16_bits(f, f.tensor("f32.big")); }, "tensor 'f32.big'", "value 7",
                      "beyond its range of 65504");
  test::require_error([&] { (void)read_f32(f, f.tensor("q8.inf_scale")); }, "tensor 'q8.inf_scale'",
                      "the scale of its Q8_0 block");
  test::require_error([&] { (void)read_f16_bits(f, f.tensor("q8.inf_scale")); }, "tensor 'q8.inf_scale'");

  SafetensorsWriter hf;
  std::vector<float> ones(16, 1.0f);
  ones[9] = nan;
  hf.add_floats("model.norm.weight", SafetensorsDtype::F16, {16}, ones);
  const auto dir = test::scratch_dir("nan_hf");
  hf.write(dir / "model.safetensors");
  const auto model = SafetensorsModel::open(dir);
  test::require_error([&] { (void)read_hf_f32(model, "model.norm.weight"); }, "model.safetensors",
                      "tensor 'model.norm.weight'", "value 9", "NaN");
  test::require_error([&] { (void)read_hf_f16_bits(model, "model.norm.weight"); }, "tensor 'model.norm.weight'");
}
