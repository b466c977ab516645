#include <filesystem>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "runtime/engine/shipped_model.h"

namespace ternvk::cli {

std::string default_model_path() { return shipped_model_path().string(); }

void add_device_flag(CLI::App& cmd, std::optional<int>& device) {
  cmd.add_option("--device", device,
                 "Vulkan device index from `ternvk devices` (default: TERNVK_DEVICE, else the most capable)");
}

}  // namespace ternvk::cli
