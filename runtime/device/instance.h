// The Vulkan instance: finds every physical device of every vendor (CPU devices included) and,
// when asked, turns on the Khronos validation layer and counts what it reports.
#pragma once
#include <vulkan/vulkan.h>

#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/owned.h"
#include "runtime/device/device_info.h"
#include "runtime/device/fault_injection.h"

namespace ternvk {

struct InstanceOptions {
  // Enable VK_LAYER_KHRONOS_validation. Defaults to the TERNVK_VALIDATION environment variable.
  std::optional<bool> validation;
  // Test-only faults per logical device (see fault_injection.h). Defaults to TERNVK_FAULT.
  std::optional<std::string> faults;
  // With validation: also the layer's synchronization validation, which reports a missing barrier
  // between commands as an error (tests prove with it that the recordings' barriers are needed).
  bool synchronization_validation = false;
  // Emulated matrix units on every device without real ones (emulate_matrix_units(); tests and the
  // GPU check's smoke run on lavapipe). Defaults to TERNVK_EMULATE_MATRIX_UNITS (0 or 1).
  std::optional<bool> emulate_matrix_units;
};

class Instance {
 public:
  explicit Instance(InstanceOptions options = {});
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  VkInstance handle() const { return instance_.get(); }
  const std::vector<DeviceInfo>& devices() const { return devices_; }
  bool validation_enabled() const { return bool(messenger_); }
  // Validation errors reported since creation; tests require it to stay at zero.
  uint64_t validation_errors() const { return validation_errors_.load(); }
  const std::string& last_validation_message() const { return last_validation_message_; }

  // Picks a device: `requested` (an index from devices()), else the TERNVK_DEVICE environment
  // variable, else the most capable one. Throws an Error listing the devices when out of range.
  const DeviceInfo& select(std::optional<int> requested = std::nullopt) const;

  // Each logical device created on this instance takes the next ordinal (0, 1, ...); tests name
  // devices by it in TERNVK_FAULT. Returns the faults asked for that ordinal (none by default).
  int claim_device_ordinal() { return next_device_ordinal_++; }
  FaultInjection faults_for(int ordinal) const {
    auto it = faults_.find(ordinal);
    return it == faults_.end() ? FaultInjection{} : it->second;
  }

 private:
  static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                   VkDebugUtilsMessageTypeFlagsEXT types,
                                                   const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                   void* self);
  Owned<VkInstance> instance_;  // first: destroyed last
  Owned<VkDebugUtilsMessengerEXT> messenger_;
  std::vector<DeviceInfo> devices_;
  std::atomic<uint64_t> validation_errors_{0};
  std::string last_validation_message_;
  std::map<int, FaultInjection> faults_;
  std::atomic<int> next_device_ordinal_{0};
};

}  // namespace ternvk
