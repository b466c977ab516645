// Seeded mutation fuzzing of small valid GGUF and safetensors files: byte flips, truncations,
// inserted garbage and large values over length fields. Opening and decoding every tensor may only
// ever succeed or throw ternvk::Error: any other exception fails, and a crash fails the binary.
// The JSON inputs (config.json, the safetensors header) get JSON-aware mutations as well
// (common/json_fuzz.h), and their errors must name the file.
#include <doctest/doctest.h>

#include <chrono>
#include <random>

#include "common/json_fuzz.h"
#include "runtime/formats/gguf.h"
#include "runtime/formats/hf_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/formats/tensor_decode.h"
#include "runtime/formats/ternary_decode.h"
#include "sample_files.h"
#include "test_util.h"

using namespace ternvk;

namespace {

constexpr int kIterations = 10000;

std::vector<uint8_t> mutate(const std::vector<uint8_t>& seed, std::mt19937_64& rng) {
  std::vector<uint8_t> bytes = seed;
  auto pos = [&](size_t size) { return size == 0 ? 0 : static_cast<size_t>(rng() % size); };
  const int mutations = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < mutations; ++i) {
    switch (rng() % 6) {
      case 0:  // flip bits in one byte
        if (!bytes.empty()) bytes[pos(bytes.size())] ^= static_cast<uint8_t>(1 + rng() % 255);
        break;
      case 1:  // truncate
        bytes.resize(pos(bytes.size() + 1));
        break;
      case 2: {  // insert garbage
        const size_t at = pos(bytes.size() + 1);
        std::vector<uint8_t> junk(1 + rng() % 16);
        for (auto& b : junk) b = static_cast<uint8_t>(rng());
        bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), junk.begin(), junk.end());
        break;
      }
      case 3: {  // a length-like field: overwrite 8 bytes with an interesting value
        if (bytes.size() < 8) break;
        static constexpr uint64_t kInteresting[] = {0, 1, 0x7f, 0xff, 0xffff, 0xffffffff,
                                                    uint64_t{1} << 32, uint64_t{1} << 62,
                                                    ~uint64_t{0}, ~uint64_t{0} - 7};
        const uint64_t v = kInteresting[rng() % std::size(kInteresting)];
        std::memcpy(bytes.data() + pos(bytes.size() - 7), &v, 8);
        break;
      }
      case 4: {  // a 4-byte field (types, n_dims, version)
        if (bytes.size() < 4) break;
        const uint32_t v = static_cast<uint32_t>(rng() % 64);
        std::memcpy(bytes.data() + pos(bytes.size() - 3), &v, 4);
        break;
      }
      default:  // delete a range
        if (!bytes.empty()) {
          const size_t at = pos(bytes.size());
          const size_t n = std::min<size_t>(1 + rng() % 16, bytes.size() - at);
          bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                      bytes.begin() + static_cast<std::ptrdiff_t>(at + n));
        }
        break;
    }
  }
  return bytes;
}

void exercise_gguf(std::vector<uint8_t> bytes) {
  const auto f = GgufFile::from_bytes(std::move(bytes), "fuzz.gguf");
  for (const auto& [key, value] : f.metadata()) {
    try { (void)f.get_u32(key); } catch (const Error&) {}
    try { (void)f.get_f32_array(key); } catch (const Error&) {}
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    try { (void)read_f32(f, t); } catch (const Error&) {}
    try { (void)read_f16_bits(f, t); } catch (const Error&) {}
    try { (void)read_ternary(f, t); } catch (const Error&) {}
  }
}

void exercise_safetensors(std::vector<uint8_t> bytes) {
  const auto f = SafetensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
  for (const SafetensorsTensor& t : f.tensors()) {
    const auto data = f.tensor_bytes(t);
    if (t.dtype == SafetensorsDtype::U8 && t.shape.size() == 2) {
      try {
        (void)decode_hf_packed(RawTensor{"fuzz", t.shape[0], t.shape[1], data}, 1.0f);
      } catch (const Error&) {}
    }
  }
}

template <typename Exercise>
void fuzz(const std::vector<uint8_t>& seed, uint64_t rng_seed, Exercise exercise) {
  std::mt19937_64 rng(rng_seed);
  int errors = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::vector<uint8_t> bytes = mutate(seed, rng);
    try {
      exercise(std::move(bytes));
    } catch (const Error&) {
      ++errors;
    } catch (const std::exception& e) {
      FAIL("iteration " << i << " (seed " << rng_seed << "): non-ternvk exception: " << e.what());
    }
  }
  MESSAGE(errors << " of " << kIterations << " mutated files were rejected with ternvk::Error");
  CHECK(errors > 0);  // the mutations do break files: the fuzzer is doing something
}

}  // namespace

TEST_CASE("fuzz: mutated GGUF files only ever produce ternvk::Error") {
  fuzz(test::sample_gguf(), 20240601, exercise_gguf);
  fuzz(test::sample_gguf(2), 7, exercise_gguf);
}

TEST_CASE("fuzz: mutated safetensors files only ever produce ternvk::Error") {
  fuzz(test::sample_safetensors(), 1234, exercise_safetensors);
}

TEST_CASE("fuzz: mutated config.json files only ever produce ternvk::Error naming the file") {
  test::fuzz_json(test::kSampleConfigJson, 99, 6000, "fuzz/config.json",
                  [](const std::string& text) { (void)parse_hf_config_json(text, "fuzz/config.json"); });
}

TEST_CASE("fuzz: mutated safetensors headers only ever produce ternvk::Error naming the file") {
  const std::vector<uint8_t> seed = test::sample_safetensors();
  uint64_t header_len;
  std::memcpy(&header_len, seed.data(), 8);
  const std::string header(reinterpret_cast<const char*>(seed.data() + 8), header_len);
  const std::vector<uint8_t> data(seed.begin() + 8 + static_cast<std::ptrdiff_t>(header_len), seed.end());
  test::fuzz_json(header, 4321, 6000, "fuzz.safetensors", [&](const std::string& text) {
    std::vector<uint8_t> bytes(8 + text.size());
    const uint64_t len = text.size();
    std::memcpy(bytes.data(), &len, 8);
    std::memcpy(bytes.data() + 8, text.data(), text.size());
    bytes.insert(bytes.end(), data.begin(), data.end());
    exercise_safetensors(std::move(bytes));
  });
}
