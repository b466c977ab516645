// The window's contents, drawn with Dear ImGui each frame: side panel (model, device, system
// prompt, sampling, history), the conversation with its composer, the performance panel, and a
// status line. Pure drawing: every change goes through App's actions.
#pragma once
#include <string>

#include "apps/ternvk-chat/app.h"

struct ImFont;

namespace ternvk::chat {

// What only the UI remembers between frames.
struct UiState {
  ImFont* mono = nullptr;
  std::string window_device;      // the device that draws the window
  std::string presentation_note;  // why that is not the engine's device, if it is not
  std::string font_warning;
  bool editing = false;  // the last user message is open for editing
  std::string edit_text;
  std::string trace_path;
  size_t seen_answer_bytes = 0;  // to follow the streaming answer down
  std::string seen_refusal;      // to bring a new refusal into view
  int device_choice = 0;         // 0: best; i + 1: device i
};

void draw_ui(App& app, UiState& ui);

// Parts (ui_chat.cpp, ui_side.cpp, ui_perf.cpp).
void draw_conversation(App& app, UiState& ui);
void draw_side_panel(App& app, UiState& ui);
void draw_performance(App& app, UiState& ui);
void draw_status(App& app, UiState& ui);
// Text with ``` fenced code blocks drawn in the monospace font on a darker background.
void draw_rich_text(const std::string& text, ImFont* mono);

}  // namespace ternvk::chat
