#include "runtime/device/fault_injection.h"

#include <sstream>

#include "runtime/core/error.h"

namespace ternvk {
namespace {

uint64_t parse_number(const std::string& key, const std::string& value, const std::string& entry) {
  size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (value.empty() || used != value.size() || value[0] == '-')
    throw Error("TERNVK_FAULT entry '" + entry + "': " + key + "='" + value + "' is not a whole number");
  return v;
}

}  // namespace

std::map<int, FaultInjection> parse_fault_spec(const std::string& text) {
  std::map<int, FaultInjection> out;
  std::stringstream entries(text);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    if (entry.empty()) continue;
    int device = -1;
    FaultInjection f;
    std::stringstream items(entry);
    std::string item;
    while (std::getline(items, item, ',')) {
      const size_t eq = item.find('=');
      const std::string key = item.substr(0, eq);
      const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
      const uint64_t v = parse_number(key, value, entry);
      if (key == "device") device = int(v);
      else if (key == "memory_budget") f.memory_budget = v;
      else if (key == "fail_allocation_at") f.fail_allocation_at = int(v);
      else if (key == "lose_device_at_submit") f.lose_device_at_submit = int(v);
      else if (key == "unmapped_device_memory") f.unmapped_device_memory = v != 0;
      else
        throw Error("TERNVK_FAULT entry '" + entry + "': unknown key '" + key +
                    "' (expected device, memory_budget, fail_allocation_at, lose_device_at_submit or "
                    "unmapped_device_memory)");
    }
    if (device < 0) throw Error("TERNVK_FAULT entry '" + entry + "' does not name a device (device=N)");
    out[device] = f;
  }
  return out;
}

}  // namespace ternvk
