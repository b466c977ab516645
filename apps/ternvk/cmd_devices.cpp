// `ternvk devices`: every Vulkan device of every vendor, and which one ternvk would pick;
// `--check-matrix-units` also runs the matrix-unit GEMMs' self-checks on each device that has them.
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/device/instance.h"
#include "runtime/ops/matrix_unit_gemm.h"

namespace ternvk::cli {
namespace {

// "passed", "failed" (the device keeps the tiled GEMM) or the error that stopped the check.
const char* self_check_text(bool (*check)(Device&), Device& device, std::string& error) {
  try {
    return check(device) ? "passed" : "failed: the tiled GEMM is used";
  } catch (const std::exception& e) {
    error = e.what();
    return "did not finish";
  }
}

void check_matrix_units(Instance& instance, const DeviceInfo& info) {
  if (!info.has_matrix_units()) {
    std::printf("[%u] %s: no matrix units ternvk can use\n", info.index, info.name.c_str());
    return;
  }
  std::unique_ptr<Device> made;
  try {
    made = std::make_unique<Device>(instance, info);
  } catch (const std::exception& e) {
    std::printf("[%u] %s: matrix units: self-check did not finish: the device could not be created: %s\n",
                info.index, info.name.c_str(), e.what());
    return;
  }
  Device& device = *made;
  struct Unit {
    const char* name;
    bool present;
    bool (*check)(Device&);
  };
  for (const Unit& u : {Unit{"int8 (ternary prefill)", info.has_int8_matrix_unit(), &ops::matrix_unit_gemm_agrees},
                        Unit{"fp16 (FP16 baseline prefill)", info.has_fp16_matrix_unit(),
                             &ops::fp16_matrix_unit_gemm_agrees}}) {
    if (!u.present) continue;
    std::string error;
    const char* result = self_check_text(u.check, device, error);
    std::printf("[%u] %s: %s matrix units%s: self-check %s%s%s\n", info.index, info.name.c_str(), u.name,
                info.matrix_units_emulated ? " (emulated)" : "", result, error.empty() ? "" : ": ", error.c_str());
  }
}

}  // namespace

Action add_devices_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("devices", "List Vulkan devices and the features ternvk uses on each");
  auto check = std::make_shared<bool>(false);
  cmd->add_flag("--check-matrix-units", *check,
                "Also run the matrix-unit GEMMs' self-checks (a few small GEMMs) on each device that has them, as the "
                "engine does before using them");
  return [check] {
    Instance instance;
    const auto& devices = instance.devices();
    const DeviceInfo& chosen = instance.select();
    for (const auto& d : devices) std::printf("%s\n", d.describe().c_str());
    std::printf("default device: [%u] %s\n", chosen.index, chosen.name.c_str());
    if (*check)
      for (const auto& d : devices) check_matrix_units(instance, d);
    return 0;
  };
}

}  // namespace ternvk::cli
