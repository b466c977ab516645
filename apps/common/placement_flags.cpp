#include "apps/common/placement_flags.h"

#include <sstream>

#include "runtime/core/error.h"

namespace ternvk {
namespace {

std::vector<int> parse_int_list(const std::string& text, const char* flag) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size())
      throw Error(std::string(flag) + " '" + text + "': '" + item + "' is not a whole number");
    out.push_back(v);
  }
  if (out.empty()) throw Error(std::string(flag) + " is empty");
  return out;
}

}  // namespace

std::vector<int> parse_split(const std::string& text) {
  if (text.empty() || text == "auto") return {};
  return parse_int_list(text, "--split");
}

std::vector<int> parse_device_list(const std::string& text, int device_count) {
  std::vector<int> out;
  if (text == "all") {
    for (int i = 0; i < device_count; ++i) out.push_back(i);
    return out;
  }
  out = parse_int_list(text, "--devices");
  for (int d : out)
    if (d < 0 || d >= device_count)
      throw Error("--devices: device " + std::to_string(d) + " does not exist; this machine has " +
                  std::to_string(device_count) + " Vulkan device(s) (see `ternvk devices`)");
  return out;
}

}  // namespace ternvk
