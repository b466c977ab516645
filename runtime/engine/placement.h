// Where each stage of a model runs: contiguous layer ranges over a list of devices (the embedding
// with the first stage, the final norm and head with the last).
#pragma once
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

class Device;
// The device's speed at the ternary GEMV (GMAC/s), measured once by a short run and cached in the
// user's cache folder per device and driver.
double calibrate_ternary_gemv(Device& device);

// Parses "auto" (empty result) or "N,N,...".
std::vector<int> parse_split(const std::string& text);
// Parses "all" (every device) or "I,J,..." (indices may repeat: each entry is its own logical device).
std::vector<int> parse_device_list(const std::string& text, int device_count);

}  // namespace ternvk
