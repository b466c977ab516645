#include "apps/ternvk-chat/window.h"

#define GLFW_INCLUDE_VULKAN
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui/backends/imgui_impl_vulkan.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "runtime/device/device.h"
#include "runtime/device/vk_check.h"

namespace ternvk::chat {
namespace {

std::string g_glfw_error;  // the last message GLFW reported (its error callback has no user data)

void on_glfw_error(int, const char* message) { g_glfw_error = message ? message : "unknown GLFW error"; }

constexpr size_t kFramesInFlight = 2;

std::string device_type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
  }
}

bool has_extension(VkPhysicalDevice pd, const char* name) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> exts(n);
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, exts.data());
  return std::any_of(exts.begin(), exts.end(), [&](const auto& e) { return std::strcmp(e.extensionName, name) == 0; });
}

}  // namespace

GlfwLibrary::GlfwLibrary() {
  glfwSetErrorCallback(on_glfw_error);
  if (!glfwInit()) {
    const char* display = std::getenv("DISPLAY");
    throw StartupError("cannot open the display" + (display ? " '" + std::string(display) + "'" : std::string()) +
                           ": " + g_glfw_error + ". Is an X server or Wayland compositor running there?",
                       2);
  }
  if (!glfwVulkanSupported())
    throw StartupError("GLFW found no Vulkan loader able to draw to windows (" + g_glfw_error +
                           "); install libvulkan1 and a Vulkan driver (mesa-vulkan-drivers)",
                       3);
}

GlfwLibrary::~GlfwLibrary() { glfwTerminate(); }

Window::Window(const WindowOptions& options) {
  glfwWindowHint(GLFW_CLIENT_API, GLFW_NO_API);  // Vulkan draws, not OpenGL
  GLFWwindow* w = glfwCreateWindow(options.width, options.height, options.title.c_str(), nullptr, nullptr);
  if (!w) throw StartupError("cannot create a window: " + g_glfw_error, 2);
  window_ = Owned<GLFWwindow*>(w, glfwDestroyWindow);
  glfwSetWindowUserPointer(w, this);
  glfwSetFramebufferSizeCallback(w, [](GLFWwindow* win, int, int) {
    static_cast<Window*>(glfwGetWindowUserPointer(win))->resized_ = true;
  });
  create_instance();
  VkSurfaceKHR surface = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(glfwCreateWindowSurface(instance_.get(), w, nullptr, &surface));
  surface_ = Owned<VkSurfaceKHR>(surface, [inst = instance_.get()](VkSurfaceKHR s) { vkDestroySurfaceKHR(inst, s, nullptr); });
  pick_device(options);
  create_device();
  create_render_pass();
  create_frames();
  rebuild_swapchain();
  rebuilt_ = false;
}

Window::~Window() {
  if (device_) vkDeviceWaitIdle(device_.get());
  // Members go in reverse order: readback, swapchain, frames, pool, render pass, device, surface, instance, window.
}

bool Window::should_close() const { return glfwWindowShouldClose(window_.get()); }
void Window::request_close() { glfwSetWindowShouldClose(window_.get(), GLFW_TRUE); }

void Window::create_instance() {
  uint32_t n = 0;
  const char** required = glfwGetRequiredInstanceExtensions(&n);
  if (!required) throw StartupError("GLFW cannot draw with Vulkan on this display: " + g_glfw_error, 3);
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "ternvk-chat";
  app.apiVersion = VK_API_VERSION_1_1;
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  ci.enabledExtensionCount = n;
  ci.ppEnabledExtensionNames = required;
  // The UI's own instance stays without the validation layer unless asked: the layer checks the
  // engine's compute work (TERNVK_VALIDATION), and ImGui's backend is not ours to fix.
  const char* layer = "VK_LAYER_KHRONOS_validation";
  if (const char* v = std::getenv("TERNVK_CHAT_UI_VALIDATION"); v && std::string(v) == "1") {
    ci.enabledLayerCount = 1;
    ci.ppEnabledLayerNames = &layer;
  }
  VkInstance inst = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateInstance(&ci, nullptr, &inst));
  instance_ = Owned<VkInstance>(inst, [](VkInstance i) { vkDestroyInstance(i, nullptr); });
}

