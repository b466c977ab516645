// The side panel: model (path, recent files), device, system prompt, sampling, saved conversations.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <ctime>

#include "apps/ternvk-chat/ui.h"

namespace ternvk::chat {
namespace {

void help(const char* text) {
  ImGui::SameLine();
  ImGui::TextDisabled("(?)");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", text);
}

void model_section(App& app, UiState& ui) {
  const SessionView& s = app.session();
  ImGui::SetNextItemWidth(-1);
  ImGui::InputTextWithHint("##model", "model.gguf or a Hugging Face folder", &app.model_request.path);
  const bool loading = s.model == SessionView::Model::Loading;
  ImGui::BeginDisabled(loading);
  if (ImGui::Button("Load")) app.load_model(app.model_request.path);
  ImGui::SameLine();
  if (ImGui::Button("Shipped model")) app.load_model(app.default_model());
  ImGui::EndDisabled();
  if (!app.settings.recent_models.empty() && ImGui::TreeNode("Recent")) {
    for (const auto& path : app.settings.recent_models)
      if (ImGui::Selectable(path.c_str(), path == s.model_path) && !loading) app.load_model(path);
    ImGui::TreePop();
  }
  switch (s.model) {
    case SessionView::Model::None: ImGui::TextDisabled("no model loaded"); break;
    case SessionView::Model::Loading: ImGui::ProgressBar(s.load_progress, ImVec2(-1, 0), "loading"); break;
    case SessionView::Model::Failed:
      ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.45f, 0.4f, 1.0f));
      ImGui::TextWrapped("load failed: %s", s.error.c_str());
      ImGui::PopStyleColor();
      break;
    case SessionView::Model::Ready:
      ImGui::TextWrapped("%s", s.model_summary.c_str());
      ImGui::TextDisabled("chat template: %s", s.chat_format.c_str());
      break;
  }
  (void)ui;
}

void device_section(App& app, UiState& ui) {
  const auto& devices = app.instance().devices();
  std::string preview = ui.device_choice == 0 ? "best (automatic)" : devices[size_t(ui.device_choice - 1)].name;
  ImGui::SetNextItemWidth(-1);
  if (ImGui::BeginCombo("##device", preview.c_str())) {
    if (ImGui::Selectable("best (automatic)", ui.device_choice == 0)) ui.device_choice = 0;
    for (size_t i = 0; i < devices.size(); ++i) {
      const std::string label = std::to_string(i) + ": " + devices[i].name + " (" + devices[i].type_name() + ")";
      if (ImGui::Selectable(label.c_str(), ui.device_choice == int(i) + 1)) ui.device_choice = int(i) + 1;
    }
    ImGui::EndCombo();
  }
  app.model_request.device = ui.device_choice == 0 ? std::nullopt : std::optional<int>(ui.device_choice - 1);
  ImGui::SetNextItemWidth(-1);
  ImGui::InputTextWithHint("##devices", "split over devices, e.g. 0,1 or all", &app.model_request.devices);
  help("Runs the model as a pipeline of stages, one per listed device (an index may repeat). "
       "Layers per device: the field below, 'auto' for an even split. Applies on Load.");
  if (!app.model_request.devices.empty()) {
    ImGui::SetNextItemWidth(-1);
    ImGui::InputTextWithHint("##split", "layers per device: auto or 12,18", &app.model_request.split);
  }
  ImGui::Checkbox("int8 output head", &app.model_request.int8_head);
  help("Holds the output head (and the tied embedding) as int8 rows with one scale per row: half its "
       "bytes, which dominate a token of small models; logits change slightly. Applies on Load.");
  const SessionView& s = app.session();
  if (!s.device_summary.empty()) ImGui::TextWrapped("model on: %s", s.device_summary.c_str());
  ImGui::TextWrapped("window drawn on: %s", ui.window_device.c_str());
  if (!ui.presentation_note.empty()) ImGui::TextWrapped("%s", ui.presentation_note.c_str());
}

void sampling_section(App& app) {
  auto& p = app.settings.sampling;
  bool changed = false;
  auto track = [&] { changed |= ImGui::IsItemDeactivatedAfterEdit(); };
  ImGui::PushItemWidth(-110);
  ImGui::SliderFloat("temperature", &p.temperature, 0.0f, 2.0f, "%.2f");
  track();
  ImGui::SliderInt("top-k", &p.top_k, 0, 200);
  track();
  ImGui::SliderFloat("top-p", &p.top_p, 0.0f, 1.0f, "%.2f");
  track();
  ImGui::SliderFloat("min-p", &p.min_p, 0.0f, 1.0f, "%.2f");
  track();
  ImGui::SliderFloat("repeat penalty", &p.repeat_penalty, 1.0f, 2.0f, "%.2f");
  track();
  ImGui::InputScalar("seed", ImGuiDataType_S64, &app.settings.seed);
  track();
  ImGui::SliderInt("max tokens", &app.settings.max_tokens, 1, 4096);
  track();
  ImGui::PopItemWidth();
  ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
  ImGui::TextWrapped("temperature 0: greedy; seed -1: random");
  ImGui::PopStyleColor();
  if (changed) app.save_settings();
}

void history_section(App& app) {
  const std::string current = app.conversation().id;
  std::string open, remove;
  for (const auto& c : app.history()) {
    ImGui::PushID(c.id.c_str());
    char when[32] = "";
    const std::time_t t = std::time_t(c.updated);
    std::strftime(when, sizeof when, "%m-%d %H:%M", std::localtime(&t));
    const std::string label = std::string(when) + "  " + (c.title.empty() ? "(untitled)" : c.title);
    if (ImGui::Selectable(label.c_str(), c.id == current, 0, ImVec2(ImGui::GetContentRegionAvail().x - 24, 0))) open = c.id;
    ImGui::SameLine();
    if (ImGui::SmallButton("x")) remove = c.id;
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("delete this conversation");
    ImGui::PopID();
  }
  if (app.history().empty()) ImGui::TextDisabled("saved in %s", app.store().conversations_dir().c_str());
  if (!open.empty()) app.open(open);
  if (!remove.empty()) app.remove(remove);
}

}  // namespace

void draw_side_panel(App& app, UiState& ui) {
  if (ImGui::CollapsingHeader("Model", ImGuiTreeNodeFlags_DefaultOpen)) model_section(app, ui);
  if (ImGui::CollapsingHeader("Device", ImGuiTreeNodeFlags_DefaultOpen)) device_section(app, ui);
  if (ImGui::CollapsingHeader("System prompt")) {
    ImGui::InputTextMultiline("##system", &app.settings.system, ImVec2(-1, ImGui::GetTextLineHeight() * 4));
    if (ImGui::IsItemDeactivatedAfterEdit()) app.save_settings();
  }
  if (ImGui::CollapsingHeader("Sampling", ImGuiTreeNodeFlags_DefaultOpen)) sampling_section(app);
  if (ImGui::CollapsingHeader("Conversations", ImGuiTreeNodeFlags_DefaultOpen)) {
    ImGui::BeginDisabled(app.generating());
    history_section(app);
    ImGui::EndDisabled();
  }
}

}  // namespace ternvk::chat
