// Turns a failed Vulkan call into a ternvk::Error that names the call, the result and where.
#pragma once
#include <vulkan/vulkan.h>

#include <string>

#include "runtime/core/error.h"

namespace ternvk {

const char* vk_result_name(VkResult result);

[[noreturn]] void throw_vk_error(VkResult result, const char* call, const char* file, int line);

}  // namespace ternvk

#define TERNVK_VK_CHECK(call)                                                   \
  do {                                                                          \
    VkResult ternvk_vk_result_ = (call);                                        \
    if (ternvk_vk_result_ != VK_SUCCESS)                                        \
      ::ternvk::throw_vk_error(ternvk_vk_result_, #call, __FILE__, __LINE__);   \
  } while (0)
