// `ternvk devices`: every Vulkan device of every vendor, and which one ternvk would pick.
#include <cstdio>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "runtime/device/instance.h"

namespace ternvk::cli {

Action add_devices_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("devices", "List Vulkan devices and the features ternvk uses on each");
  return [cmd] {
    (void)cmd;
    Instance instance;
    const auto& devices = instance.devices();
    const DeviceInfo& chosen = instance.select();
    for (const auto& d : devices) std::printf("%s\n", d.describe().c_str());
    std::printf("default device: [%u] %s\n", chosen.index, chosen.name.c_str());
    return 0;
  };
}

}  // namespace ternvk::cli
