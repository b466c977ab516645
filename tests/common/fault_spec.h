// TERNVK_FAULT values for tests (runtime/device/fault_injection.h), in-process (InstanceOptions::
// faults) or for the CLI's environment alike.
#pragma once
#include <map>
#include <string>

namespace ternvk::test {

// `faults` per device ordinal, and on every one of `devices` the memory of a discrete GPU (not
// host-visible: uploads and downloads through staging, with submits of their own) when `unmapped`.
inline std::string fault_spec(bool unmapped, int devices, const std::map<int, std::string>& faults = {}) {
  std::string spec;
  for (int d = 0; d < devices; ++d) {
    std::string entry = "device=" + std::to_string(d);
    if (unmapped) entry += ",unmapped_device_memory=1";
    if (auto it = faults.find(d); it != faults.end()) entry += "," + it->second;
    spec += (spec.empty() ? "" : ";") + entry;
  }
  return spec;
}

}  // namespace ternvk::test
