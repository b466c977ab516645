// The Vulkan device every GPU test runs on (lavapipe in CI), with the validation layer on when
// TERNVK_VALIDATION=1 (ctest sets it). A test that produced a validation error fails.
#pragma once
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/device/instance.h"
#include "runtime/device/recording.h"

namespace ternvk::test {

Instance& instance();
Device& device();

// Fails the current test if the validation layer of `of` (the tests' instance by default) reported an
// error since `ValidationGuard` began.
class ValidationGuard {
 public:
  explicit ValidationGuard(Instance& of = instance()) : of_(of), start_(of.validation_errors()) {}
  ~ValidationGuard() {
    CHECK_MESSAGE(of_.validation_errors() == start_, "Vulkan validation error: " << of_.last_validation_message());
  }

 private:
  Instance& of_;
  uint64_t start_;
};

// Uploads host data into a new device-local buffer.
template <class T>
Buffer upload(const std::vector<T>& data, const char* what = "test input") {
  Buffer b = device().create_buffer(data.size() * sizeof(T), MemoryKind::DeviceLocal, what);
  device().upload(b, data.data(), data.size() * sizeof(T));
  return b;
}

template <class T>
std::vector<T> download(const Buffer& b, size_t count) {
  std::vector<T> out(count);
  device().download(b, out.data(), count * sizeof(T));
  return out;
}

}  // namespace ternvk::test
