// The conversation: messages (streamed answer included), per-message actions, and the composer.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>

#include "apps/ternvk-chat/ui.h"

namespace ternvk::chat {
namespace {

const ImVec4 kUser(0.55f, 0.75f, 1.0f, 1.0f), kAssistant(0.6f, 0.9f, 0.6f, 1.0f), kError(1.0f, 0.45f, 0.4f, 1.0f);

void wrapped(const std::string& text) {
  ImGui::PushTextWrapPos(0.0f);
  ImGui::TextUnformatted(text.data(), text.data() + text.size());
  ImGui::PopTextWrapPos();
}

void code_block(const std::string& code, ImFont* mono) {
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->ChannelsSplit(2);
  dl->ChannelsSetCurrent(1);
  ImGui::PushFont(mono);
  ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.85f, 0.9f, 0.75f, 1.0f));
  ImGui::Indent(8);
  ImGui::BeginGroup();
  ImGui::TextUnformatted(code.data(), code.data() + code.size());
  ImGui::EndGroup();
  ImGui::Unindent(8);
  ImGui::PopStyleColor();
  ImGui::PopFont();
  dl->ChannelsSetCurrent(0);
  const ImVec2 lo = ImGui::GetItemRectMin(), hi = ImGui::GetItemRectMax();
  dl->AddRectFilled(ImVec2(lo.x - 6, lo.y - 3), ImVec2(std::max(hi.x, ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x) , hi.y + 3),
                    IM_COL32(20, 22, 28, 255), 4.0f);
  dl->ChannelsMerge();
  ImGui::Dummy(ImVec2(0, 2));
}

}  // namespace

void draw_rich_text(const std::string& text, ImFont* mono) {
  std::string prose, code;
  bool in_code = false;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    const bool fence = line.rfind("```", 0) == 0;
    if (fence) {
      if (in_code) {
        code_block(code, mono);
        code.clear();
      } else if (!prose.empty()) {
        wrapped(prose);
        prose.clear();
      }
      in_code = !in_code;
    } else {
      std::string& into = in_code ? code : prose;
      if (!into.empty()) into += '\n';
      into += line;
    }
    pos = end + 1;
  }
  if (in_code && !code.empty()) code_block(code, mono);  // still streaming: show it as code already
  if (!prose.empty()) wrapped(prose);
}

