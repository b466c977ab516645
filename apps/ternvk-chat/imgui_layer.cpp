#include "apps/ternvk-chat/imgui_layer.h"

#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui/backends/imgui_impl_glfw.h>
#include <imgui/backends/imgui_impl_vulkan.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "runtime/device/vk_check.h"

namespace ternvk::chat {
namespace {

// Where Debian's fonts-dejavu-core puts them; TERNVK_CHAT_FONT_DIR overrides (other distributions).
std::filesystem::path font_dir() {
  if (const char* d = std::getenv("TERNVK_CHAT_FONT_DIR"); d && *d) return d;
  return "/usr/share/fonts/truetype/dejavu";
}

// Latin (with extensions), Greek, Cyrillic, general punctuation (curly quotes, dashes, ellipsis),
// currency, arrows, maths, box drawing and the replacement character U+FFFD.
const ImWchar kRanges[] = {0x0020, 0x024F, 0x0370, 0x03FF, 0x0400, 0x052F, 0x1E00, 0x1EFF, 0x2000, 0x206F,
                           0x20A0, 0x20CF, 0x2100, 0x214F, 0x2190, 0x21FF, 0x2200, 0x22FF, 0x2500, 0x25FF,
                           0xFFFD, 0xFFFD, 0};

void check_vk(VkResult r) {
  if (r != VK_SUCCESS) throw_vk_error(r, "ImGui Vulkan backend", __FILE__, __LINE__);
}

}  // namespace

ImGuiLayer::ImGuiLayer(Window& window) : window_(window) {
  const VkDevice d = window.device();
  // Sized for ImGui's font texture and a few images; the backend allocates one set per texture.
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 16};
  VkDescriptorPoolCreateInfo pci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pci.flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT;
  pci.maxSets = 16;
  pci.poolSizeCount = 1;
  pci.pPoolSizes = &size;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateDescriptorPool(d, &pci, nullptr, &pool));
  pool_ = Owned<VkDescriptorPool>(pool, [d](VkDescriptorPool p) { vkDestroyDescriptorPool(d, p, nullptr); });

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;  // layout is fixed; do not drop imgui.ini into the working directory
  io.ConfigFlags |= ImGuiConfigFlags_NavEnableKeyboard;
  ImGui::StyleColorsDark();
  ImGuiStyle& style = ImGui::GetStyle();
  style.WindowRounding = 0;
  style.FrameRounding = 3;
  style.ScrollbarRounding = 3;
  load_fonts();

  if (!ImGui_ImplGlfw_InitForVulkan(window.glfw(), true)) throw std::runtime_error("ImGui's GLFW backend failed to start");
  glfw_backend_ = true;
  ImGui_ImplVulkan_InitInfo info{};
  info.Instance = window.instance();
  info.PhysicalDevice = window.physical_device();
  info.Device = d;
  info.QueueFamily = window.queue_family();
  info.Queue = window.queue();
  info.DescriptorPool = pool;
  info.MinImageCount = window.min_image_count();
  info.ImageCount = std::max(window.image_count(), window.min_image_count());
  info.MSAASamples = VK_SAMPLE_COUNT_1_BIT;
  info.CheckVkResultFn = check_vk;
  if (!ImGui_ImplVulkan_Init(&info, window.render_pass())) throw std::runtime_error("ImGui's Vulkan backend failed to start");
  vulkan_backend_ = true;
  // ImGui 1.86 uploads the font atlas through a command buffer we submit.
  window.run_once([](VkCommandBuffer cmd) { ImGui_ImplVulkan_CreateFontsTexture(cmd); });
  ImGui_ImplVulkan_DestroyFontUploadObjects();
}

ImGuiLayer::~ImGuiLayer() {
  vkDeviceWaitIdle(window_.device());
  if (vulkan_backend_) ImGui_ImplVulkan_Shutdown();
  if (glfw_backend_) ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
}

void ImGuiLayer::load_fonts() {
  ImGuiIO& io = ImGui::GetIO();
  const auto dir = font_dir();
  const auto sans = dir / "DejaVuSans.ttf", mono = dir / "DejaVuSansMono.ttf";
  ImFontConfig config;
  config.OversampleH = 2;
  if (std::filesystem::exists(sans) && io.Fonts->AddFontFromFileTTF(sans.c_str(), 16.0f, &config, kRanges)) {
    mono_ = std::filesystem::exists(mono) ? io.Fonts->AddFontFromFileTTF(mono.c_str(), 15.0f, &config, kRanges) : nullptr;
  } else {
    font_warning_ = "DejaVu fonts not found in " + dir.string() +
                    " (apt-get install fonts-dejavu-core); text beyond ASCII will show as '?'";
    std::fprintf(stderr, "ternvk-chat: %s\n", font_warning_.c_str());
    io.Fonts->AddFontDefault();
  }
  if (!mono_) mono_ = io.Fonts->Fonts[0];
}

void ImGuiLayer::new_frame() {
  if (window_.take_swapchain_rebuilt()) ImGui_ImplVulkan_SetMinImageCount(window_.min_image_count());
  ImGui_ImplVulkan_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  ImGui::NewFrame();
}

bool ImGuiLayer::render() {
  ImGui::Render();
  ImDrawData* dd = ImGui::GetDrawData();
  if (dd->DisplaySize.x <= 0 || dd->DisplaySize.y <= 0) return false;
  return window_.render(dd);
}

}  // namespace ternvk::chat
