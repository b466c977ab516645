#include "runtime/device/instance.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/device/vk_check.h"

namespace ternvk {
namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

// 0 or 1 (unset or empty: 0); anything else is refused by name, since a test run that meant to
// emulate and did not would pass for the wrong reason.
bool env_switch(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v || std::strcmp(v, "0") == 0) return false;
  if (std::strcmp(v, "1") == 0) return true;
  throw Error(std::string(name) + "='" + v + "': expected 0 or 1");
}

bool layer_available(const char* name) {
  uint32_t count = 0;
  vkEnumerateInstanceLayerProperties(&count, nullptr);
  std::vector<VkLayerProperties> layers(count);
  vkEnumerateInstanceLayerProperties(&count, layers.data());
  for (const auto& l : layers)
    if (std::strcmp(l.layerName, name) == 0) return true;
  return false;
}

bool instance_extension_available(const char* name) {
  uint32_t count = 0;
  vkEnumerateInstanceExtensionProperties(nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> exts(count);
  vkEnumerateInstanceExtensionProperties(nullptr, &count, exts.data());
  for (const auto& e : exts)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

}  // namespace

Instance::Instance(InstanceOptions options) {
  if (options.faults) {
    faults_ = parse_fault_spec(*options.faults);
  } else if (const char* env = std::getenv("TERNVK_FAULT"); env && *env) {
    faults_ = parse_fault_spec(env);
  }
  const bool validation = options.validation.value_or(env_flag("TERNVK_VALIDATION"));
  const bool emulate_units = options.emulate_matrix_units ? *options.emulate_matrix_units
                                                          : env_switch("TERNVK_EMULATE_MATRIX_UNITS");
  const char* validation_layer = "VK_LAYER_KHRONOS_validation";
  if (validation && !layer_available(validation_layer))
    throw Error("validation was requested (TERNVK_VALIDATION) but VK_LAYER_KHRONOS_validation is not "
                "installed: apt-get install vulkan-validationlayers");

  std::vector<const char*> layers;
  std::vector<const char*> extensions;
  if (validation) {
    layers.push_back(validation_layer);
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    if (options.synchronization_validation) extensions.push_back(VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
  }
  VkInstanceCreateFlags flags = 0;
  if (instance_extension_available(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
    // MoltenVK (Apple) devices are only listed when the application opts in.
    extensions.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
    flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }

  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "ternvk";
  app.pEngineName = "ternvk";
  app.apiVersion = VK_API_VERSION_1_3;
  VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  info.flags = flags;
  info.pApplicationInfo = &app;
  info.enabledLayerCount = static_cast<uint32_t>(layers.size());
  info.ppEnabledLayerNames = layers.data();
  info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  const VkValidationFeatureEnableEXT sync_validation = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  VkValidationFeaturesEXT features{VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT};
  features.enabledValidationFeatureCount = 1;
  features.pEnabledValidationFeatures = &sync_validation;
  if (validation && options.synchronization_validation) info.pNext = &features;
  VkInstance instance = VK_NULL_HANDLE;
  const VkResult result = TERNVK_VK_CALL(vkCreateInstance(&info, nullptr, &instance));
  if (result == VK_ERROR_INCOMPATIBLE_DRIVER)
    throw Error("no Vulkan driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER). Install your "
                "GPU's Vulkan driver, or Mesa's CPU driver: apt-get install mesa-vulkan-drivers");
  if (result != VK_SUCCESS) throw_vk_error(result, "vkCreateInstance", __FILE__, __LINE__);
  instance_ = Owned<VkInstance>(instance, [](VkInstance i) { vkDestroyInstance(i, nullptr); });

  if (validation) {
    auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT"));
    VkDebugUtilsMessengerCreateInfoEXT m{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
    m.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                        VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    m.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    m.pfnUserCallback = &Instance::on_message;
    m.pUserData = this;
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
    if (create && destroy) {
      VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
      TERNVK_VK_CHECK(create(instance, &m, nullptr, &messenger));
      messenger_ = Owned<VkDebugUtilsMessengerEXT>(
          messenger, [instance, destroy](VkDebugUtilsMessengerEXT x) { destroy(instance, x, nullptr); });
    }
  }

  uint32_t count = 0;
  TERNVK_VK_CHECK(vkEnumeratePhysicalDevices(instance, &count, nullptr));
  std::vector<VkPhysicalDevice> physical(count);
  TERNVK_VK_CHECK(vkEnumeratePhysicalDevices(instance, &count, physical.data()));
  for (uint32_t i = 0; i < count; ++i) devices_.push_back(query_device_info(instance, physical[i], i));
  if (emulate_units)
    for (DeviceInfo& d : devices_) emulate_matrix_units(d);
}

Instance::~Instance() = default;  // the messenger, then the instance

VkBool32 Instance::on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                              VkDebugUtilsMessageTypeFlagsEXT, const VkDebugUtilsMessengerCallbackDataEXT* data,
                              void* user) {
  auto* self = static_cast<Instance*>(user);
  const char* text = data && data->pMessage ? data->pMessage : "";
  if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    self->validation_errors_++;
    self->last_validation_message_ = text;
    std::fprintf(stderr, "[vulkan validation error] %s\n", text);
  } else {
    std::fprintf(stderr, "[vulkan validation warning] %s\n", text);
  }
  return VK_FALSE;
}

const DeviceInfo& Instance::select(std::optional<int> requested) const {
  if (devices_.empty())
    throw Error("no Vulkan device found. Install your GPU's Vulkan driver, or Mesa's CPU driver "
                "(apt-get install mesa-vulkan-drivers) to run on the CPU");
  if (!requested) {
    if (const char* env = std::getenv("TERNVK_DEVICE"); env && *env) {
      char* end = nullptr;
      long v = std::strtol(env, &end, 10);
      if (*end != '\0') throw Error(std::string("TERNVK_DEVICE='") + env + "' is not a device index");
      requested = static_cast<int>(v);
    }
  }
  if (requested) {
    if (*requested < 0 || *requested >= static_cast<int>(devices_.size())) {
      std::string list;
      for (const auto& d : devices_) list += "\n  [" + std::to_string(d.index) + "] " + d.name;
      throw Error("device " + std::to_string(*requested) + " does not exist; this machine has " +
                  std::to_string(devices_.size()) + " Vulkan device(s):" + list);
    }
    return devices_[*requested];
  }
  const DeviceInfo* best = &devices_[0];
  for (const auto& d : devices_)
    if (d.preference_score() > best->preference_score()) best = &d;
  return *best;
}

}  // namespace ternvk
