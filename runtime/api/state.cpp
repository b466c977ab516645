#include "runtime/api/state.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>

#include "runtime/core/error.h"

namespace ternvk::api {
namespace {

thread_local std::string last_error;

std::atomic<uintptr_t> handle_counter{0};

}  // namespace

template <class State>
uintptr_t Registry<State>::next_id() {
  // Distinct from small integers and from each other; never 0 (the null handle).
  return 0x7e570000u + 16 * ++handle_counter;
}

template <class State>
std::string Registry<State>::unknown(const void* handle, const char* kind) {
  if (!handle) return std::string("the ") + kind + " handle is null";
  char text[32];
  std::snprintf(text, sizeof text, "%p", handle);
  return std::string(kind) + " handle " + text + " is not a live " + kind +
         " (already freed, or not made by ternvk_" + kind + "_create/load)";
}

template class Registry<ModelState>;
template class Registry<SequenceState>;
template class Registry<DetokenizerState>;

Registry<ModelState>& models() {
  static auto* registry = new Registry<ModelState>;
  return *registry;
}
Registry<SequenceState>& sequences() {
  static auto* registry = new Registry<SequenceState>;
  return *registry;
}
Registry<DetokenizerState>& detokenizers() {
  static auto* registry = new Registry<DetokenizerState>;
  return *registry;
}

ModelState::~ModelState() {
  engine.reset();
  instance.reset();
}

SequenceState::SequenceState(std::shared_ptr<ModelState> m, int s) : model(std::move(m)), slot(s), sampler(params) {}

SequenceState::~SequenceState() {
  std::lock_guard lock(model->mutex);
  try {
    model->engine->truncate(slot, 0);
  } catch (const std::exception&) {
    // A lost device cannot fail freeing: the slot is returned either way.
  }
  model->slot_used[size_t(slot)] = false;
}

InUse::InUse(std::atomic<bool>& busy, const char* what) : busy_(busy) {
  bool expected = false;
  if (!busy_.compare_exchange_strong(expected, true))
    throw ApiError(TERNVK_ERROR_BUSY, std::string("the ") + what +
                                          " is inside another call (another thread, or its own generate callback): "
                                          "use a " + what + " from one thread at a time");
}

ternvk_status succeeded() noexcept {
  last_error.clear();
  return TERNVK_OK;
}

ternvk_status failed(const char* function) noexcept {
  ternvk_status status = TERNVK_ERROR_INTERNAL;
  const char* message = "an unknown exception";  // what() stays valid: the caller's handler holds it
  try {
    throw;
  } catch (const ApiError& e) {
    status = e.status, message = e.what();
  } catch (const DeviceLostError& e) {
    status = TERNVK_ERROR_DEVICE_LOST, message = e.what();
  } catch (const OutOfMemoryError& e) {
    status = TERNVK_ERROR_OUT_OF_MEMORY, message = e.what();
  } catch (const Error& e) {
    status = TERNVK_ERROR_FAILED, message = e.what();
  } catch (const std::bad_alloc&) {
    status = TERNVK_ERROR_OUT_OF_MEMORY, message = "out of host memory";
  } catch (const std::exception& e) {
    status = TERNVK_ERROR_INTERNAL, message = e.what();
  } catch (...) {
  }
  try {
    last_error = std::string(function) + ": " + (status == TERNVK_ERROR_INTERNAL ? "internal error: " : "") + message;
  } catch (...) {
    last_error.clear();  // no memory for the message: the status still says what happened
  }
  return status;
}

const char* last_error_text() { return last_error.c_str(); }

void require(const void* pointer, const char* name) {
  if (!pointer) throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, std::string(name) + " is null");
}

void write_text(const std::string& text, char* out, size_t capacity, size_t* length) {
  require(length, "length");
  if (capacity > 0) require(out, "the output buffer");
  *length = text.size();
  const size_t n = std::min(text.size(), capacity > 0 ? capacity - 1 : 0);
  if (capacity > 0) {
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
  }
  if (text.size() + 1 > capacity)
    throw ApiError(TERNVK_ERROR_BUFFER_TOO_SMALL, "the buffer holds " + std::to_string(capacity) +
                                                      " bytes; the text needs " + std::to_string(text.size() + 1) +
                                                      " with its NUL");
}

std::vector<uint32_t> checked_tokens(const ModelState& model, const int32_t* tokens, size_t count) {
  if (count > 0) require(tokens, "tokens");
  const int32_t vocab = model.engine->config().vocab;
  std::vector<uint32_t> ids;
  ids.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab)
      throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "token " + std::to_string(i) + " is " + std::to_string(tokens[i]) +
                                                        ", outside the vocabulary 0.." + std::to_string(vocab - 1));
    ids.push_back(uint32_t(tokens[i]));
  }
  return ids;
}

}  // namespace ternvk::api