void Window::pick_device(const WindowOptions& options) {
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(instance_.get(), &n, nullptr);
  std::vector<VkPhysicalDevice> all(n);
  vkEnumeratePhysicalDevices(instance_.get(), &n, all.data());
  struct Candidate {
    VkPhysicalDevice pd;
    std::string name;
    uint32_t family;
    bool preferred;
  };
  std::vector<Candidate> ok;
  std::string reasons;
  for (VkPhysicalDevice pd : all) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(pd, &p);
    const std::string name = std::string(p.deviceName) + " (" + device_type_name(p.deviceType) + ")";
    const bool preferred = options.prefer && options.prefer->name == p.deviceName &&
                           options.prefer->vendor_id == p.vendorID && options.prefer->device_id == p.deviceID;
    std::optional<uint32_t> family;
    uint32_t qn = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qn, nullptr);
    std::vector<VkQueueFamilyProperties> qf(qn);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &qn, qf.data());
    for (uint32_t i = 0; i < qn && !family; ++i) {
      VkBool32 present = VK_FALSE;
      vkGetPhysicalDeviceSurfaceSupportKHR(pd, i, surface_.get(), &present);
      if ((qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) && present && !options.pretend_no_presentation) family = i;
    }
    if (!has_extension(pd, VK_KHR_SWAPCHAIN_EXTENSION_NAME))
      reasons += "\n  - " + name + ": no VK_KHR_swapchain extension (a compute-only driver)";
    else if (!family)
      reasons += "\n  - " + name + ": no graphics queue family can present to this window's surface";
    else
      ok.push_back({pd, name, *family, preferred});
  }
  if (ok.empty())
    throw StartupError(
        "no Vulkan device can present to this window, so ternvk-chat cannot draw it:" +
            (reasons.empty() ? std::string("\n  - no Vulkan devices found") : reasons) +
            "\nThe model itself only needs compute: `ternvk chat` runs the same chat in a terminal.",
        3);
  auto it = std::find_if(ok.begin(), ok.end(), [](const Candidate& c) { return c.preferred; });
  if (it == ok.end()) {
    it = ok.begin();
    if (options.prefer)
      presentation_note_ = options.prefer->name + " cannot present to this window; the window is drawn on " +
                           it->name + " while the model runs on " + options.prefer->name + ".";
  }
  physical_ = it->pd;
  device_name_ = it->name;
  queue_family_ = it->family;
}

void Window::create_device() {
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo q{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  q.queueFamilyIndex = queue_family_;
  q.queueCount = 1;
  q.pQueuePriorities = &priority;
  const char* ext = VK_KHR_SWAPCHAIN_EXTENSION_NAME;
  VkDeviceCreateInfo ci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  ci.queueCreateInfoCount = 1;
  ci.pQueueCreateInfos = &q;
  ci.enabledExtensionCount = 1;
  ci.ppEnabledExtensionNames = &ext;
  VkDevice dev = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateDevice(physical_, &ci, nullptr, &dev));
  device_ = Owned<VkDevice>(dev, [](VkDevice d) { vkDestroyDevice(d, nullptr); });
  vkGetDeviceQueue(dev, queue_family_, 0, &queue_);

  // UNORM formats: ImGui's colours are already in the space the display shows.
  uint32_t n = 0;
  vkGetPhysicalDeviceSurfaceFormatsKHR(physical_, surface_.get(), &n, nullptr);
  std::vector<VkSurfaceFormatKHR> formats(n);
  vkGetPhysicalDeviceSurfaceFormatsKHR(physical_, surface_.get(), &n, formats.data());
  if (formats.empty()) throw StartupError("the window's surface offers no pixel formats", 3);
  format_ = formats.front();
  // RGBA is taken if offered, then BGRA (the usual one) if offered too: later matches win.
  for (VkFormat want : {VK_FORMAT_R8G8B8A8_UNORM, VK_FORMAT_B8G8R8A8_UNORM})
    for (const auto& f : formats)
      if (f.format == want && f.colorSpace == VK_COLOR_SPACE_SRGB_NONLINEAR_KHR) format_ = f;
  VkSurfaceCapabilitiesKHR caps;
  TERNVK_VK_CHECK(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(physical_, surface_.get(), &caps));
  readable_ = (caps.supportedUsageFlags & VK_IMAGE_USAGE_TRANSFER_SRC_BIT) &&
              (format_.format == VK_FORMAT_B8G8R8A8_UNORM || format_.format == VK_FORMAT_R8G8B8A8_UNORM);
}

