#include "apps/ternvk-chat/ui.h"

#include <imgui.h>

#include <cstdio>

namespace ternvk::chat {

void draw_ui(App& app, UiState& ui) {
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(vp->WorkPos);
  ImGui::SetNextWindowSize(vp->WorkSize);
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize |
                                 ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;
  ImGui::Begin("ternvk chat", nullptr, flags);
  const float status_h = ImGui::GetFrameHeightWithSpacing() + 4;
  const float width = ImGui::GetContentRegionAvail().x;
  const float side_w = std::max(240.0f, width * 0.23f), perf_w = std::max(260.0f, width * 0.26f);

  ImGui::BeginChild("side", ImVec2(side_w, -status_h), true);
  draw_side_panel(app, ui);
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("chat", ImVec2(width - side_w - perf_w - 2 * ImGui::GetStyle().ItemSpacing.x, -status_h), true);
  draw_conversation(app, ui);
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("performance", ImVec2(0, -status_h), true);
  draw_performance(app, ui);
  ImGui::EndChild();

  ImGui::Separator();
  draw_status(app, ui);
  ImGui::End();
}

void draw_status(App& app, UiState&) {
  const SessionView& s = app.session();
  char line[512];
  const char* state = s.model == SessionView::Model::Loading  ? "loading"
                      : s.model == SessionView::Model::Failed ? "load failed"
                      : s.model == SessionView::Model::None   ? "no model"
                      : app.generating()                      ? "answering"
                                                              : "ready";
  std::snprintf(line, sizeof line,
                "%s  |  prompt %.1f tok/s  |  decode %.1f tok/s  |  context %d / %d  |  GPU memory %.1f MiB  |  %.0f fps",
                state, s.prompt_tps, s.decode_tps, s.context_used, s.context_size, double(s.gpu_bytes) / 1048576.0,
                double(ImGui::GetIO().Framerate));
  ImGui::TextUnformatted(line);
  if (!app.notice.empty()) {
    ImGui::SameLine();
    ImGui::TextDisabled("|  %s", app.notice.c_str());
  }
}

}  // namespace ternvk::chat
