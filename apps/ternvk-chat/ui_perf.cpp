// The performance panel: GPU time per shader of the last token (from the profiler's per-dispatch
// timestamps) as a bar chart, and the Chrome trace of the last answer.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cstdio>

#include "apps/ternvk-chat/ui.h"

namespace ternvk::chat {

void draw_performance(App& app, UiState& ui) {
  const SessionView& s = app.session();
  ImGui::TextUnformatted("GPU time per shader, last token");
  ImGui::Separator();
  if (s.model == SessionView::Model::Ready && !s.timestamps)
    ImGui::TextWrapped("This device does not report GPU timestamps on its compute queue, so per-shader times "
                       "cannot be measured.");
  else if (s.last_token.empty())
    ImGui::TextDisabled("Shader times appear here while the model answers.");
  else {
    ImGui::Text("%s: %.1f us on the GPU", s.last_token_step.c_str(), s.last_token_us);
    const double top = s.last_token.front().us;
    const float label_w = ImGui::GetContentRegionAvail().x;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (const auto& row : s.last_token) {
      // One row per shader: its name, then a bar scaled to the slowest shader with the time on it.
      ImGui::TextUnformatted(row.label.c_str());
      const ImVec2 p = ImGui::GetCursorScreenPos();
      const float h = ImGui::GetTextLineHeight();
      const float w = top > 0 ? float(row.us / top) * (label_w - 4) : 0;
      dl->AddRectFilled(p, ImVec2(p.x + std::max(w, 2.0f), p.y + h), IM_COL32(90, 150, 230, 255), 2.0f);
      char text[64];
      std::snprintf(text, sizeof text, "%.1f us  %.0f%%  x%d", row.us, s.last_token_us > 0 ? 100 * row.us / s.last_token_us : 0.0,
                    row.calls);
      dl->AddText(ImVec2(p.x + 4, p.y), IM_COL32(255, 255, 255, 255), text);
      ImGui::Dummy(ImVec2(label_w, h + 2));
    }
  }
  ImGui::Spacing();
  ImGui::Separator();
  ImGui::TextUnformatted("Chrome trace of the last answer");
  if (ui.trace_path.empty()) ui.trace_path = (app.store().root() / "traces" / "last-answer.json").string();
  ImGui::SetNextItemWidth(-1);
  ImGui::InputText("##trace", &ui.trace_path);
  ImGui::BeginDisabled(!s.has_trace || app.generating());
  if (ImGui::Button("Write trace")) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(ui.trace_path).parent_path(), ec);
    app.write_trace(ui.trace_path);
  }
  ImGui::EndDisabled();
  ImGui::TextDisabled("open it in ui.perfetto.dev");
  if (!ui.font_warning.empty()) {
    ImGui::Separator();
    ImGui::TextWrapped("%s", ui.font_warning.c_str());
  }
}

}  // namespace ternvk::chat