void Window::create_render_pass() {
  VkAttachmentDescription color{};
  color.format = format_.format;
  color.samples = VK_SAMPLE_COUNT_1_BIT;
  color.loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR;
  color.storeOp = VK_ATTACHMENT_STORE_OP_STORE;
  color.stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE;
  color.stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE;
  color.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
  color.finalLayout = VK_IMAGE_LAYOUT_PRESENT_SRC_KHR;
  VkAttachmentReference ref{0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL};
  VkSubpassDescription sub{};
  sub.pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS;
  sub.colorAttachmentCount = 1;
  sub.pColorAttachments = &ref;
  // The acquire semaphore is waited at COLOR_ATTACHMENT_OUTPUT: the layout change must wait too.
  VkSubpassDependency dep{};
  dep.srcSubpass = VK_SUBPASS_EXTERNAL;
  dep.dstSubpass = 0;
  dep.srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
  dep.dstStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
  dep.dstAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
  VkRenderPassCreateInfo ci{VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO};
  ci.attachmentCount = 1;
  ci.pAttachments = &color;
  ci.subpassCount = 1;
  ci.pSubpasses = &sub;
  ci.dependencyCount = 1;
  ci.pDependencies = &dep;
  VkRenderPass rp = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateRenderPass(device_.get(), &ci, nullptr, &rp));
  render_pass_ = Owned<VkRenderPass>(rp, [d = device_.get()](VkRenderPass r) { vkDestroyRenderPass(d, r, nullptr); });
}

void Window::create_frames() {
  const VkDevice d = device_.get();
  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = queue_family_;
  VkCommandPool pool = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateCommandPool(d, &pci, nullptr, &pool));
  pool_ = Owned<VkCommandPool>(pool, [d](VkCommandPool p) { vkDestroyCommandPool(d, p, nullptr); });
  frames_.resize(kFramesInFlight);
  for (auto& f : frames_) {
    VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = pool;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    TERNVK_VK_CHECK(vkAllocateCommandBuffers(d, &ai, &f.commands));  // freed with the pool
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    fci.flags = VK_FENCE_CREATE_SIGNALED_BIT;
    VkFence fence = VK_NULL_HANDLE;
    TERNVK_VK_CHECK(vkCreateFence(d, &fci, nullptr, &fence));
    f.done = Owned<VkFence>(fence, [d](VkFence x) { vkDestroyFence(d, x, nullptr); });
    VkSemaphoreCreateInfo sci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    VkSemaphore s = VK_NULL_HANDLE;
    TERNVK_VK_CHECK(vkCreateSemaphore(d, &sci, nullptr, &s));
    f.acquired = Owned<VkSemaphore>(s, [d](VkSemaphore x) { vkDestroySemaphore(d, x, nullptr); });
  }
}

