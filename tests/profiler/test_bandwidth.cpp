// The peak-bandwidth probe (runtime/profiler/bandwidth.h) on the test device: what it reads and how
// its figure is made, never how fast the machine is (no timing-dependent assertion): the read
// kernel's sums equal the CPU's sums of the data (every byte read once per pass), the bytes per pass
// are the segments' sizes, every timed dispatch is counted, the split over segments follows the
// limit, and a kernel above the probe is never printed as more than 100%.
#include <doctest/doctest.h>

#include <array>
#include <random>
#include <vector>

#include "common/gpu.h"
#include "runtime/profiler/bandwidth.h"

using namespace ternvk;
using namespace ternvk::profiler;

TEST_CASE("bandwidth read probe: every byte read once per pass, sums equal the CPU's, times from every dispatch") {
  Device& dev = test::device();
  if (!dev.info().timestamps) {
    Buffer b = dev.create_buffer(16, MemoryKind::DeviceLocal, "probe");
    const BufferRange r = b.range();
    CHECK_THROWS_AS(probe_read(dev, {&r, 1}, 1), Error);
    CHECK_THROWS_AS(measure_bandwidth(dev, 1 << 20), Error);
    return;
  }
  test::ValidationGuard guard;
  // segments of odd sizes (not multiples of any workgroup's share), random words
  std::mt19937 rng(7);
  std::vector<Buffer> buffers;
  std::vector<BufferRange> ranges;
  std::array<uint32_t, 4> want{};
  for (uint64_t words : {65536ull + 3, 1ull, 40000ull}) {
    std::vector<uint32_t> data(words * 4);
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = rng();
      want[i % 4] += data[i];
    }
    buffers.push_back(test::upload(data, "probe segment"));
    ranges.push_back(buffers.back().range());
  }
  const ReadProbe r = probe_read(dev, ranges, 3);
  CHECK(r.checksum == want);
  CHECK(r.bytes_per_pass == (65536 + 3 + 1 + 40000) * 16);
  CHECK(r.segments == 3);
  CHECK(r.passes == 3);
  CHECK(r.replays >= 2);  // replayed until the clocks are up (at least twice)
  CHECK(r.timed_dispatches == 9 * uint64_t(r.replays));
  REQUIRE(r.best_seconds > 0);
  CHECK(r.gb_per_s() == doctest::Approx(double(r.bytes_per_pass) / r.best_seconds / 1e9));
  // the same segment listed twice is read twice: the sum doubles
  const BufferRange twice[] = {ranges[2], ranges[2]};
  const ReadProbe d = probe_read(dev, twice, 1);
  const ReadProbe one = probe_read(dev, {&ranges[2], 1}, 1);
  for (int c = 0; c < 4; ++c) CHECK(d.checksum[c] == 2 * one.checksum[c]);
  CHECK(d.bytes_per_pass == 2 * ranges[2].size);
  // sizes the kernel cannot read are errors
  const BufferRange ragged{ranges[0].buffer, 0, 24};
  CHECK_THROWS_WITH_AS(probe_read(dev, {&ragged, 1}, 1), doctest::Contains("multiple of 16"), Error);
}

TEST_CASE("bandwidth probe: the peak is the read probe, split into buffers within the segment limit") {
  Device& dev = test::device();
  if (!dev.info().timestamps) return;
  test::ValidationGuard guard;
  // 8 MiB + 16 bytes in segments of at most 3 MiB: 3 + 3 + 2 MiB + 16 bytes
  const Bandwidth b = measure_bandwidth(dev, (8 << 20) + 16, 2, 3 << 20);
  CHECK(b.read_bytes == (8u << 20) + 16);
  CHECK(b.read_segments == 3);
  CHECK(b.read_passes == 2);
  CHECK(b.read_gb_per_s > 0);
  CHECK(b.peak() == b.read_gb_per_s);
  CHECK(b.buffer_bytes == (8u << 20) + 16);  // the copies: min(64 MiB, the read size)
  CHECK(b.copy_gb_per_s > 0);
  CHECK(b.shader_gb_per_s > 0);
  // the default: 4x an assumed last-level cache, within 1/8 of device-local memory
  const uint64_t def = default_read_probe_bytes(dev);
  CHECK(def % 16 == 0);
  CHECK(def <= 4 * (256ull << 20));
  if (dev.info().device_local_bytes()) CHECK(def <= dev.info().device_local_bytes() / 8);
  if (dev.info().is_discrete()) CHECK(def >= std::min<uint64_t>(512ull << 20, dev.info().device_local_bytes() / 8));
}

TEST_CASE("a kernel above the probe's peak is labelled, never shown above 100%") {
  CHECK(peak_share(50, 100) == "50.0%");
  CHECK(peak_share(100, 100) == "100.0%");
  CHECK(peak_share(99.96, 100, 0) == "100%");
  CHECK(peak_share(126, 100) == "> probe (cache-resident)");
  CHECK(peak_share(126, 100, 0, "> probe") == "> probe");
  CHECK(peak_share(10, 0) == "-");
}
