// Every Vulkan call the runtime checks can fail (out of memory, a lost device): a fault injected at
// each one in turn, while building and running a little of everything the runtime creates, must
// end in a ternvk::Error with every handle made so far destroyed (runtime/core/owned.h counts
// them), and no validation error.
#include <doctest/doctest.h>

#include "common/gpu.h"
#include "runtime/core/owned.h"
#include "runtime/device/vk_check.h"

using namespace ternvk;

namespace {

// A logical device (queue, command pool, timeline semaphore or fences, pipeline cache), buffers of
// every memory kind (memory blocks, maps, binds), pipelines (layouts, shader modules), a recording
// with timestamps, descriptor pools and a texel buffer view, uploads and downloads through staging
// (one-off command buffers, submits, waits).
void build_and_run(const DeviceInfo& info, bool timeline) {
  Device dev(test::instance(), info, {.timeline_semaphores = timeline});
  dev.inject_faults({.unmapped_device_memory = true});  // staging paths, as on a discrete GPU
  const uint32_t count = 64;
  std::vector<uint32_t> data(count * 4);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint32_t(i * 7);
  Buffer input = dev.create_buffer(data.size() * 4, MemoryKind::DeviceLocal, "input");
  Buffer output = dev.create_buffer(count * 16, MemoryKind::DeviceLocal, "output");
  Buffer host = dev.create_buffer(count * 4, MemoryKind::HostReadback, "readback");
  dev.upload(input, data.data(), data.size() * 4);
  const Pipeline& fill = dev.pipeline("fill", {.constants = {{0, 64}}});
  Recording rec(dev, {.timestamps = true});
  struct { uint32_t count, value; } push{count, 7};
  rec.dispatch(fill, {host.range()}, push, 1);
  if (dev.info().texel_buffer_uint4) {
    const Pipeline& copy = dev.pipeline("texel_copy", {.constants = {{0, 8}}});
    struct { uint32_t count; } texels{count};
    rec.dispatch(copy, {input.range(0, count * 16), output.range()}, texels, count / 8);
  } else {
    rec.copy(input.range(0, count * 16), output.range());
  }
  rec.submit_and_wait();
  std::vector<uint32_t> back(count * 4);
  dev.download(output, back.data(), back.size() * 4);
  REQUIRE(back == data);
  REQUIRE(static_cast<const uint32_t*>(host.mapped())[count - 1] == 7 + count - 1);
}

}  // namespace

TEST_CASE("a fault at any Vulkan step of building and running work leaves no handle behind") {
  test::ValidationGuard guard;
  const DeviceInfo& info = test::device().info();  // the shared device exists before counting
  for (const bool timeline : {true, false}) {
    CAPTURE(timeline);
    const int64_t before = owned_handles_alive();
    inject_vk_failure_at(0);
    build_and_run(info, timeline);
    const uint64_t steps = checked_vk_calls();
    CHECK(owned_handles_alive() == before);
    REQUIRE(steps > 25);  // sanity: the scenario does reach the driver
    int failed = 0;
    for (const VkResult fault : {VK_ERROR_OUT_OF_DEVICE_MEMORY, VK_ERROR_DEVICE_LOST}) {
      for (uint64_t n = 1; n <= steps; ++n) {
        CAPTURE(n);
        inject_vk_failure_at(n, fault);
        try {
          build_and_run(info, timeline);
        } catch (const Error& e) {
          ++failed;
          CHECK(std::string(e.what()).find(vk_result_name(fault)) != std::string::npos);
        }
        inject_vk_failure_at(0);
        REQUIRE(owned_handles_alive() == before);
      }
    }
    // A stale pipeline cache is retried empty: the one step whose failure is not an error.
    CHECK(failed >= int(2 * steps) - 2);
  }
}

TEST_CASE("a fault at any Vulkan step of creating an instance leaves no handle behind") {
  const int64_t before = owned_handles_alive();
  InstanceOptions options;
  options.validation = true;
  inject_vk_failure_at(0);
  { Instance probe(options); }
  const uint64_t steps = checked_vk_calls();
  REQUIRE(steps >= 3);  // create, messenger, enumerate
  CHECK(owned_handles_alive() == before);
  for (uint64_t n = 1; n <= steps; ++n) {
    CAPTURE(n);
    inject_vk_failure_at(n);
    CHECK_THROWS_WITH_AS(Instance{options}, doctest::Contains("injected by a test"), Error);
    inject_vk_failure_at(0);
    CHECK(owned_handles_alive() == before);
  }
}