void draw_conversation(App& app, UiState& ui) {
  const SessionView& s = app.session();
  const Conversation& c = app.conversation();
  const float composer_h = ImGui::GetTextLineHeightWithSpacing() * 4 + ImGui::GetStyle().FramePadding.y * 2;
  ImGui::BeginChild("messages", ImVec2(0, -composer_h - ImGui::GetStyle().ItemSpacing.y), false);

  if (s.model == SessionView::Model::Loading) {
    ImGui::Text("Loading %s", s.model_path.c_str());
    ImGui::ProgressBar(s.load_progress, ImVec2(-1, 0));
    ImGui::Spacing();
  } else if (s.model == SessionView::Model::Failed) {
    ImGui::PushStyleColor(ImGuiCol_Text, kError);
    wrapped("Could not load " + s.model_path + ":\n" + s.error);
    ImGui::PopStyleColor();
    ImGui::TextDisabled("Pick another model in the side panel; the conversation is kept.");
    ImGui::Separator();
  }
  if (c.messages.empty() && !app.generating())
    ImGui::TextDisabled("Type a message below and press Enter (Ctrl+Enter for a new line).");

  int last_user = -1, last_assistant = -1;
  for (int i = 0; i < int(c.messages.size()); ++i) (c.messages[size_t(i)].role == "user" ? last_user : last_assistant) = i;
  const bool idle = !app.generating() && s.model == SessionView::Model::Ready;
  for (int i = 0; i < int(c.messages.size()); ++i) {
    const Message& m = c.messages[size_t(i)];
    ImGui::PushID(i);
    const bool user = m.role == "user";
    ImGui::TextColored(user ? kUser : kAssistant, "%s", user ? "You" : "Assistant");
    if (!user && !m.stop_reason.empty()) {
      ImGui::SameLine();
      ImGui::TextDisabled("(%d tokens, %.1f tok/s, %s)", m.tokens, m.tokens_per_second, m.stop_reason.c_str());
    }
    ImGui::SameLine();
    if (ImGui::SmallButton("Copy")) ImGui::SetClipboardText(m.content.c_str());
    if (idle && user && i == last_user) {
      ImGui::SameLine();
      if (ImGui::SmallButton("Edit")) {
        ui.editing = true;
        ui.edit_text = m.content;
      }
    }
    if (idle && !user && i == last_assistant && i == int(c.messages.size()) - 1) {
      ImGui::SameLine();
      if (ImGui::SmallButton("Regenerate")) app.regenerate();
    }
    if (ui.editing && user && i == last_user && idle) {
      ImGui::InputTextMultiline("##edit", &ui.edit_text, ImVec2(-1, ImGui::GetTextLineHeight() * 4));
      if (ImGui::Button("Resend")) {
        app.edit_last(ui.edit_text);
        ui.editing = !app.refused.empty();  // refused: the text stays open to rephrase
      }
      ImGui::SameLine();
      if (ImGui::Button("Cancel")) ui.editing = false;
    } else {
      // Answers often begin with the space or newline after "Assistant:"; the view drops it.
      draw_rich_text(user ? m.content : m.content.substr(std::min(m.content.size(), m.content.find_first_not_of(" \n"))), ui.mono);
    }
    ImGui::Spacing();
    ImGui::PopID();
  }
  if (const std::string* streaming = app.streaming_text()) {
    ImGui::TextColored(kAssistant, "Assistant");
    ImGui::SameLine();
    ImGui::TextDisabled("(writing: %d tokens)", s.answer_tokens);
    const size_t start = std::min(streaming->size(), streaming->find_first_not_of(" \n"));
    draw_rich_text(streaming->substr(start) + "\xE2\x96\x8D", ui.mono);  // a cursor block after the text so far
    // Follow the answer down unless the user scrolled up to read.
    if (streaming->size() != ui.seen_answer_bytes && ImGui::GetScrollY() >= ImGui::GetScrollMaxY() - 40)
      ImGui::SetScrollHereY(1.0f);
    ui.seen_answer_bytes = streaming->size();
  }
  if (!app.refused.empty()) {  // just above the composer, which still holds the text
    ImGui::PushStyleColor(ImGuiCol_Text, kError);
    wrapped("Not sent: " + app.refused);
    ImGui::PopStyleColor();
    if (ui.seen_refusal != app.refused) ImGui::SetScrollHereY(1.0f);
  }
  ui.seen_refusal = app.refused;
  ImGui::EndChild();

  // Composer: Enter sends, Ctrl+Enter is a new line.
  const float buttons_w = 96;
  const ImGuiInputTextFlags flags = ImGuiInputTextFlags_EnterReturnsTrue | ImGuiInputTextFlags_CtrlEnterForNewLine;
  if (ImGui::InputTextMultiline("##compose", &app.compose, ImVec2(-buttons_w - ImGui::GetStyle().ItemSpacing.x, composer_h),
                                flags) &&
      app.can_send()) {
    app.send();
    ImGui::SetKeyboardFocusHere(-1);
  }
  ImGui::SameLine();
  ImGui::BeginGroup();
  if (app.generating()) {
    if (ImGui::Button("Stop", ImVec2(buttons_w, 0))) app.stop();
  } else {
    ImGui::BeginDisabled(!app.can_send());
    if (ImGui::Button("Send", ImVec2(buttons_w, 0))) app.send();
    ImGui::EndDisabled();
  }
  ImGui::BeginDisabled(app.generating());
  if (ImGui::Button("New chat", ImVec2(buttons_w, 0))) {
    ui.editing = false;
    app.new_chat();
  }
  ImGui::EndDisabled();
  ImGui::EndGroup();
}

}  // namespace ternvk::chat
