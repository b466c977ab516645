// ternvk-chat: the desktop chat app. A Dear ImGui window (GLFW + Vulkan) over the ternvk runtime:
// the model loads and answers on a worker thread (chat_session), the window redraws at up to 60
// frames per second meanwhile, conversations persist in the user's data directory.
#include <CLI/CLI.hpp>
#include <GLFW/glfw3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "apps/ternvk-chat/app.h"
#include "apps/ternvk-chat/imgui_layer.h"
#include "apps/ternvk-chat/script.h"
#include "apps/ternvk-chat/ui.h"
#include "apps/ternvk-chat/window.h"
#include "runtime/device/instance.h"
#include "runtime/engine/shipped_model.h"

namespace {

using namespace ternvk::chat;

std::string default_model_path() { return ternvk::shipped_model_path().string(); }

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

struct Options {
  std::string model, script, size = "1280x800", data_dir;
  std::optional<int> device;
  std::string head = "f16";
  bool no_load = false;
};

int run(const Options& o) {
  // GLFW would fail too, but with a message about X11 internals; say what is missing instead.
  if (!env_set("DISPLAY") && !env_set("WAYLAND_DISPLAY"))
    throw StartupError(
        "no display: neither DISPLAY nor WAYLAND_DISPLAY is set. ternvk-chat opens a window and needs a graphical "
        "session (or a virtual one: xvfb-run -a ternvk-chat). In a terminal, use `ternvk chat`.",
        2);
  int width = 0, height = 0;
  if (std::sscanf(o.size.c_str(), "%dx%d", &width, &height) != 2 || width < 320 || height < 240 || width > 16384 ||
      height > 16384)
    throw StartupError("--size wants WIDTHxHEIGHT, at least 320x240 (got '" + o.size + "')", 2);
  std::unique_ptr<ScriptRunner> script;
  if (!o.script.empty()) script = std::make_unique<ScriptRunner>(o.script);  // bad scripts fail before a window opens

  GlfwLibrary glfw;
  ternvk::Instance instance;  // the engine's (validation per TERNVK_VALIDATION)
  const ternvk::DeviceInfo& engine_device = instance.select(o.device);
  WindowOptions wo;
  wo.width = width;
  wo.height = height;
  wo.title = "ternvk chat";
  wo.prefer = PreferredDevice{engine_device.name, engine_device.vendor_id, engine_device.device_id};
  wo.pretend_no_presentation = std::getenv("TERNVK_CHAT_NO_PRESENT") && std::string(std::getenv("TERNVK_CHAT_NO_PRESENT")) == "1";
  Window window(wo);
  ImGuiLayer imgui(window);
  ConversationStore store(o.data_dir.empty() ? ConversationStore::default_root() : std::filesystem::path(o.data_dir));
  App app(instance, std::move(store), default_model_path());
  app.model_request.device = o.device;
  app.model_request.int8_head = o.head == "int8";
  UiState ui;
  ui.mono = imgui.mono();
  ui.window_device = window.device_name();
  ui.presentation_note = window.presentation_note();
  ui.font_warning = imgui.font_warning();
  ui.device_choice = o.device ? *o.device + 1 : 0;
  if (!window.presentation_note().empty()) std::fprintf(stderr, "ternvk-chat: %s\n", window.presentation_note().c_str());
  // A script decides itself what to load; otherwise the chosen (or shipped) model loads at once.
  if (!o.no_load && !script) app.load_model(o.model.empty() ? app.default_model() : o.model);

  using Clock = std::chrono::steady_clock;
  const auto frame_time = std::chrono::microseconds(1000000 / 60);
  auto last = Clock::now();
  int exit_code = 0;
  while (!window.should_close()) {
    const bool model_busy = app.generating() || app.session().model == SessionView::Model::Loading;
    const bool busy = script || model_busy;
    // Idle: sleep until input arrives (or a slow tick for the clock); busy: redraw every frame.
    if (busy) glfwPollEvents();
    else glfwWaitEventsTimeout(0.25);
    app.update();
    imgui.new_frame();
    draw_ui(app, ui);
    imgui.render();
    ++app.frames;
    if (model_busy) {
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - last).count();
      app.longest_busy_frame_ms = std::max(app.longest_busy_frame_ms, ms);
    }
    if (script) {
      const auto status = script->step(app, window);
      if (status == ScriptRunner::Status::Failed) {
        std::fprintf(stderr, "ternvk-chat: script failed: %s\n", script->failure().c_str());
        exit_code = 4;
        break;
      }
      if (status == ScriptRunner::Status::Done) {
        if (!window.should_close()) break;  // quit, or the script's end
      }
    }
    // At most 60 frames per second: the worker thread needs the CPU more than a faster UI does.
    const auto next = last + frame_time;
    if (Clock::now() < next) std::this_thread::sleep_until(next);
    last = Clock::now();
  }
  if (instance.validation_errors() > 0)
    std::fprintf(stderr, "ternvk-chat: %llu Vulkan validation errors in the engine\n",
                 (unsigned long long)instance.validation_errors());
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"ternvk-chat: chat with a BitNet b1.58 model in a desktop window (Vulkan)"};
  Options o;
  cli.add_option("-m,--model", o.model, "GGUF file or Hugging Face folder to load at start (default: the shipped model)");
  cli.add_option("--device", o.device, "Vulkan device index from `ternvk devices` (default: TERNVK_DEVICE, else the best)");
  cli.add_option("--script", o.script, "Drive the app from a script (see apps/ternvk-chat/script.h) and exit");
  cli.add_option("--size", o.size, "Window size, WIDTHxHEIGHT");
  cli.add_option("--data-dir", o.data_dir, "Where conversations are kept (default: $XDG_DATA_HOME/ternvk)");
  cli.add_flag("--no-load", o.no_load, "Do not load a model at start");
  cli.add_option("--head", o.head, "Output head (and tied embedding) on the GPU: f16 (the file's values) or int8 (half the bytes)")
      ->check(CLI::IsMember({"f16", "int8"}));
  CLI11_PARSE(cli, argc, argv);
  try {
    return run(o);
  } catch (const StartupError& e) {
    std::fprintf(stderr, "ternvk-chat: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ternvk-chat: %s\n", e.what());
    return 1;
  }
}
