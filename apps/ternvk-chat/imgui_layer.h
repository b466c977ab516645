// Dear ImGui on the window: the context, its GLFW and Vulkan backends, and the fonts (DejaVu from
// fonts-dejavu-core, with Latin, Greek, Cyrillic and common symbols, so model output that is not
// ASCII shows as text rather than '?').
#pragma once
#include <string>

#include "runtime/core/owned.h"
#include "apps/ternvk-chat/window.h"

struct ImFont;

namespace ternvk::chat {

class ImGuiLayer {
 public:
  explicit ImGuiLayer(Window& window);
  ~ImGuiLayer();
  ImGuiLayer(const ImGuiLayer&) = delete;
  ImGuiLayer& operator=(const ImGuiLayer&) = delete;

  void new_frame();
  // Lays out nothing more: renders the frame into the window. Returns whether it was drawn.
  bool render();
  ImFont* mono() const { return mono_; }
  // Empty when the DejaVu fonts were found; otherwise what is missing (ImGui's built-in font is used).
  const std::string& font_warning() const { return font_warning_; }

 private:
  void load_fonts();
  Window& window_;
  Owned<VkDescriptorPool> pool_;
  bool glfw_backend_ = false, vulkan_backend_ = false;
  ImFont* mono_ = nullptr;
  std::string font_warning_;
};

}  // namespace ternvk::chat
