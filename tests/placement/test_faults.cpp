// Injected faults (runtime/device/fault_injection.h): a device that runs out of memory while a
// pipeline loads, and a device lost in the middle of decode. Each must be an error naming the stage
// and the device, return at once (no wait runs into its time limit), free everything (no
// validation error) and leave the program able to go on (a new engine works).
//
// The tests must hold on any GPU, not just lavapipe: where a fault lands (which submit, how much
// memory) is derived from what a run without the fault reports, never from lavapipe's numbers.
// Each runs twice: as the device is, and with its memory made unmappable the way a discrete GPU's
// is (uploads and downloads through staging buffers, with submits of their own).
#include <doctest/doctest.h>

#include <map>

#include "common/fault_spec.h"
#include "common/gpu.h"
#include "engine/random_model.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/stage_memory.h"
#include "runtime/engine/placement.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

EngineOptions two_stages(std::vector<int> split = {1, 1}) {
  EngineOptions o;
  o.prefill_chunk = 4;
  o.load_tokenizer = false;
  o.context = 64;
  o.devices = std::vector<int>(split.empty() ? 2 : split.size(), int(device().info().index));
  o.split = split;
  // Faults, not chaining: on a GPU the chained layers' trial would add submits to every load.
  o.chain_layers = LayerChain::Off;
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
  const auto f = parse_fault_spec(
      "device=1,lose_device_at_submit=20;device=0,memory_budget=3000000,fail_allocation_at=5,unmapped_device_memory=1");
  REQUIRE(f.size() == 2);
  CHECK(f.at(1).lose_device_at_submit == 20);
  CHECK(f.at(1).memory_budget == 0);
  CHECK_FALSE(f.at(1).unmapped_device_memory);
  CHECK(f.at(0).memory_budget == 3000000);
  CHECK(f.at(0).fail_allocation_at == 5);
  CHECK(f.at(0).unmapped_device_memory);
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

  dev.inject_faults({.memory_budget = dev.memory().device_local_bytes_in_use() + (1 << 20)});
  CHECK(dev.free_bytes() == 1 << 20);
  Buffer big = dev.create_buffer(768 << 10, MemoryKind::DeviceLocal, "768 KiB");
  CHECK_THROWS_WITH_AS(dev.create_buffer(512 << 10, MemoryKind::DeviceLocal, "512 KiB"),
                       doctest::Contains("bytes short"), OutOfMemoryError);
  // Staging and readback buffers live in system memory on a discrete GPU: the budget is the GPU's.
  Buffer staging = dev.create_buffer(2 << 20, MemoryKind::HostUpload, "staging beyond the budget");
  CHECK(dev.free_bytes() == (1 << 20) - (768 << 10));
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
  CHECK_THROWS_WITH_AS(rec.submit_and_wait(), doctest::Contains("VK_ERROR_DEVICE_LOST"), DeviceLostError);
  CHECK(dev.lost());
  CHECK_THROWS_WITH_AS(rec.submit(), doctest::Contains(dev.describe().c_str()), DeviceLostError);
  CHECK_THROWS_AS(dev.run_now([](VkCommandBuffer) {}), DeviceLostError);
  CHECK(dev.waits_timed_out() == 0);  // nothing waited for work that never ran
}

