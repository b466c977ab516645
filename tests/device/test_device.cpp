// The device layer on the machine's Vulkan device: enumeration, buffers, reflection, recording.
#include <doctest/doctest.h>

#include <bit>
#include <cstdlib>
#include <string>

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

TEST_CASE("TERNVK_EMULATE_MATRIX_UNITS takes 0 or 1, and an instance's own option overrides it") {
  const char* before = std::getenv("TERNVK_EMULATE_MATRIX_UNITS");
  const std::string kept = before ? before : "";
  auto emulated = [](const Instance& i) { return i.select().matrix_units_emulated; };
  ::setenv("TERNVK_EMULATE_MATRIX_UNITS", "yes", 1);
  CHECK_THROWS_WITH_AS(Instance(), doctest::Contains("TERNVK_EMULATE_MATRIX_UNITS='yes': expected 0 or 1"), Error);
  CHECK_FALSE(emulated(Instance(InstanceOptions{.emulate_matrix_units = false})));
  ::setenv("TERNVK_EMULATE_MATRIX_UNITS", "0", 1);
  CHECK_FALSE(emulated(Instance()));
  ::setenv("TERNVK_EMULATE_MATRIX_UNITS", "1", 1);
  {
    Instance on;
    const DeviceInfo& d = on.select();
    // A device with units of its own keeps them; one without gets emulated ones.
    CHECK(d.has_int8_matrix_unit());
    CHECK(d.matrix_units_emulated == !test::device().info().uses_cooperative_matrix_extension());
  }
  if (before) ::setenv("TERNVK_EMULATE_MATRIX_UNITS", kept.c_str(), 1);
  else ::unsetenv("TERNVK_EMULATE_MATRIX_UNITS");
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

TEST_CASE("dependent dispatches get a barrier: synchronization validation reports the hazard without it") {
  // lavapipe runs dispatches one after another whether or not a barrier orders them, so the
  // results cannot show a missing barrier; the validation layer's synchronization validation can
  // (it reports a read after an unordered write between dispatches).
  InstanceOptions options;
  options.validation = true;
  options.synchronization_validation = true;
  Instance checked(options);
  Device dev(checked, checked.devices().at(size_t(test::device().info().index)));
  const Pipeline& fill = dev.pipeline("fill", {.constants = {{0, 64}}});
  const Pipeline& add = dev.pipeline("residual_add", {.constants = {{0, 64}}});
  const uint32_t count = 64;
  for (const bool automatic : {false, true}) {
    CAPTURE(automatic);
    Buffer x = dev.create_buffer(count * 4, MemoryKind::DeviceLocal, "x");
    Buffer y = dev.create_buffer(count * 4, MemoryKind::DeviceLocal, "y");
    const uint64_t errors_before = checked.validation_errors();
    Recording rec(dev, {.automatic_barriers = automatic});
    // fill writes value + i: floats 1 + i*2^-23 and 2 + i*2^-23 (exact, normal numbers).
    struct { uint32_t count, value; } one{count, 0x3f800000u}, two{count, 0x40000000u};
    rec.dispatch(fill, {x.range()}, one, 1);
    rec.dispatch(fill, {y.range()}, two, 1);
    struct { uint32_t count; } n{count};
    rec.dispatch(add, {x.range(), y.range()}, n, 1);  // y += x reads both: needs the barrier
    rec.submit_and_wait();
    if (automatic) {
      CHECK_MESSAGE(checked.validation_errors() == errors_before, checked.last_validation_message());
      std::vector<float> got(count);
      dev.download(y, got.data(), count * 4);
      for (uint32_t i = 0; i < count; ++i)
        REQUIRE(got[i] == std::bit_cast<float>(0x3f800000u + i) + std::bit_cast<float>(0x40000000u + i));
    } else {  // the check that the barrier is there can fail: without it, it does
      CHECK(checked.validation_errors() > errors_before);
      CHECK(checked.last_validation_message().find("SYNC-HAZARD-READ-AFTER-WRITE") != std::string::npos);
    }
  }
}

TEST_CASE("wrong bindings are errors") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  Buffer a = dev.create_buffer(256, MemoryKind::DeviceLocal, "a");
  const Pipeline& fill = dev.pipeline("fill", {.constants = {{0, 8}}});
  struct { uint32_t count, value; } push{64, 1};
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
