#include "runtime/device/vk_check.h"

#include <atomic>

namespace ternvk {
namespace {
std::atomic<uint64_t> g_calls{0};
std::atomic<uint64_t> g_fail_at{0};
std::atomic<VkResult> g_injected{VK_ERROR_OUT_OF_DEVICE_MEMORY};
}  // namespace

void inject_vk_failure_at(uint64_t nth, VkResult result) {
  g_injected = result;
  g_calls = 0;
  g_fail_at = nth;
}

uint64_t checked_vk_calls() { return g_calls.load(); }

VkResult vk_call_fault() {
  const uint64_t n = ++g_calls;
  return n == g_fail_at.load() ? g_injected.load() : VK_SUCCESS;
}

const char* vk_result_name(VkResult result) {
  switch (result) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult(unknown)";
  }
}

void throw_vk_error(VkResult result, const char* call, const char* file, int line) {
  std::string message = std::string(call) + " failed with " + vk_result_name(result) + " (" +
                        std::to_string(static_cast<int>(result)) + ") at " + file + ":" +
                        std::to_string(line);
  if (g_fail_at.load() != 0 && g_calls.load() == g_fail_at.load()) message += " (injected by a test)";
  if (result == VK_ERROR_OUT_OF_DEVICE_MEMORY || result == VK_ERROR_OUT_OF_HOST_MEMORY)
    throw OutOfMemoryError(message);
  if (result == VK_ERROR_DEVICE_LOST)
    throw DeviceLostError(message + ": the GPU was lost (driver reset or hang); restart the program");
  throw Error(message);
}

}  // namespace ternvk
