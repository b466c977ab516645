// What the C API's opaque handles stand for, and the machinery every entry point shares: handle
// lookup (a handle is an id, never a pointer the caller could have freed), one-call-at-a-time
// guards for sequences, and the translation of C++ exceptions into a status and a message.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "include/ternvk.h"
#include "runtime/device/instance.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/streaming_decoder.h"

namespace ternvk::api {

// An error with the status the caller gets (the rest of the runtime's errors map by type).
class ApiError : public std::runtime_error {
 public:
  ApiError(ternvk_status status, const std::string& message) : std::runtime_error(message), status(status) {}
  ternvk_status status;
};

struct ModelState {
  ~ModelState();
  std::unique_ptr<Instance> instance;
  std::unique_ptr<Engine> engine;  // destroyed before the instance it was made on
  std::mutex mutex;                // one engine call at a time; guards slot_used and the engine's slots
  std::vector<bool> slot_used;
  ChatFormat chat_format = ChatFormat::kPlain;
  std::string path, architecture, chat_format_text, device_name, plan;
  std::string device_choices;  // ternvk_model_get_device_choices' text, rebuilt by each call
  const Tokenizer& tokenizer() const { return engine->tokenizer(); }
};

struct SequenceState {
  SequenceState(std::shared_ptr<ModelState> model, int slot);
  ~SequenceState();  // gives the slot back
  std::shared_ptr<ModelState> model;
  const int slot;
  std::atomic<bool> busy{false};
  std::atomic<bool> cancelled{false};
  SamplingParams params;
  Sampler sampler;
  bool keep_logits = false;
  // What the last step read back (its kind decides how the next token is picked); empty before
  // the first step and after a truncate.
  std::optional<StepOutput> last;
  Selection::Kind last_kind = Selection::Argmax;
};

struct DetokenizerState {
  DetokenizerState(std::shared_ptr<ModelState> model, bool render_special)
      : model(std::move(model)), decoder(this->model->tokenizer(), render_special) {}
  std::shared_ptr<ModelState> model;
  StreamingDecoder decoder;
  std::string piece;  // what the last call returned (the caller holds a pointer into it)
  std::atomic<bool> busy{false};
};

// Live handles of one kind. Ids come from one counter for all kinds and are never reused, so a
// freed handle, or one of another kind, is recognised rather than dereferenced.
template <class State>
class Registry {
 public:
  uintptr_t add(std::shared_ptr<State> state) {
    std::lock_guard lock(mutex_);
    const uintptr_t id = next_id();
    live_.emplace(id, std::move(state));
    return id;
  }
  std::shared_ptr<State> find(const void* handle, const char* kind) const {
    std::lock_guard lock(mutex_);
    if (auto it = live_.find(reinterpret_cast<uintptr_t>(handle)); it != live_.end()) return it->second;
    throw ApiError(TERNVK_ERROR_INVALID_HANDLE, unknown(handle, kind));
  }
  std::shared_ptr<State> remove(const void* handle, const char* kind) {
    std::lock_guard lock(mutex_);
    auto it = live_.find(reinterpret_cast<uintptr_t>(handle));
    if (it == live_.end()) throw ApiError(TERNVK_ERROR_INVALID_HANDLE, unknown(handle, kind));
    auto state = std::move(it->second);
    live_.erase(it);
    return state;
  }

 private:
  static uintptr_t next_id();
  static std::string unknown(const void* handle, const char* kind);
  mutable std::mutex mutex_;
  std::unordered_map<uintptr_t, std::shared_ptr<State>> live_;
};

// The registries live for the whole process (never destroyed: handles the program did not free
// are not torn down while the Vulkan driver unloads at exit).
Registry<ModelState>& models();
Registry<SequenceState>& sequences();
Registry<DetokenizerState>& detokenizers();

// Marks a sequence or detokenizer as inside a call for the guard's lifetime; a second call at the
// same time fails with TERNVK_ERROR_BUSY.
class InUse {
 public:
  InUse(std::atomic<bool>& busy, const char* what);
  ~InUse() { busy_ = false; }
  InUse(const InUse&) = delete;
  InUse& operator=(const InUse&) = delete;

 private:
  std::atomic<bool>& busy_;
};

// Runs an entry point's body: returns TERNVK_OK, or the status its exception maps to with the
// message (prefixed with `function`) stored for ternvk_last_error(). Never lets an exception out.
ternvk_status succeeded() noexcept;
ternvk_status failed(const char* function) noexcept;  // call only inside a catch block
template <class Body>
ternvk_status run(const char* function, Body&& body) noexcept {
  try {
    body();
    return succeeded();
  } catch (...) {
    return failed(function);
  }
}
// This thread's last message (what ternvk_last_error returns).
const char* last_error_text();

// Throws TERNVK_ERROR_INVALID_ARGUMENT naming `name` when `pointer` is null.
void require(const void* pointer, const char* name);

// Writes `text` to a caller buffer with the API's convention (see ternvk.h).
void write_text(const std::string& text, char* out, size_t capacity, size_t* length);
// Token ids in range for the model, as the engine's ids; throws naming the first bad one.
std::vector<uint32_t> checked_tokens(const ModelState& model, const int32_t* tokens, size_t count);

}  // namespace ternvk::api
