// Where each stage of a model runs: contiguous layer ranges over a list of devices (the embedding
// with the first stage, the final norm and head with the last).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine/model_config.h"
#include "runtime/engine/stage.h"

namespace ternvk {

// `split`: layers per device, summing to the layer count, none empty; empty means an even split
// (earlier stages take the remainder). Throws ternvk::Error for impossible splits.
std::vector<StageSpec> plan_stages(const ModelConfig& config, int n_devices, const std::vector<int>& split);

// Layers per device in proportion to each device's measured speed (higher = faster), every device
// at least one layer, summing to `layers`. Largest-remainder rounding; ties go to earlier devices.
std::vector<int> split_by_speed(int layers, const std::vector<double>& speeds);

// What a memory-aware split plans for: the shape of everything a stage allocates besides its weights.
struct PlacementShape {
  int context = 0;        // KV cache positions per sequence
  int prefill_chunk = 64;  // tokens per step (scratch activations)
  int sequences = 1;       // KV cache slots
  bool fp16_baseline = false;
  HeadPrecision head = HeadPrecision::F16;
};

// One device as a split sees it; `name` is used in errors ("device 0 (NVIDIA ...)").
struct DeviceCapacity {
  std::string name;
  double speed = 1;         // higher = faster (calibrate_ternary_gemv)
  uint64_t free_bytes = UINT64_MAX;  // what the stage may use (Device::free_bytes); UINT64_MAX: no limit
};

// Layers per device in proportion to speed (exactly split_by_speed when every stage fits), then
// moves layers off devices whose stage would not fit their free bytes onto the others, still in
// proportion to speed. Stage sizes come from estimate_gpu_footprint (estimate_fp16_footprint for
// the baseline) with the embedding on the first stage and the head on the last. Throws
// OutOfMemoryError naming the device and the bytes missing when a device cannot hold even one
// layer, or when all devices together cannot hold the model.
std::vector<int> split_by_speed_and_memory(const ModelConfig& config, const std::vector<DeviceCapacity>& devices,
                                           const PlacementShape& shape);

class Device;
// The device's speed at the ternary GEMV (GMAC/s), measured once by a short run and cached in the
// user's cache folder per device and driver.
double calibrate_ternary_gemv(Device& device);

// Parses "auto" (empty result) or "N,N,...".
std::vector<int> parse_split(const std::string& text);
// Parses "all" (every device) or "I,J,..." (indices may repeat: each entry is its own logical device).
std::vector<int> parse_device_list(const std::string& text, int device_count);

}  // namespace ternvk
