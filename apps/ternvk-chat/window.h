// The app's window: GLFW for the window and input, and a Vulkan swapchain that ImGui draws into.
//
// Why the window has its own VkInstance and VkDevice: the runtime's Device is a compute-only logical
// device (one compute queue, no VK_KHR_swapchain) that the engine drives from the worker thread.
// Drawing needs a graphics queue that can present to this window's surface. Instead of widening
// the runtime, the window opens a small Vulkan device of its own on the same physical device as the
// engine (matched by vendor id, device id and name), so the UI never waits on the model's queue and
// a compute device that cannot present still runs the model while another device draws the window.
#pragma once
#include <vulkan/vulkan.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/owned.h"

struct GLFWwindow;
struct ImDrawData;

namespace ternvk::chat {

// Thrown when no display or no presentable Vulkan device exists; main() prints it and exits non-zero.
class StartupError : public std::runtime_error {
 public:
  StartupError(const std::string& message, int exit_code) : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// glfwInit / glfwTerminate. Throws StartupError when there is no display to talk to.
class GlfwLibrary {
 public:
  GlfwLibrary();
  ~GlfwLibrary();
  GlfwLibrary(const GlfwLibrary&) = delete;
  GlfwLibrary& operator=(const GlfwLibrary&) = delete;
};

// The physical device the engine runs on, so the window can draw on the same one.
struct PreferredDevice {
  std::string name;
  uint32_t vendor_id = 0, device_id = 0;
};

struct WindowOptions {
  int width = 1280, height = 800;
  std::string title = "ternvk chat";
  std::optional<PreferredDevice> prefer;
  // Test hook (TERNVK_CHAT_NO_PRESENT=1): act as if no device could present to the window.
  bool pretend_no_presentation = false;
};

class Window {
 public:
  explicit Window(const WindowOptions& options);
  ~Window();
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  GLFWwindow* glfw() const { return window_.get(); }
  bool should_close() const;
  void request_close();

  // What ImGui's Vulkan backend needs.
  VkInstance instance() const { return instance_.get(); }
  VkPhysicalDevice physical_device() const { return physical_; }
  VkDevice device() const { return device_.get(); }
  uint32_t queue_family() const { return queue_family_; }
  VkQueue queue() const { return queue_; }
  VkRenderPass render_pass() const { return render_pass_.get(); }
  uint32_t min_image_count() const { return min_image_count_; }
  uint32_t image_count() const { return uint32_t(swapchain_.images.size()); }
  // The device that draws the window, and a sentence when it is not the engine's device.
  const std::string& device_name() const { return device_name_; }
  const std::string& presentation_note() const { return presentation_note_; }

  // Records `record` into a one-time command buffer, submits and waits (font upload).
  void run_once(const std::function<void(VkCommandBuffer)>& record);

  // Draws one frame of ImGui output and presents it. Returns false when nothing was drawn (the
  // window is minimised or the swapchain was being rebuilt).
  bool render(ImDrawData* draw_data);
  // Swapchain size changes: ImGui's backend must learn the new minimum image count.
  bool take_swapchain_rebuilt() { return std::exchange(rebuilt_, false); }

  // The next rendered frame is read back and written as a PNG (RGB). Throws if the surface does
  // not allow reading back its images.
  void request_screenshot(const std::filesystem::path& path);
  bool screenshot_pending() const { return !screenshot_path_.empty(); }
  // An error from writing the last screenshot, if any.
  const std::string& screenshot_error() const { return screenshot_error_; }
  VkExtent2D extent() const { return swapchain_.extent; }

 private:
  struct Swapchain {
    Owned<VkSwapchainKHR> handle;
    std::vector<VkImage> images;
    std::vector<Owned<VkImageView>> views;
    std::vector<Owned<VkFramebuffer>> framebuffers;
    std::vector<Owned<VkSemaphore>> render_done;  // one per image: signalled by the submit, waited by present
    VkExtent2D extent{};
  };
  struct Frame {
    VkCommandBuffer commands = VK_NULL_HANDLE;
    Owned<VkFence> done;
    Owned<VkSemaphore> acquired;
  };
  struct Readback {
    Owned<VkBuffer> buffer;
    Owned<VkDeviceMemory> memory;
    VkDeviceSize size = 0;
  };

  void create_instance();
  void pick_device(const WindowOptions& options);
  void create_device();
  void create_render_pass();
  void create_frames();
  void rebuild_swapchain();
  void ensure_readback(VkDeviceSize bytes);
  void record_readback(VkCommandBuffer cmd, VkImage image);
  void write_screenshot();

  // Destroyed in reverse order: swapchain pieces before the device, the device before the instance.
  Owned<GLFWwindow*> window_;
  Owned<VkInstance> instance_;
  Owned<VkSurfaceKHR> surface_;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  std::string device_name_, presentation_note_;
  uint32_t queue_family_ = 0;
  Owned<VkDevice> device_;
  VkQueue queue_ = VK_NULL_HANDLE;
  VkSurfaceFormatKHR format_{};
  bool readable_ = false;  // the swapchain images allow TRANSFER_SRC (screenshots)
  Owned<VkRenderPass> render_pass_;
  Owned<VkCommandPool> pool_;
  std::vector<Frame> frames_;
  size_t frame_index_ = 0;
  uint32_t min_image_count_ = 2;
  Swapchain swapchain_;
  Readback readback_;
  bool resized_ = false, rebuilt_ = false;
  std::filesystem::path screenshot_path_;
  std::string screenshot_error_;
};

}  // namespace ternvk::chat
