// Malformed safetensors files: each must raise ternvk::Error naming the file and the problem.
#include <doctest/doctest.h>

#include <cstring>

#include "runtime/formats/safetensors.h"
#include "sample_files.h"
#include "test_util.h"

using namespace ternvk;

namespace {

SafetensorsFile open_bytes(std::vector<uint8_t> bytes) {
  return SafetensorsFile::from_bytes(std::move(bytes), "bad.safetensors");
}

// A file with `header` as its JSON header and `data_size` zero bytes of data.
std::vector<uint8_t> with_header(const std::string& header, size_t data_size = 16) {
  std::vector<uint8_t> out(8 + header.size() + data_size, 0);
  const uint64_t len = header.size();
  std::memcpy(out.data(), &len, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

}  // namespace

TEST_CASE("safetensors truncated anywhere is an error") {
  const auto bytes = test::sample_safetensors();
  CHECK(open_bytes(bytes).tensors().size() == 3);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    CAPTURE(cut);
    const std::string message = test::error_message(
        [&] { (void)open_bytes(std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut)); });
    CHECK(message.find("bad.safetensors") != std::string::npos);
  }
}

TEST_CASE("safetensors bad header length") {
  auto bytes = test::sample_safetensors();
  test::poke<uint64_t>(bytes, 0, bytes.size());
  test::require_error([&] { open_bytes(bytes); }, "bad.safetensors", "header length", "does not fit");
  test::poke<uint64_t>(bytes, 0, ~uint64_t{0});
  test::require_error([&] { open_bytes(bytes); }, "header length");
  test::poke<uint64_t>(bytes, 0, 3);
  test::require_error([&] { open_bytes(bytes); }, "not valid JSON");
  test::require_error([&] { open_bytes({1, 2, 3}); }, "too short");
}

TEST_CASE("safetensors bad JSON and bad header entries") {
  test::require_error([&] { open_bytes(with_header("{\"a\": ")); }, "bad.safetensors", "not valid JSON");
  test::require_error([&] { open_bytes(with_header("[1, 2]")); }, "must be a JSON object", "array");
  test::require_error([&] { open_bytes(with_header(R"({"w": 5})")); }, "'w'", "must be an object");
  test::require_error([&] { open_bytes(with_header(R"({"w": {"shape": [1], "data_offsets": [0, 1]}})")); },
                      "'w'", "dtype");
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}})")); },
      "'w'", "shape");
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 1]}})")); },
      "'w'", "shape");
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0]}})")); },
      "'w'", "data_offsets");
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 1]}})")); },
      "'w'", "absurd");
}

TEST_CASE("safetensors data_offsets outside the file, reversed, or not matching the shape") {
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})", 16)); },
      "bad.safetensors", "'w'", "[0, 32]", "outside the data section of 16 bytes");
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [9, 8]}})")); },
      "'w'", "outside");
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}})", 16)); },
      "'w'", "F32", "[2, 3]", "needs 24 bytes", "span 16");
  test::require_error(
      [&] { open_bytes(with_header(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [18446744073709551615, 18446744073709551615]}})")); },
      "'w'", "outside");
}

TEST_CASE("safetensors unknown dtype: the file opens, reading the tensor names the dtype") {
  const auto f = open_bytes(with_header(R"({"w": {"dtype": "F4_E2M1", "shape": [4], "data_offsets": [0, 2]}})"));
  test::require_error([&] { (void)f.tensor_bytes(f.tensor("w")); }, "'w'", "F4_E2M1");
}
