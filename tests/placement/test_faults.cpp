// Injected faults (runtime/device/fault_injection.h) on lavapipe: a device that runs out of memory
// while a pipeline loads, and a device lost in the middle of decode. Each must be an error naming
// the stage and the device, return at once, free everything (no validation error) and leave the
// program able to go on (a new engine works).
#include <doctest/doctest.h>

#include <chrono>

#include "common/gpu.h"
#include "engine/random_model.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/stage_memory.h"
#include "runtime/engine/placement.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

EngineOptions two_stages(std::vector<int> split = {1, 1}) {
  EngineOptions o;
  o.prefill_chunk = 4;
  o.load_tokenizer = false;
  o.context = 64;
  o.devices = std::vector<int>(split.empty() ? 2 : split.size(), int(device().info().index));
  o.split = split;
  return o;
}

std::filesystem::path model_file(const std::string& name, int layers) {
  ModelConfig c = small_2b4t_config();
  c.n_layers = layers;
  const auto dir = temp_dir(name);
  write_gguf(make_random_model(c, 17), dir / "model.gguf", GgmlType::I2_S);
  return dir / "model.gguf";
}

// An instance of its own, so that TERNVK_FAULT's device ordinals count from this test's devices.
Instance faulty_instance(const std::string& faults) {
  InstanceOptions o;
  o.faults = faults;
  return Instance(o);
}

uint32_t argmax(const std::vector<float>& v) { return uint32_t(std::max_element(v.begin(), v.end()) - v.begin()); }

}  // namespace

TEST_CASE("fault spec: entries per device, and bad entries are named") {
  const auto f = parse_fault_spec("device=1,lose_device_at_submit=20;device=0,memory_budget=3000000,fail_allocation_at=5");
  REQUIRE(f.size() == 2);
  CHECK(f.at(1).lose_device_at_submit == 20);
  CHECK(f.at(1).memory_budget == 0);
  CHECK(f.at(0).memory_budget == 3000000);
  CHECK(f.at(0).fail_allocation_at == 5);
  CHECK(parse_fault_spec("").empty());
  CHECK_THROWS_WITH_AS(parse_fault_spec("device=0,lose_at=3"), doctest::Contains("unknown key 'lose_at'"), Error);
  CHECK_THROWS_WITH_AS(parse_fault_spec("memory_budget=5"), doctest::Contains("does not name a device"), Error);
  CHECK_THROWS_WITH_AS(parse_fault_spec("device=x"), doctest::Contains("'x' is not a whole number"), Error);
  CHECK_THROWS_WITH_AS(faulty_instance("device=0,oops=1"), doctest::Contains("TERNVK_FAULT"), Error);
}

TEST_CASE("an injected allocation failure and a memory budget fail like a full heap, then recover") {
  ValidationGuard guard;
  Device dev(instance(), device().info());  // a logical device of its own: the shared one stays clean
  CHECK(dev.describe().find("device " + std::to_string(dev.info().index)) == 0);
  dev.inject_faults({.fail_allocation_at = 2});
  Buffer a = dev.create_buffer(4096, MemoryKind::DeviceLocal, "first");
  CHECK_THROWS_WITH_AS(dev.create_buffer(4096, MemoryKind::DeviceLocal, "second"),
                       doctest::Contains("VK_ERROR_OUT_OF_DEVICE_MEMORY"), OutOfMemoryError);
  Buffer c = dev.create_buffer(4096, MemoryKind::DeviceLocal, "third");  // only the 2nd was set to fail

  dev.inject_faults({.memory_budget = dev.memory().bytes_in_use() + (1 << 20)});
  CHECK(dev.free_bytes() == 1 << 20);
  Buffer big = dev.create_buffer(768 << 10, MemoryKind::DeviceLocal, "768 KiB");
  CHECK_THROWS_WITH_AS(dev.create_buffer(512 << 10, MemoryKind::DeviceLocal, "512 KiB"),
                       doctest::Contains("bytes short"), OutOfMemoryError);
  big = Buffer();
  Buffer again = dev.create_buffer(512 << 10, MemoryKind::DeviceLocal, "512 KiB after a free");
  CHECK(again);
  dev.inject_faults({});
  CHECK(dev.free_bytes() > (1ull << 20));
}

TEST_CASE("an injected device loss fails at once, stays lost, and leaves nothing in flight") {
  ValidationGuard guard;
  Device dev(instance(), device().info());
  Buffer b = dev.create_buffer(1 << 16, MemoryKind::DeviceLocal, "filled");
  Recording rec(dev);
  rec.fill(b.range(), 7);
  rec.submit_and_wait();
  dev.inject_faults({.lose_device_at_submit = 2});
  rec.submit_and_wait();  // the 1st submit since the injection still runs
  CHECK_FALSE(dev.lost());
  const auto t0 = Clock::now();
  CHECK_THROWS_WITH_AS(rec.submit_and_wait(), doctest::Contains("VK_ERROR_DEVICE_LOST"), DeviceLostError);
  CHECK(dev.lost());
  CHECK_THROWS_WITH_AS(rec.submit(), doctest::Contains(dev.describe().c_str()), DeviceLostError);
  CHECK_THROWS_AS(dev.run_now([](VkCommandBuffer) {}), DeviceLostError);
  CHECK(seconds_since(t0) < 2.0);
}

