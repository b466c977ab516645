#include "runtime/engine/shipped_model.h"

#include <dlfcn.h>

#include <cstdlib>
#include <system_error>
#include <vector>

namespace ternvk {

std::filesystem::path shipped_model_path() {
  if (const char* env = std::getenv("TERNVK_MODEL"); env && *env) return env;
  // The binary this code is linked into: libternvk.so for the C API, the program for the apps.
  std::vector<std::filesystem::path> binaries;
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&shipped_model_path), &self) && self.dli_fname && *self.dli_fname)
    binaries.emplace_back(self.dli_fname);
  binaries.emplace_back("/proc/self/exe");
  const std::filesystem::path installed = "share/ternvk/models/ternvk-shakespeare/model.gguf";
  for (const auto& binary : binaries) {
    std::error_code ec;
    const std::filesystem::path real = std::filesystem::canonical(binary, ec);
    if (ec) continue;
    // <prefix>/bin/ternvk, <prefix>/lib/libternvk.so, <prefix>/lib/<multiarch>/libternvk.so
    std::filesystem::path prefix = real.parent_path();
    for (int levels = 0; levels < 2; ++levels) {
      prefix = prefix.parent_path();
      if (std::filesystem::is_regular_file(prefix / installed, ec)) return prefix / installed;
    }
  }
  return TERNVK_SOURCE_TREE_MODEL;
}

}  // namespace ternvk
