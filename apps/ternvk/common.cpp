#include <filesystem>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"

namespace ternvk::cli {

std::string default_model_path() {
  // Installed next to the binary's source tree at build time; TERNVK_MODEL overrides it.
  if (const char* env = std::getenv("TERNVK_MODEL"); env && *env) return env;
  return TERNVK_DEFAULT_MODEL;
}

void add_device_flag(CLI::App& cmd, std::optional<int>& device) {
  cmd.add_option("--device", device,
                 "Vulkan device index from `ternvk devices` (default: TERNVK_DEVICE, else the most capable)");
}

}  // namespace ternvk::cli