TEST_CASE("a stage's device that runs out of memory while loading names the stage and device") {
  const auto model = model_file("faults-alloc", 2);
  for (const char* spec : {"device=1,fail_allocation_at=3", "device=1,memory_budget=20000"}) {
    CAPTURE(spec);
    Instance inst = faulty_instance(spec);
    try {
      Engine engine(inst, model, two_stages());
      FAIL("the injected allocation failure went unnoticed");
    } catch (const OutOfMemoryError& e) {
      const std::string m = e.what();
      CAPTURE(m);
      CHECK(m.find("stage 1 on device " + std::to_string(device().info().index)) == 0);
      CHECK(m.find("VK_ERROR_OUT_OF_DEVICE_MEMORY") != std::string::npos);
    }
    CHECK(inst.validation_errors() == 0);
  }
  // The fault belongs to one logical device: the same model loads on fresh devices of that instance.
  Instance inst = faulty_instance("device=1,fail_allocation_at=3");
  CHECK_THROWS_AS(Engine(inst, model, two_stages()), OutOfMemoryError);  // ordinals 0 and 1
  Engine ok(inst, model, two_stages());                                   // ordinals 2 and 3
  CHECK(ok.eval(std::vector<uint32_t>{1, 2, 3}).size() == size_t(small_2b4t_config().vocab));
  CHECK(inst.validation_errors() == 0);
}

TEST_CASE("a device lost in the middle of decode stops the pipeline at once with the stage named") {
  ValidationGuard guard;
  const auto model = model_file("faults-lost", 3);
  Engine engine(instance(), model, two_stages({1, 2}));
  std::vector<float> logits = engine.eval(std::vector<uint32_t>{1, 2, 3, 4, 5});
  Device& second = engine.stage(1).device();
  second.inject_faults({.lose_device_at_submit = 4});  // three more steps, then the loss
  for (int i = 0; i < 3; ++i) {
    const uint32_t one[] = {argmax(logits)};
    logits = engine.eval(one);
  }
  const int position = engine.position();
  const auto t0 = Clock::now();
  const uint32_t one[] = {argmax(logits)};
  try {
    engine.eval(one);
    FAIL("the lost device went unnoticed");
  } catch (const Error& e) {
    const std::string m = e.what();
    CAPTURE(m);
    CHECK(m.find("stage 1 on device " + std::to_string(second.info().index)) == 0);
    CHECK(m.find("VK_ERROR_DEVICE_LOST") != std::string::npos);
    CHECK(m.find("logical device " + std::to_string(second.ordinal())) != std::string::npos);
  }
  CHECK(seconds_since(t0) < 2.0);
  CHECK(engine.position() == position);  // the failed step did not count
  CHECK(second.lost());
  CHECK_FALSE(engine.stage(0).device().lost());
  // Every later step fails at once too; destroying the engine (end of scope) frees everything.
  CHECK_THROWS_WITH_AS(engine.eval(one), doctest::Contains("VK_ERROR_DEVICE_LOST"), Error);
  CHECK(seconds_since(t0) < 4.0);
}

TEST_CASE("TERNVK_FAULT loses a device by ordinal in an engine built by the caller") {
  const auto model = model_file("faults-env-lost", 2);
  Instance inst = faulty_instance("device=0,lose_device_at_submit=1");
  Engine engine(inst, model, two_stages());
  CHECK_THROWS_WITH_AS(engine.eval(std::vector<uint32_t>{1, 2}), doctest::Contains("stage 0 on device"), Error);
  CHECK(inst.validation_errors() == 0);
}

TEST_CASE("an automatic split keeps a small device's stage within its memory") {
  const auto model = model_file("faults-budget-split", 4);
  calibrate_ternary_gemv(device());  // cached per physical device: the small budget below need not fit it
  const ModelConfig c = open_model(model)->config();
  const EngineOptions o = two_stages({});
  // Device 0 holds the embedding and one layer with a little room to spare, but not two layers.
  const StageOptions so{.context = o.context, .max_tokens = o.prefill_chunk};
  const uint64_t one = estimate_footprint(c, so, device().info(), 1, true, false).total();
  const uint64_t two = estimate_footprint(c, so, device().info(), 2, true, false).total();
  REQUIRE(two > one);
  Instance inst = faulty_instance("device=0,memory_budget=" + std::to_string(one + (two - one) / 2));
  Engine engine(inst, model, o);  // the budget is enforced: a stage over it would fail to load
  REQUIRE(engine.stage_count() == 2);
  CHECK(engine.stage(0).spec().end_layer == 1);
  CHECK(engine.stage(1).spec().first_layer == 1);
  CHECK(engine.stage(1).spec().end_layer == 4);
  Engine single(instance(), model, [] {
    EngineOptions s;
    s.prefill_chunk = 4;
    s.load_tokenizer = false;
    s.context = 64;
    return s;
  }());
  const std::vector<uint32_t> prompt = {3, 1, 4, 1, 5};
  const auto a = engine.eval(prompt), b = single.eval(prompt);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(std::fabs(a[i] - b[i]) <= 1e-4f * (1 + std::fabs(b[i])));

  // A budget that cannot hold even the embedding and one layer: the split says which device.
  Instance tiny = faulty_instance("device=0,memory_budget=" + std::to_string(one / 2));
  CHECK_THROWS_WITH_AS(Engine(tiny, model, o), doctest::Contains("cannot hold even one layer"), OutOfMemoryError);
  CHECK(inst.validation_errors() == 0);
  CHECK(tiny.validation_errors() == 0);
}
