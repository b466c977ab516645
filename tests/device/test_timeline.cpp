// Queue synchronization: one timeline semaphore per device where the driver has them (lavapipe
// does), and the per-recording fence path kept for drivers without; both must give the same results.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "common/gpu.h"

using namespace ternvk;

namespace {

// Replays two recordings several times, each replay reading data the host wrote just before it,
// interleaving their submits and waiting out of order; returns what the last replays produced.
std::vector<uint32_t> replay_many(Device& dev) {
  const uint32_t count = 1000;
  const VkDeviceSize bytes = count * 4;
  Buffer host_in = dev.create_buffer(bytes, MemoryKind::HostUpload, "host input");
  Buffer filled = dev.create_buffer(bytes, MemoryKind::DeviceLocal, "filled");
  Buffer copied = dev.create_buffer(bytes, MemoryKind::DeviceLocal, "copied");
  Buffer other = dev.create_buffer(bytes, MemoryKind::DeviceLocal, "other");
  const Pipeline& fill = dev.pipeline("fill", {.constants = {{0, 64}}});
  struct { uint32_t count, value; } push{count, 7};

  Recording a(dev);
  a.dispatch(fill, {filled.range()}, push, (count + 63) / 64);
  a.copy(host_in.range(), copied.range());
  Recording b(dev);
  b.fill(other.range(), 0);
  b.copy(filled.range(), other.range());

  std::vector<uint32_t> in(count), got(count), out;
  for (uint32_t round = 1; round <= 5; ++round) {
    for (uint32_t i = 0; i < count; ++i) in[i] = round * 100000 + i;
    dev.upload(host_in, in.data(), bytes);
    a.submit();
    a.wait();
    dev.download(copied, got.data(), bytes);
    for (uint32_t i = 0; i < count; ++i) REQUIRE(got[i] == in[i]);
    b.submit();  // the two recordings in flight, waited in the reverse order
    a.submit();  // a's input is unchanged this time
    b.wait();
    a.wait();
    a.wait();  // a second wait is a no-op
    dev.download(other, got.data(), bytes);
    for (uint32_t i = 0; i < count; ++i) REQUIRE(got[i] == 7 + i);
  }
  // Submits back to back without a wait in between (submit waits for the previous one).
  for (int i = 0; i < 4; ++i) b.submit();
  b.wait();
  // A one-off command (run_now) between recorded ones.
  dev.run_now([&](VkCommandBuffer cb) { vkCmdFillBuffer(cb, copied.handle(), 0, bytes, 3); });
  dev.download(copied, got.data(), bytes);
  for (uint32_t i = 0; i < count; ++i) REQUIRE(got[i] == 3);
  out.resize(count);
  dev.download(other, out.data(), bytes);
  a.submit();  // left pending: the recording's destructor waits before freeing it
  return out;
}

// An injected device loss behaves the same on both paths: it throws at once and stays lost.
void lose_device(Device& dev) {
  Buffer buf = dev.create_buffer(1 << 16, MemoryKind::DeviceLocal, "filled");
  Recording rec(dev);
  rec.fill(buf.range(), 7);
  rec.submit_and_wait();
  dev.inject_faults({.lose_device_at_submit = 2});
  rec.submit_and_wait();
  CHECK_FALSE(dev.lost());
  CHECK_THROWS_AS(rec.submit_and_wait(), DeviceLostError);
  CHECK(dev.lost());
  CHECK_THROWS_AS(dev.run_now([](VkCommandBuffer) {}), DeviceLostError);
  CHECK(dev.waits_timed_out() == 0);  // at once: nothing waited for work that never ran
}

bool timeline_forbidden_by_env() {
  const char* v = std::getenv("TERNVK_NO_TIMELINE");
  return v && *v && std::strcmp(v, "0") != 0;
}

}  // namespace

TEST_CASE("lavapipe has timeline semaphores and the device uses one for its queue") {
  const DeviceInfo& info = test::device().info();
  CHECK(info.timeline_semaphore);  // core in Vulkan 1.2, which ternvk requires
  CHECK(info.describe().find("timeline semaphores yes") != std::string::npos);
  if (!timeline_forbidden_by_env()) CHECK(test::device().timeline_semaphores());
}

TEST_CASE("recordings replayed and waited on the timeline semaphore give correct results") {
  test::ValidationGuard guard;
  std::vector<uint32_t> timeline, fences;
  {
    Device dev(test::instance(), test::device().info());
    if (!timeline_forbidden_by_env()) REQUIRE(dev.timeline_semaphores());
    timeline = replay_many(dev);
  }
  {
    Device dev(test::instance(), test::device().info(), {.timeline_semaphores = false});
    REQUIRE_FALSE(dev.timeline_semaphores());
    fences = replay_many(dev);
  }
  REQUIRE(timeline.size() == 1000);
  CHECK(timeline == fences);
}

TEST_CASE("TERNVK_NO_TIMELINE=1 forces the fence path at device creation") {
  test::ValidationGuard guard;
  ::setenv("TERNVK_NO_TIMELINE", "1", 1);
  Device dev(test::instance(), test::device().info());
  ::unsetenv("TERNVK_NO_TIMELINE");
  CHECK_FALSE(dev.timeline_semaphores());
  Buffer buf = dev.create_buffer(4096, MemoryKind::DeviceLocal, "filled");
  Recording rec(dev);
  rec.fill(buf.range(), 42);
  rec.submit_and_wait();
  rec.submit_and_wait();
  std::vector<uint32_t> got(1024);
  dev.download(buf, got.data(), 4096);
  for (uint32_t v : got) REQUIRE(v == 42);
}

TEST_CASE("an injected device loss throws at once on the timeline and on the fence path") {
  test::ValidationGuard guard;
  for (bool timeline : {true, false}) {
    CAPTURE(timeline);
    Device dev(test::instance(), test::device().info(), {.timeline_semaphores = timeline});
    lose_device(dev);
  }
}
