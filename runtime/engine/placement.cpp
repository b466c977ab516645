#include "runtime/engine/placement.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

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

std::vector<int> split_by_speed(int layers, const std::vector<double>& speeds) {
  const int n = int(speeds.size());
  if (n < 1) throw Error("no devices to place the model on");
  if (n > layers)
    throw Error(std::to_string(n) + " devices but the model has only " + std::to_string(layers) +
                " layers: every stage needs at least one");
  double total = 0;
  for (double v : speeds) total += std::max(v, 1e-9);
  // One layer each first, the rest in proportion to speed.
  const int spare = layers - n;
  std::vector<int> out(n, 1);
  std::vector<std::pair<double, int>> remainders;
  int given = 0;
  for (int i = 0; i < n; ++i) {
    const double share = spare * std::max(speeds[i], 1e-9) / total;
    out[i] += int(share);
    given += int(share);
    remainders.push_back({share - int(share), -i});
  }
  std::sort(remainders.rbegin(), remainders.rend());
  for (int i = 0; given < spare; ++i, ++given) out[-remainders[i % n].second]++;
  return out;
}

double calibrate_ternary_gemv(Device& device) {
  const DeviceInfo& info = device.info();
  char name[160];
  std::snprintf(name, sizeof name, "calibration-%04x-%04x-%08x-%s.txt", info.vendor_id, info.device_id,
                info.api_version, info.driver_info.empty() ? "driver" : "v");
  std::filesystem::path path;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) path = std::filesystem::path(xdg) / "ternvk" / name;
  else if (const char* home = std::getenv("HOME"); home && *home) path = std::filesystem::path(home) / ".cache/ternvk" / name;
  if (!path.empty()) {
    std::ifstream in(path);
    double cached = 0;
    if (in >> cached && cached > 0) return cached;
  }
  // A 2560 x 2560 ternary GEMV (the 2B4T attention shape), timed with the host clock over a few
  // replays after a warm-up: enough to rank devices, cheap enough to run at start-up.
  const uint32_t n = 2560;
  std::vector<int8_t> values(size_t(n) * n);
  for (size_t i = 0; i < values.size(); ++i) values[i] = int8_t(int(i * 2654435761u >> 29) % 3 - 1);
  ops::TernaryMatrixGpu w(device, ops::pack_ternary(values, n, n, 1.0f, "calibration"), "calibration");
  auto x = ops::QuantizedActivationsBuffers::create(device, 1, n, "calibration input");
  Buffer y = device.create_buffer(n * 4, MemoryKind::DeviceLocal, "calibration output");
  ops::TernaryMatmul matmul(device);
  Recording rec(device);
  rec.fill(x.values.range(), 0x01010101u);
  rec.fill(x.meta.range(), 0);
  for (int i = 0; i < 4; ++i) matmul.record(rec, w, x.view(), 1, {y.range()});
  rec.submit_and_wait();
  const auto t0 = std::chrono::steady_clock::now();
  const int reps = 3;
  for (int i = 0; i < reps; ++i) rec.submit_and_wait();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double gmacs = double(n) * n * 4 * reps / std::max(seconds, 1e-9) / 1e9;
  if (!path.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    std::ofstream(path) << gmacs << "\n";
  }
  return gmacs;
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