TEST_CASE("a stage's device that runs out of memory while loading names the stage and device") {
  const auto model = model_file("faults-alloc", 2);
  for (const bool unmapped : {false, true}) {
    CAPTURE(unmapped);
    // Any device's stage makes more than 3 buffers and needs more than 20000 bytes for a layer.
    for (const std::string fault : {"fail_allocation_at=3", "memory_budget=20000"}) {
      CAPTURE(fault);
      Instance inst = faulty_instance(fault_spec(unmapped, 2, {{1, fault}}));
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
    Instance inst = faulty_instance(fault_spec(unmapped, 2, {{1, "fail_allocation_at=3"}}));
    CHECK_THROWS_AS(Engine(inst, model, two_stages()), OutOfMemoryError);  // ordinals 0 and 1
    Engine ok(inst, model, two_stages());                                   // ordinals 2 and 3
    CHECK(ok.eval(std::vector<uint32_t>{1, 2, 3}).size() == size_t(small_2b4t_config().vocab));
    CHECK(inst.validation_errors() == 0);
  }
}

TEST_CASE("a device lost in the middle of decode stops the pipeline at once with the stage named") {
  const auto model = model_file("faults-lost", 3);
  for (const bool unmapped : {false, true}) {
    CAPTURE(unmapped);
    Instance inst = faulty_instance(fault_spec(unmapped, 2));
    Engine engine(inst, model, two_stages({1, 2}));
    std::vector<float> logits = engine.eval(std::vector<uint32_t>{1, 2, 3, 4, 5});
    Device& second = engine.stage(1).device();
    // The submits of one decode step on the second device (one per step on lavapipe; a discrete
    // GPU downloads the logits through staging with a submit of its own).
    const uint64_t before = second.submit_count();
    const uint32_t first[] = {argmax(logits)};
    logits = engine.eval(first);
    const uint64_t per_step = second.submit_count() - before;
    REQUIRE(per_step >= 1);
    FaultInjection lose = second.faults();
    lose.lose_device_at_submit = int(2 * per_step + 1);  // two more steps, then the loss
    second.inject_faults(lose);
    for (int i = 0; i < 2; ++i) {
      const uint32_t one[] = {argmax(logits)};
      logits = engine.eval(one);
    }
    const int position = engine.position();
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
    CHECK(engine.position() == position);  // the failed step did not count
    CHECK(second.lost());
    CHECK_FALSE(engine.stage(0).device().lost());
    // Every later step fails at once too; destroying the engine (end of scope) frees everything.
    CHECK_THROWS_WITH_AS(engine.eval(one), doctest::Contains("VK_ERROR_DEVICE_LOST"), Error);
    // At once: no wait on either device ran into its time limit.
    CHECK(second.waits_timed_out() == 0);
    CHECK(engine.stage(0).device().waits_timed_out() == 0);
    CHECK(inst.validation_errors() == 0);
  }
}

TEST_CASE("TERNVK_FAULT loses a device by ordinal in an engine built by the caller") {
  const auto model = model_file("faults-env-lost", 2);
  calibrate_ternary_gemv(device());  // cached per physical device: both runs below read it
  for (const bool unmapped : {false, true}) {
    CAPTURE(unmapped);
    // Device 0's submits while loading (none on lavapipe; uploads through staging on a discrete
    // GPU): the loss is set for the first submit after them.
    uint64_t load_submits = 0;
    {
      Instance plain = faulty_instance(fault_spec(unmapped, 2));
      Engine engine(plain, model, two_stages());
      load_submits = engine.stage(0).device().submit_count();
    }
    Instance inst = faulty_instance(
        fault_spec(unmapped, 2, {{0, "lose_device_at_submit=" + std::to_string(load_submits + 1)}}));
    Engine engine(inst, model, two_stages());
    CHECK_FALSE(engine.stage(0).device().lost());
    CHECK_THROWS_WITH_AS(engine.eval(std::vector<uint32_t>{1, 2}), doctest::Contains("stage 0 on device"), Error);
    CHECK(engine.stage(0).device().lost());
    CHECK(inst.validation_errors() == 0);
  }
}

TEST_CASE("an automatic split keeps a small device's stage within its memory") {
  const auto model = model_file("faults-budget-split", 4);
  calibrate_ternary_gemv(device());  // cached per physical device: the small budget below need not fit it
  const ModelConfig c = open_model(model)->config();
  const EngineOptions o = two_stages({});
  // The placement's estimates (the stages' memory plans) of a first stage with one layer and with two.
  const StageOptions so{.context = o.context, .max_tokens = o.prefill_chunk};
  const uint64_t one = estimate_footprint(c, so, device().info(), 1, true, false).total();
  const uint64_t two = estimate_footprint(c, so, device().info(), 2, true, false).total();
  REQUIRE(two > one);
  for (const bool unmapped : {false, true}) {
    CAPTURE(unmapped);
    // What such a stage really holds on this device (buffer alignment and padding vary by GPU).
    uint64_t held = 0;
    {
      Instance plain = faulty_instance(fault_spec(unmapped, 2));
      EngineOptions measured = two_stages({1, 3});
      Engine engine(plain, model, measured);
      held = engine.stage(0).device().memory().peak_device_local_bytes();
    }
    // Device 0 gets room for its stage with one layer (as planned and as held), not for two.
    const uint64_t floor = std::max(one, held);
    CAPTURE(one);
    CAPTURE(two);
    CAPTURE(held);
    REQUIRE(floor < two);
    const uint64_t budget = floor + (two - floor) / 2;
    Instance inst = faulty_instance(fault_spec(unmapped, 2, {{0, "memory_budget=" + std::to_string(budget)}}));
    Engine engine(inst, model, o);  // the budget is enforced: a stage over it would fail to load
    REQUIRE(engine.stage_count() == 2);
    CHECK(engine.stage(0).spec().end_layer == 1);
    CHECK(engine.stage(1).spec().first_layer == 1);
    CHECK(engine.stage(1).spec().end_layer == 4);
    CHECK(engine.stage(0).device().memory().peak_device_local_bytes() <= budget);
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
    Instance tiny = faulty_instance(fault_spec(unmapped, 2, {{0, "memory_budget=" + std::to_string(one / 2)}}));
    CHECK_THROWS_WITH_AS(Engine(tiny, model, o), doctest::Contains("cannot hold even one layer"), OutOfMemoryError);
    CHECK(inst.validation_errors() == 0);
    CHECK(tiny.validation_errors() == 0);
  }
}
