// Where each stage of a model runs: contiguous layer ranges over a list of devices (the embedding
// with the first stage, the final norm and head with the last). Everything about placement lives
// here: the split arithmetic, the speed calibration, the memory checks and the plan text the
// engine reports. Parsing the apps' --devices/--split flags is the apps' business
// (apps/common/placement_flags.h).
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "runtime/device/device_info.h"
#include "runtime/engine/model_config.h"
#include "runtime/engine/stage.h"

namespace ternvk {

// `split`: layers per device, summing to the layer count, none empty; empty means an even split
// (earlier stages take the remainder). Throws ternvk::Error for impossible splits.
std::vector<StageSpec> plan_stages(const ModelConfig& config, int n_devices, const std::vector<int>& split);

// Layers per device in proportion to each device's measured speed (higher = faster), every device
// at least one layer, summing to `layers`. Largest-remainder rounding; ties go to earlier devices.
std::vector<int> split_by_speed(int layers, const std::vector<double>& speeds);

// One device as a split sees it; `name` is used in errors ("device 0 (NVIDIA ...)").
struct DeviceCapacity {
  std::string name;
  double speed = 1;         // higher = faster (calibrate_ternary_gemv)
  uint64_t free_bytes = UINT64_MAX;  // what the stage may use (Device::free_bytes); UINT64_MAX: no limit
  DeviceInfo info;          // what the stage's memory plan is made for (StageMemory::plan)
};

// Layers per device in proportion to speed (exactly split_by_speed when every stage fits), then
// moves layers off devices whose stage would not fit their free bytes onto the others, still in
// proportion to speed. Stage sizes are the stages' memory plans (estimate_footprint, stage_memory.h)
// with the embedding on the first stage and the head on the last. Throws
// OutOfMemoryError naming the device and the bytes missing when a device cannot hold even one
// layer, or when all devices together cannot hold the model.
std::vector<int> split_by_speed_and_memory(const ModelConfig& config, const std::vector<DeviceCapacity>& devices,
                                           const StageOptions& options);

class Device;
struct DeviceInfo;
// The device's speed at the ternary GEMV (GMAC/s), measured once by a short run and cached in the
// user's cache folder (calibration_cache_path).
double calibrate_ternary_gemv(Device& device);
// Where that figure is cached: one file per physical device (its UUID) and driver version, so a
// driver upgrade measures again. Empty when neither XDG_CACHE_HOME nor HOME is set.
std::filesystem::path calibration_cache_path(const DeviceInfo& info);

// The decided placement of a model over its logical devices, in pipeline order.
struct Placement {
  std::vector<StageSpec> stages;
  std::vector<double> speeds;  // calibrated speed per device; empty with one device
  // One line per stage: device, layers, estimated bytes of weights and KV cache, expected share of
  // a token's time ("plan: stage 0 on device 0 (...): layers 0..14 + embedding, ...").
  std::string text;
};

// Places a model on `devices`: `split` (layers per device) when given, else an even split on one
// device, or over several a split by measured speed that keeps every stage within its device's
// free memory. Refuses a stage whose estimate exceeds its device's memory heap, before anything is
// uploaded, naming `model`, the stage and the device. Throws ternvk::Error / OutOfMemoryError.
Placement place_model(const ModelConfig& config, std::span<Device* const> devices, const std::vector<int>& split,
                      const StageOptions& options, const std::string& model);

}  // namespace ternvk
