#include "runtime/engine/placement.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/engine/stage_memory.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk {
namespace {

uint64_t stage_bytes(const ModelConfig& c, const StageOptions& o, const DeviceInfo& info, int layers, bool embedding,
                     bool head) {
  return estimate_footprint(c, o, info, layers, embedding, head).total();
}

std::string mib(uint64_t bytes) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1 << 20));
  return buf;
}

}  // namespace

std::vector<int> split_by_speed_and_memory(const ModelConfig& c, const std::vector<DeviceCapacity>& devices,
                                           const StageOptions& shape) {
  std::vector<double> speeds;
  for (const auto& d : devices) speeds.push_back(d.speed);
  std::vector<int> split = split_by_speed(c.n_layers, speeds);  // also checks the device count
  const int n = int(devices.size());
  // The most layers each device's stage can hold (its embedding/head included).
  std::vector<int> cap(size_t(n), c.n_layers);
  int total_cap = 0;
  for (int i = 0; i < n; ++i) {
    const bool first = i == 0, last = i == n - 1;
    const uint64_t free = devices[size_t(i)].free_bytes;
    int layers = 0;
    while (layers < c.n_layers && stage_bytes(c, shape, devices[size_t(i)].info, layers + 1, first, last) <= free) ++layers;
    cap[size_t(i)] = layers;
    if (layers < 1) {
      const uint64_t need = stage_bytes(c, shape, devices[size_t(i)].info, 1, first, last);
      throw OutOfMemoryError(
          "stage " + std::to_string(i) + " on " + devices[size_t(i)].name + " cannot hold even one layer" +
          (first ? " with the embedding" : "") + (last ? (first ? " and the head" : " with the head") : "") +
          ": it needs about " + mib(need) + " (" + std::to_string(need) + " bytes) but the device has " +
          mib(free) + " free, " + std::to_string(need - free) + " bytes missing. Use a smaller context (-c) or "
          "fewer sequences, or leave this device out of --devices");
    }
    total_cap += layers;
  }
  if (total_cap < c.n_layers) {
    const int missing_layers = c.n_layers - total_cap;
    // A middle stage's cost per layer: weights + KV cache, without the fixed embedding/head/scratch.
    const uint64_t per_layer = stage_bytes(c, shape, devices[0].info, 2, false, false) - stage_bytes(c, shape, devices[0].info, 1, false, false);
    std::string held;
    for (int i = 0; i < n; ++i)
      held += std::string(i ? ", " : "") + devices[size_t(i)].name + " " + std::to_string(cap[size_t(i)]) +
              " layers in " + mib(devices[size_t(i)].free_bytes);
    throw OutOfMemoryError("the model's " + std::to_string(c.n_layers) + " layers do not fit these devices: " +
                           held + "; the other " + std::to_string(missing_layers) + " layers need about " +
                           mib(per_layer * missing_layers) + " (" + std::to_string(per_layer * missing_layers) +
                           " bytes) more. Use a smaller context (-c), fewer sequences, or more devices");
  }
  // Devices whose share is over their capacity keep what they hold; the rest is shared out again
  // in proportion to speed among the others, until every share fits.
  std::vector<bool> fixed(size_t(n), false);
  while (true) {
    bool over = false;
    for (int i = 0; i < n; ++i)
      if (!fixed[size_t(i)] && split[size_t(i)] > cap[size_t(i)]) {
        fixed[size_t(i)] = true;
        split[size_t(i)] = cap[size_t(i)];
        over = true;
      }
    if (!over) return split;
    int left = c.n_layers;
    std::vector<int> open;
    std::vector<double> open_speeds;
    for (int i = 0; i < n; ++i) {
      if (fixed[size_t(i)]) {
        left -= split[size_t(i)];
      } else {
        open.push_back(i);
        open_speeds.push_back(speeds[size_t(i)]);
      }
    }
    // Not reached: the capacities sum to at least the layer count, so some device stays open.
    if (open.empty()) throw Error("internal: no device left to place " + std::to_string(left) + " layers on");
    const std::vector<int> shares = split_by_speed(left, open_speeds);
    for (size_t k = 0; k < open.size(); ++k) split[size_t(open[k])] = shares[k];
  }
}

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