void Window::rebuild_swapchain() {
  const VkDevice d = device_.get();
  vkDeviceWaitIdle(d);
  VkSurfaceCapabilitiesKHR caps;
  TERNVK_VK_CHECK(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(physical_, surface_.get(), &caps));
  int fw = 0, fh = 0;
  glfwGetFramebufferSize(window_.get(), &fw, &fh);
  VkExtent2D extent = caps.currentExtent;
  if (extent.width == UINT32_MAX) {
    extent.width = std::clamp(uint32_t(fw), caps.minImageExtent.width, caps.maxImageExtent.width);
    extent.height = std::clamp(uint32_t(fh), caps.minImageExtent.height, caps.maxImageExtent.height);
  }
  Swapchain next;
  next.extent = extent;
  if (extent.width == 0 || extent.height == 0) {  // minimised: keep nothing until it comes back
    swapchain_ = std::move(next);
    return;
  }
  min_image_count_ = std::max(2u, caps.minImageCount);
  uint32_t want = min_image_count_ + 1;
  if (caps.maxImageCount > 0) want = std::min(want, caps.maxImageCount);
  VkSwapchainCreateInfoKHR ci{VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR};
  ci.surface = surface_.get();
  ci.minImageCount = want;
  ci.imageFormat = format_.format;
  ci.imageColorSpace = format_.colorSpace;
  ci.imageExtent = extent;
  ci.imageArrayLayers = 1;
  ci.imageUsage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | (readable_ ? VK_IMAGE_USAGE_TRANSFER_SRC_BIT : 0);
  ci.imageSharingMode = VK_SHARING_MODE_EXCLUSIVE;
  ci.preTransform = caps.currentTransform;
  ci.compositeAlpha = (caps.supportedCompositeAlpha & VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR)
                          ? VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR
                          : VkCompositeAlphaFlagBitsKHR(caps.supportedCompositeAlpha & -caps.supportedCompositeAlpha);
  ci.presentMode = VK_PRESENT_MODE_FIFO_KHR;  // always available; paces the UI at the display's rate
  ci.clipped = VK_TRUE;
  ci.oldSwapchain = swapchain_.handle.get();
  VkSwapchainKHR sc = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateSwapchainKHR(d, &ci, nullptr, &sc));
  next.handle = Owned<VkSwapchainKHR>(sc, [d](VkSwapchainKHR s) { vkDestroySwapchainKHR(d, s, nullptr); });
  swapchain_ = Swapchain{};  // the old one goes now that the new one exists
  uint32_t n = 0;
  vkGetSwapchainImagesKHR(d, sc, &n, nullptr);
  next.images.resize(n);
  vkGetSwapchainImagesKHR(d, sc, &n, next.images.data());
  for (VkImage image : next.images) {
    VkImageViewCreateInfo vi{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
    vi.image = image;
    vi.viewType = VK_IMAGE_VIEW_TYPE_2D;
    vi.format = format_.format;
    vi.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    VkImageView view = VK_NULL_HANDLE;
    TERNVK_VK_CHECK(vkCreateImageView(d, &vi, nullptr, &view));
    next.views.emplace_back(view, [d](VkImageView v) { vkDestroyImageView(d, v, nullptr); });
    VkFramebufferCreateInfo fi{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
    fi.renderPass = render_pass_.get();
    fi.attachmentCount = 1;
    fi.pAttachments = &view;
    fi.width = extent.width;
    fi.height = extent.height;
    fi.layers = 1;
    VkFramebuffer fb = VK_NULL_HANDLE;
    TERNVK_VK_CHECK(vkCreateFramebuffer(d, &fi, nullptr, &fb));
    next.framebuffers.emplace_back(fb, [d](VkFramebuffer f) { vkDestroyFramebuffer(d, f, nullptr); });
    VkSemaphoreCreateInfo sci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    VkSemaphore s = VK_NULL_HANDLE;
    TERNVK_VK_CHECK(vkCreateSemaphore(d, &sci, nullptr, &s));
    next.render_done.emplace_back(s, [d](VkSemaphore x) { vkDestroySemaphore(d, x, nullptr); });
  }
  swapchain_ = std::move(next);
  rebuilt_ = true;
}

void Window::run_once(const std::function<void(VkCommandBuffer)>& record) {
  const Owned<VkCommandBuffer> owned = allocate_command_buffer(device_.get(), pool_.get());
  const VkCommandBuffer cmd = owned.get();
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  TERNVK_VK_CHECK(vkBeginCommandBuffer(cmd, &bi));
  record(cmd);
  TERNVK_VK_CHECK(vkEndCommandBuffer(cmd));
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  TERNVK_VK_CHECK(vkQueueSubmit(queue_, 1, &si, VK_NULL_HANDLE));
  TERNVK_VK_CHECK(vkQueueWaitIdle(queue_));
}

bool Window::render(ImDrawData* draw_data) {
  int fw = 0, fh = 0;
  glfwGetFramebufferSize(window_.get(), &fw, &fh);
  if (fw == 0 || fh == 0) return false;
  if (resized_ || !swapchain_.handle || swapchain_.extent.width != uint32_t(fw) ||
      swapchain_.extent.height != uint32_t(fh)) {
    resized_ = false;
    rebuild_swapchain();
    return false;  // ImGui laid this frame out for the old size
  }
  const VkDevice d = device_.get();
  Frame& f = frames_[frame_index_];
  VkFence fence = f.done.get();
  TERNVK_VK_CHECK(vkWaitForFences(d, 1, &fence, VK_TRUE, UINT64_MAX));
  uint32_t image = 0;
  VkResult r = vkAcquireNextImageKHR(d, swapchain_.handle.get(), UINT64_MAX, f.acquired.get(), VK_NULL_HANDLE, &image);
  if (r == VK_ERROR_OUT_OF_DATE_KHR) {
    rebuild_swapchain();
    return false;
  }
  if (r != VK_SUCCESS && r != VK_SUBOPTIMAL_KHR) TERNVK_VK_CHECK(r);
  TERNVK_VK_CHECK(vkResetFences(d, 1, &fence));

  VkCommandBuffer cmd = f.commands;
  TERNVK_VK_CHECK(vkResetCommandBuffer(cmd, 0));
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  TERNVK_VK_CHECK(vkBeginCommandBuffer(cmd, &bi));
  VkClearValue clear{};
  clear.color = {{0.09f, 0.09f, 0.11f, 1.0f}};
  VkRenderPassBeginInfo rb{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
  rb.renderPass = render_pass_.get();
  rb.framebuffer = swapchain_.framebuffers[image].get();
  rb.renderArea.extent = swapchain_.extent;
  rb.clearValueCount = 1;
  rb.pClearValues = &clear;
  vkCmdBeginRenderPass(cmd, &rb, VK_SUBPASS_CONTENTS_INLINE);
  ImGui_ImplVulkan_RenderDrawData(draw_data, cmd);
  vkCmdEndRenderPass(cmd);
  const bool capture = !screenshot_path_.empty();
  if (capture) record_readback(cmd, swapchain_.images[image]);
  TERNVK_VK_CHECK(vkEndCommandBuffer(cmd));

  VkSemaphore wait = f.acquired.get(), signal = swapchain_.render_done[image].get();
  VkPipelineStageFlags stage = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.waitSemaphoreCount = 1;
  si.pWaitSemaphores = &wait;
  si.pWaitDstStageMask = &stage;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  si.signalSemaphoreCount = 1;
  si.pSignalSemaphores = &signal;
  TERNVK_VK_CHECK(vkQueueSubmit(queue_, 1, &si, fence));
  if (capture) {
    TERNVK_VK_CHECK(vkWaitForFences(d, 1, &fence, VK_TRUE, UINT64_MAX));
    write_screenshot();
  }
  VkSwapchainKHR sc = swapchain_.handle.get();
  VkPresentInfoKHR pi{VK_STRUCTURE_TYPE_PRESENT_INFO_KHR};
  pi.waitSemaphoreCount = 1;
  pi.pWaitSemaphores = &signal;
  pi.swapchainCount = 1;
  pi.pSwapchains = &sc;
  pi.pImageIndices = &image;
  r = vkQueuePresentKHR(queue_, &pi);
  frame_index_ = (frame_index_ + 1) % frames_.size();
  if (r == VK_ERROR_OUT_OF_DATE_KHR || r == VK_SUBOPTIMAL_KHR) {
    resized_ = true;
    return true;
  }
  TERNVK_VK_CHECK(r);
  return true;
}

void Window::request_screenshot(const std::filesystem::path& path) {
  if (!readable_)
    throw std::runtime_error("this window's surface does not allow reading its images back (no TRANSFER_SRC usage "
                             "or an unusual pixel format), so no screenshot can be taken");
  screenshot_error_.clear();
  screenshot_path_ = path;
}

void Window::ensure_readback(VkDeviceSize bytes) {
  if (readback_.size >= bytes) return;
  const VkDevice d = device_.get();
  readback_ = Readback{};
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = bytes;
  bi.usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  VkBuffer buffer = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateBuffer(d, &bi, nullptr, &buffer));
  readback_.buffer = Owned<VkBuffer>(buffer, [d](VkBuffer b) { vkDestroyBuffer(d, b, nullptr); });
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(d, buffer, &req);
  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(physical_, &mp);
  const VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  uint32_t type = UINT32_MAX;
  for (uint32_t i = 0; i < mp.memoryTypeCount && type == UINT32_MAX; ++i)
    if ((req.memoryTypeBits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) type = i;
  if (type == UINT32_MAX) throw std::runtime_error("no host-visible memory to read the screenshot back into");
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = type;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkAllocateMemory(d, &ai, nullptr, &memory));
  readback_.memory = Owned<VkDeviceMemory>(memory, [d](VkDeviceMemory m) { vkFreeMemory(d, m, nullptr); });
  TERNVK_VK_CHECK(vkBindBufferMemory(d, buffer, memory, 0));
  readback_.size = bytes;
}

void Window::record_readback(VkCommandBuffer cmd, VkImage image) {
  const VkExtent2D e = swapchain_.extent;
  ensure_readback(VkDeviceSize(e.width) * e.height * 4);
  VkImageMemoryBarrier to_src{VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER};
  to_src.srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
  to_src.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
  to_src.oldLayout = VK_IMAGE_LAYOUT_PRESENT_SRC_KHR;
  to_src.newLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
  to_src.srcQueueFamilyIndex = to_src.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  to_src.image = image;
  to_src.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0,
                       nullptr, 0, nullptr, 1, &to_src);
  VkBufferImageCopy region{};
  region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  region.imageExtent = {e.width, e.height, 1};
  vkCmdCopyImageToBuffer(cmd, image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, readback_.buffer.get(), 1, &region);
  VkImageMemoryBarrier back = to_src;
  back.srcAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
  back.dstAccessMask = 0;
  back.oldLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
  back.newLayout = VK_IMAGE_LAYOUT_PRESENT_SRC_KHR;
  VkBufferMemoryBarrier to_host{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
  to_host.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  to_host.srcQueueFamilyIndex = to_host.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  to_host.buffer = readback_.buffer.get();
  to_host.size = VK_WHOLE_SIZE;
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT | VK_PIPELINE_STAGE_HOST_BIT,
                       0, 0, nullptr, 1, &to_host, 1, &back);
}

