// Turns a failed Vulkan call into a ternvk::Error that names the call, the result and where; and
// lets a test fail any one of those calls (every creation, allocation, map, bind, begin/end,
// submit) to check that nothing leaks when a step in the middle of building something fails.
#pragma once
#include <vulkan/vulkan.h>

#include <string>

#include "runtime/core/error.h"

namespace ternvk {

const char* vk_result_name(VkResult result);

[[noreturn]] void throw_vk_error(VkResult result, const char* call, const char* file, int line);

// Test-only: the `nth` checked Vulkan call (1-based, counted process-wide from this call) returns
// `result` without reaching the driver, as if the driver had failed it; 0 turns the fault off.
void inject_vk_failure_at(uint64_t nth, VkResult result = VK_ERROR_OUT_OF_DEVICE_MEMORY);
// Checked Vulkan calls made since the last inject_vk_failure_at(): a test counts the calls of a
// run without faults, then fails each of them in turn.
uint64_t checked_vk_calls();
// Counts one checked call; VK_SUCCESS, or the injected result when this is the call to fail.
VkResult vk_call_fault();

}  // namespace ternvk

// A Vulkan call's result, through the test hook above (for calls whose failure is handled by hand).
#define TERNVK_VK_CALL(call)                                         \
  ([&]() -> VkResult {                                               \
    const VkResult ternvk_vk_fault_ = ::ternvk::vk_call_fault();     \
    return ternvk_vk_fault_ != VK_SUCCESS ? ternvk_vk_fault_ : (call); \
  }())

#define TERNVK_VK_CHECK(call)                                                   \
  do {                                                                          \
    VkResult ternvk_vk_result_ = TERNVK_VK_CALL(call);                          \
    if (ternvk_vk_result_ != VK_SUCCESS)                                        \
      ::ternvk::throw_vk_error(ternvk_vk_result_, #call, __FILE__, __LINE__);   \
  } while (0)
