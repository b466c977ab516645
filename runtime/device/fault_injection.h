// Test-only fault injection: makes one logical device behave like a full or broken GPU, so the
// error paths of multi-device runs can be tested on any machine (lavapipe in CI). Off unless a
// test sets it (Device::inject_faults) or the TERNVK_FAULT environment variable names a device.
//
// TERNVK_FAULT (read once per Instance; InstanceOptions::faults overrides it): entries separated
// by ';', each "device=N" followed by comma-separated settings, e.g.
//   TERNVK_FAULT="device=1,lose_device_at_submit=20"
//   TERNVK_FAULT="device=0,memory_budget=3000000;device=1,fail_allocation_at=5"
//   TERNVK_FAULT="device=0,unmapped_device_memory=1"
// `device` is the logical device's ordinal on its Instance, in creation order: with
// `--devices 0,0` the first stage's device is 0 and the second's is 1.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace ternvk {

struct FaultInjection {
  // > 0: the device holds at most this many bytes of device-local buffers (MemoryKind::DeviceLocal;
  // staging and readback buffers live in system memory on a discrete GPU); a buffer beyond fails
  // with OutOfMemoryError as VK_ERROR_OUT_OF_DEVICE_MEMORY would. Placement plans against it too
  // (Device::free_bytes), so it doubles as a small fake GPU for split tests.
  uint64_t memory_budget = 0;
  // > 0: the Nth buffer created on the device (1-based, counted from when the fault was set) fails
  // with OutOfMemoryError.
  int fail_allocation_at = -1;
  // > 0: the Nth queue submit (1-based, counted from when the fault was set) reports
  // VK_ERROR_DEVICE_LOST, and so does every later submit and wait: a lost device stays lost. The
  // failing submit never reaches the driver, so nothing is left in flight.
  int lose_device_at_submit = -1;
  // Device-local buffers are not host-visible, as on a discrete GPU: uploads and downloads go
  // through staging buffers and submits of their own. Lets tests on lavapipe (where all memory is
  // host-visible) run the code paths, submit counts and memory use of a discrete GPU.
  bool unmapped_device_memory = false;

  bool any() const {
    return memory_budget > 0 || fail_allocation_at > 0 || lose_device_at_submit > 0 || unmapped_device_memory;
  }
};

// Parses a TERNVK_FAULT value into faults per device ordinal. Throws ternvk::Error naming the bad
// entry and the accepted keys.
std::map<int, FaultInjection> parse_fault_spec(const std::string& text);

}  // namespace ternvk