void Window::write_screenshot() {
  const auto path = std::exchange(screenshot_path_, {});
  const VkExtent2D e = swapchain_.extent;
  void* mapped = nullptr;
  TERNVK_VK_CHECK(vkMapMemory(device_.get(), readback_.memory.get(), 0, VK_WHOLE_SIZE, 0, &mapped));
  const auto* src = static_cast<const uint8_t*>(mapped);
  const bool bgra = format_.format == VK_FORMAT_B8G8R8A8_UNORM;
  std::vector<uint8_t> rgb(size_t(e.width) * e.height * 3);
  for (size_t i = 0; i < size_t(e.width) * e.height; ++i) {
    rgb[3 * i + 0] = src[4 * i + (bgra ? 2 : 0)];
    rgb[3 * i + 1] = src[4 * i + 1];
    rgb[3 * i + 2] = src[4 * i + (bgra ? 0 : 2)];
  }
  vkUnmapMemory(device_.get(), readback_.memory.get());
  // stb's writer (linked with ImGui already) deflates: a UI screenshot shrinks ~20x, which matters
  // for the image kept in docs/.
  if (!stbi_write_png(path.c_str(), int(e.width), int(e.height), 3, rgb.data(), int(e.width) * 3))
    screenshot_error_ = "cannot write " + path.string();
}

}  // namespace ternvk::chat