Placement place_model(const ModelConfig& c, std::span<Device* const> devices, const std::vector<int>& requested_split,
                      const StageOptions& shape, const std::string& model) {
  Placement out;
  std::vector<int> split = requested_split;
  if (devices.size() > 1)
    for (Device* d : devices) out.speeds.push_back(calibrate_ternary_gemv(*d));
  if (split.empty() && devices.size() > 1) {
    // In proportion to speed, moving layers off devices whose memory (or the test budget from
    // TERNVK_FAULT) cannot hold their share.
    std::vector<DeviceCapacity> capacities;
    for (size_t i = 0; i < devices.size(); ++i)
      capacities.push_back({devices[i]->describe(), out.speeds[i], devices[i]->free_bytes(), devices[i]->info()});
    split = split_by_speed_and_memory(c, capacities, shape);
  }
  out.stages = plan_stages(c, int(devices.size()), split);
  std::vector<GpuFootprint> needs;
  for (size_t i = 0; i < out.stages.size(); ++i)
    needs.push_back(StageMemory::plan(c, out.stages[i], shape, devices[i]->info()).footprint());
  // Refuse before uploading anything when a stage cannot fit its device's memory.
  for (size_t i = 0; i < out.stages.size(); ++i) {
    const DeviceInfo& info = devices[i]->info();
    const uint64_t heap = info.unified_memory() ? (info.heaps.empty() ? 0 : info.heaps[0].size) : info.device_local_bytes();
    if (heap && needs[i].total() > heap)
      throw OutOfMemoryError(model + ": stage " + std::to_string(i) + " needs about " +
                             std::to_string(needs[i].total() >> 20) + " MiB on the GPU (" +
                             std::to_string(needs[i].weights >> 20) + " MiB weights, " +
                             std::to_string(needs[i].kv_cache >> 20) + " MiB KV cache at " +
                             std::to_string(shape.context) + " tokens) but device " + std::to_string(info.index) +
                             " (" + info.name + ") has " + std::to_string(heap >> 20) +
                             " MiB. Try a smaller context (-c), another device, or more devices");
  }
  // Expected share of a token's time: each stage's layers over its device's measured speed.
  std::vector<double> cost;
  double total_cost = 0;
  for (size_t i = 0; i < out.stages.size(); ++i) {
    const double layers = out.stages[i].end_layer - out.stages[i].first_layer;
    cost.push_back(out.speeds.empty() ? layers : layers / std::max(out.speeds[i], 1e-9));
    total_cost += cost.back();
  }
  for (size_t i = 0; i < out.stages.size(); ++i) {
    const StageSpec& spec = out.stages[i];
    const DeviceInfo& info = devices[i]->info();
    char share[32];
    std::snprintf(share, sizeof share, "%.0f%%", total_cost > 0 ? 100.0 * cost[i] / total_cost : 100.0);
    out.text += "plan: stage " + std::to_string(i) + " on device " + std::to_string(info.index) + " (" + info.name +
                "): layers " + std::to_string(spec.first_layer) + ".." + std::to_string(spec.end_layer - 1) +
                (spec.embedding ? " + embedding" : "") + (spec.head ? " + head" : "") + ", ~" +
                std::to_string(needs[i].weights >> 10) + " KiB weights, ~" + std::to_string(needs[i].kv_cache >> 10) +
                " KiB KV cache, expected " + share + " of a token's time\n";
  }
  return out;
}

std::filesystem::path calibration_cache_path(const DeviceInfo& info) {
  std::filesystem::path dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) dir = std::filesystem::path(xdg) / "ternvk";
  else if (const char* home = std::getenv("HOME"); home && *home) dir = std::filesystem::path(home) / ".cache/ternvk";
  else return {};
  std::string uuid;
  for (uint8_t byte : info.device_uuid) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", byte);
    uuid += hex;
  }
  char version[16];
  std::snprintf(version, sizeof version, "%08x", info.driver_version);
  return dir / ("calibration-" + uuid + "-driver-" + version + ".txt");
}

double calibrate_ternary_gemv(Device& device) {
  const std::filesystem::path path = calibration_cache_path(device.info());
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

}  // namespace ternvk
