// The device layer on the machine's Vulkan device: enumeration, buffers, reflection, recording.
#include <doctest/doctest.h>

#include "common/gpu.h"
#include "runtime/device/spirv_reflect.h"
#include "runtime/device/shader_registry.h"

using namespace ternvk;

TEST_CASE("devices are enumerated and described") {
  const auto& devices = test::instance().devices();
  REQUIRE(!devices.empty());
  for (const auto& d : devices) {
    CHECK(!d.name.empty());
    CHECK(d.subgroup_size >= 1);
    CHECK(d.max_storage_buffer_range > 0);
    CHECK(d.describe().find(d.name) != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(test::instance().select(static_cast<int>(devices.size())),
                       doctest::Contains("does not exist"), Error);
}

TEST_CASE("fill shader reflection reads bindings, push constants and the workgroup spec id") {
  auto spv = shaders::all().at("fill");
  ReflectedShader r = reflect_spirv(spv, "fill");
  REQUIRE(r.bindings.size() == 1);
  CHECK(r.bindings[0].binding == 0);
  CHECK_FALSE(r.bindings[0].read_only);
  CHECK(r.push_constant_size == 8);
  CHECK(r.local_size_spec_id[0] == 0);
  std::vector<uint32_t> garbage = {1, 2, 3, 4, 5, 6};
  CHECK_THROWS_AS(reflect_spirv(garbage, "garbage"), Error);
}

TEST_CASE("a recorded dispatch runs, replays and matches the CPU") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  const uint32_t count = 1000;  // not a multiple of the workgroup size
  Buffer out = dev.create_buffer(count * 4, MemoryKind::DeviceLocal, "fill output");
  const Pipeline& fill = dev.pipeline("fill", {.constants = {{0, 64}}});
  CHECK(fill.local_size()[0] == 64);
  struct { uint32_t count, value; } push{count, 7};
  Recording rec(dev, {.timestamps = true});
  rec.dispatch(fill, {out.range()}, push, (count + 63) / 64);
  rec.submit_and_wait();
  rec.submit_and_wait();  // replay
  auto got = test::download<uint32_t>(out, count);
  for (uint32_t i = 0; i < count; ++i) REQUIRE(got[i] == 7 + i);
  if (dev.info().timestamps) {
    auto t = rec.timings();
    REQUIRE(t.size() == 1);
    CHECK(t[0].label == "fill");
    CHECK(t[0].microseconds >= 0.0);
  }
}

TEST_CASE("dependent dispatches get a barrier, wrong bindings are errors") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  Buffer a = dev.create_buffer(256, MemoryKind::DeviceLocal, "a");
  const Pipeline& fill = dev.pipeline("fill", {.constants = {{0, 8}}});
  struct { uint32_t count, value; } push{64, 1};
  Recording rec(dev);
  rec.dispatch(fill, {a.range()}, push, 8);
  push.value = 100;
  rec.dispatch(fill, {a.range()}, push, 8);  // write-after-write: needs the automatic barrier
  rec.submit_and_wait();
  auto got = test::download<uint32_t>(a, 64);
  CHECK(got[63] == 163);
  Recording bad(dev);
  CHECK_THROWS_WITH_AS(bad.dispatch(fill, {a.range(), a.range()}, push, 1), doctest::Contains("declares 1"), Error);
  CHECK_THROWS_WITH_AS(bad.dispatch(fill, {a.range()}, &push, 4, 1), doctest::Contains("push constants"), Error);
}

TEST_CASE("buffers share a few large memory blocks; impossible sizes are clear errors") {
  Device& dev = test::device();
  const uint64_t before = dev.memory().bytes_reserved();
  std::vector<Buffer> many;
  for (int i = 0; i < 200; ++i) many.push_back(dev.create_buffer(4096 + i, MemoryKind::DeviceLocal, "small"));
  CHECK(dev.memory().bytes_reserved() - before <= MemoryAllocator::kBlockSize);
  std::vector<uint8_t> data(5000, 3), back(5000);
  Buffer host = dev.create_buffer(5000, MemoryKind::HostUpload, "host");
  dev.upload(host, data.data(), data.size());
  dev.download(host, back.data(), back.size());
  CHECK(back == data);
  CHECK_THROWS_AS(dev.upload(host, data.data(), data.size() + 1), Error);
  CHECK_THROWS_WITH_AS(dev.create_buffer(1ull << 50, MemoryKind::DeviceLocal, "an absurd tensor"),
                       doctest::Contains("an absurd tensor"), OutOfMemoryError);
}

TEST_CASE("a uniform texel buffer binding reads uvec4 texels from a buffer range") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  if (!dev.info().texel_buffer_uint4) return;  // the device cannot: the op layer picks storage loads
  const Pipeline& copy = dev.pipeline("texel_copy", {.constants = {{0, 8}}});
  REQUIRE(copy.reflection().bindings.size() == 2);
  CHECK(copy.reflection().bindings[0].kind == BindingKind::UniformTexelBuffer);
  CHECK(copy.reflection().bindings[0].read_only);
  CHECK(copy.reflection().bindings[1].kind == BindingKind::StorageBuffer);
  const uint32_t texels = 37;
  std::vector<uint32_t> data(texels * 4 + 64);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint32_t(i * 2654435761u);
  Buffer src = test::upload(data, "texels");
  Buffer dst = dev.create_buffer(texels * 16, MemoryKind::DeviceLocal, "copy");
  const uint64_t offset = std::max<uint64_t>(dev.info().min_texel_buffer_offset_alignment, 16);
  Recording rec(dev);
  struct { uint32_t count; } push{texels};
  rec.dispatch(copy, {src.range(offset, texels * 16), dst.range()}, push, (texels + 7) / 8);
  rec.submit_and_wait();
  auto got = test::download<uint32_t>(dst, texels * 4);
  for (uint32_t i = 0; i < texels * 4; ++i) REQUIRE(got[i] == data[offset / 4 + i]);
  Recording bad(dev);
  CHECK_THROWS_AS(bad.dispatch(copy, {src.range(0, 20), dst.range()}, push, 1), Error);
}
