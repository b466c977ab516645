// The memory-aware automatic split with fake devices (the test device's properties, any free
// memory): it equals the speed split when
// everything fits, moves layers off devices that are too small, keeps every stage within its
// device's bytes by the same estimate the engine checks, and names the device and the bytes
// missing when nothing fits.
#include <doctest/doctest.h>

#include <numeric>

#include "runtime/core/error.h"
#include "common/gpu.h"
#include "runtime/engine/stage_memory.h"
#include "runtime/engine/placement.h"
#include "runtime/engine/synthetic_model.h"

using namespace ternvk;

namespace {

// The 2B4T shape with 30 layers: large enough that stages differ in MiB.
ModelConfig model() { return synthetic_config(*find_synthetic_shape("2b4t")); }

const StageOptions kShape{.context = 4096, .sequences = 1, .max_tokens = 64};

uint64_t stage_bytes(const ModelConfig& c, const StageOptions& s, int layers, bool first, bool last) {
  return estimate_footprint(c, s, test::device().info(), layers, first, last).total();
}

// A fake device: a name, a speed and free bytes, with the test device's properties.
DeviceCapacity dev(const std::string& name, double speed, uint64_t free_bytes = UINT64_MAX) {
  return {name, speed, free_bytes, test::device().info()};
}

// Every stage of `split` fits its device by the estimate.
void check_fits(const ModelConfig& c, const std::vector<DeviceCapacity>& d, const StageOptions& s,
                const std::vector<int>& split) {
  REQUIRE(split.size() == d.size());
  CHECK(std::accumulate(split.begin(), split.end(), 0) == c.n_layers);
  for (size_t i = 0; i < split.size(); ++i) {
    CAPTURE(i);
    CHECK(split[i] >= 1);
    CHECK(stage_bytes(c, s, split[i], i == 0, i + 1 == split.size()) <= d[i].free_bytes);
  }
}

}  // namespace

TEST_CASE("placement: with room everywhere the memory-aware split is the speed split") {
  const ModelConfig c = model();
  for (auto speeds : std::vector<std::vector<double>>{{1, 1}, {3, 1}, {1, 2, 1}, {5, 1, 1, 1}}) {
    std::vector<DeviceCapacity> d;
    for (double s : speeds) d.push_back(dev("fake", s, 64ull << 30));
    CHECK(split_by_speed_and_memory(c, d, kShape) == split_by_speed(c.n_layers, speeds));
  }
  // No limit known (UINT64_MAX) behaves the same.
  CHECK(split_by_speed_and_memory(c, {dev("a", 1, UINT64_MAX), dev("b", 1, UINT64_MAX)}, kShape) == std::vector<int>{15, 15});
}

TEST_CASE("placement: layers move off a device that cannot hold its share, the rest still by speed") {
  const ModelConfig c = model();
  // Device 0 is the fastest but holds only its embedding and 6 layers.
  const uint64_t small = stage_bytes(c, kShape, 6, true, false) + 1000;
  std::vector<DeviceCapacity> d = {dev("device 0 (fast, small)", 4, small), dev("device 1", 1, 64ull << 30),
                                   dev("device 2", 1, 64ull << 30)};
  const auto split = split_by_speed_and_memory(c, d, kShape);
  CHECK(split == std::vector<int>{6, 12, 12});
  check_fits(c, d, kShape, split);
  // The speed split would have given device 0 far more than it holds.
  CHECK(split_by_speed(c.n_layers, {4, 1, 1})[0] > 6);

  // Unequal speeds among the others keep their proportion: 24 layers at 2:1.
  d[1].speed = 2;
  CHECK(split_by_speed_and_memory(c, d, kShape) == std::vector<int>{6, 16, 8});

  // The last stage carries the head: a small last device holds fewer layers than a small middle one.
  std::vector<DeviceCapacity> tail = {dev("a", 1, 64ull << 30), dev("b", 1, small)};
  const auto t = split_by_speed_and_memory(c, tail, kShape);
  check_fits(c, tail, kShape, t);
  CHECK(t[1] < 15);
}

TEST_CASE("placement: KV slots, context and the FP16 baseline shrink what a device holds") {
  const ModelConfig c = model();
  const uint64_t budget = 1ull << 30;  // the 2B4T embedding (~626 MiB) and a few hundred MiB of layers
  std::vector<DeviceCapacity> d = {dev("a", 1, budget), dev("b", 1, 64ull << 30)};
  const int one = split_by_speed_and_memory(c, d, kShape)[0];
  StageOptions many = kShape;
  many.sequences = 8;
  const int eight = split_by_speed_and_memory(c, d, many)[0];
  CHECK(eight < one);
  check_fits(c, d, many, split_by_speed_and_memory(c, d, many));
  StageOptions fp16 = kShape;
  fp16.fp16_baseline = true;
  const auto f = split_by_speed_and_memory(c, d, fp16);
  CHECK(f[0] < one);
  check_fits(c, d, fp16, f);
}

TEST_CASE("placement: a device that cannot hold one layer, or too little memory overall, is a clear error") {
  const ModelConfig c = model();
  const uint64_t need = stage_bytes(c, kShape, 1, true, false);
  std::vector<DeviceCapacity> d = {dev("device 3 (tiny)", 1, need - 4096), dev("device 1 (big)", 1, 64ull << 30)};
  CHECK_THROWS_WITH_AS(split_by_speed_and_memory(c, d, kShape),
                       doctest::Contains("stage 0 on device 3 (tiny) cannot hold even one layer"), OutOfMemoryError);
  CHECK_THROWS_WITH_AS(split_by_speed_and_memory(c, d, kShape), doctest::Contains("4096 bytes missing"),
                       OutOfMemoryError);

  // Two devices of 1 GiB hold 2B4T's weights but not 30 layers of a 4096-token KV cache for 16 slots.
  StageOptions big = kShape;
  big.sequences = 16;
  std::vector<DeviceCapacity> two = {dev("device 0 (A)", 1, 1ull << 30), dev("device 1 (B)", 1, 1ull << 30)};
  CHECK_THROWS_WITH_AS(split_by_speed_and_memory(c, two, big), doctest::Contains("do not fit these devices"),
                       OutOfMemoryError);
  try {
    split_by_speed_and_memory(c, two, big);
  } catch (const OutOfMemoryError& e) {
    const std::string m = e.what();
    CHECK(m.find("device 0 (A)") != std::string::npos);
    CHECK(m.find("device 1 (B)") != std::string::npos);
    CHECK(m.find("bytes) more") != std::string::npos);
  }
  // More devices than layers is refused as by the speed split.
  ModelConfig two_layers = c;
  two_layers.n_layers = 2;
  CHECK_THROWS_WITH_AS(split_by_speed_and_memory(two_layers, {dev("a", 1), dev("b", 1), dev("c", 1)}, kShape),
                       doctest::Contains("at least one"), Error);
}
