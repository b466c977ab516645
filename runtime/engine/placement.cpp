#include "runtime/engine/placement.h"

#include <numeric>
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

std::vector<StageSpec> plan_stages(const ModelConfig& c, int n_devices, const std::vector<int>& split) {
  if (n_devices < 1) throw Error("no devices to place the model on");
  std::vector<int> layers = split;
  if (layers.empty()) {
    if (n_devices > c.n_layers)
      throw Error(std::to_string(n_devices) + " devices but the model has only " + std::to_string(c.n_layers) +
                  " layers: every stage needs at least one");
    for (int i = 0; i < n_devices; ++i) layers.push_back(c.n_layers / n_devices + (i < c.n_layers % n_devices));
  }
  if (int(layers.size()) != n_devices)
    throw Error("--split names " + std::to_string(layers.size()) + " stages for " + std::to_string(n_devices) +
                " devices");
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i] < 1) throw Error("--split: stage " + std::to_string(i) + " is empty (" + std::to_string(layers[i]) + " layers)");
  const int sum = std::accumulate(layers.begin(), layers.end(), 0);
  if (sum != c.n_layers)
    throw Error("--split sums to " + std::to_string(sum) + " layers but the model has " + std::to_string(c.n_layers));
  std::vector<StageSpec> stages;
  int first = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    stages.push_back({first, first + layers[i], i == 0, i + 1 == layers.size()});
    first += layers[i];
  }
  return stages;
}

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
