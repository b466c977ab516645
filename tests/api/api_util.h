// Helpers for the C API tests: they use libternvk.so only through include/ternvk.h, as a program
// linking the installed library does.
#pragma once
#include <doctest/doctest.h>
#include <ternvk.h>

#include <memory>
#include <string>
#include <vector>

namespace api_test {

inline const std::string kModel = TERNVK_SOURCE_DIR "/models/ternvk-shakespeare/model.gguf";

// Checks a call's status; on a mismatch shows the call's message.
#define CHECK_STATUS(call, expected)                                                   \
  do {                                                                                 \
    const ternvk_status status_ = (call);                                              \
    CHECK_MESSAGE(status_ == (expected), ternvk_status_name(status_) << ": " << ternvk_last_error()); \
  } while (0)
#define REQUIRE_OK(call)                                                               \
  do {                                                                                 \
    const ternvk_status status_ = (call);                                              \
    REQUIRE_MESSAGE(status_ == TERNVK_OK, ternvk_status_name(status_) << ": " << ternvk_last_error()); \
  } while (0)

struct ModelFree {
  void operator()(ternvk_model* m) const { ternvk_model_free(m); }
};
struct SequenceFree {
  void operator()(ternvk_sequence* s) const { ternvk_sequence_free(s); }
};
using ModelPtr = std::unique_ptr<ternvk_model, ModelFree>;
using SequencePtr = std::unique_ptr<ternvk_sequence, SequenceFree>;

// Loads the shipped model; `adjust` changes the defaults. The model's validation-error count is
// checked when the test frees it (check_clean).
template <class Adjust>
ModelPtr load(Adjust adjust) {
  ternvk_model_params p = ternvk_model_default_params();
  adjust(p);
  ternvk_model* m = nullptr;
  REQUIRE_OK(ternvk_model_load(kModel.c_str(), &p, &m));
  return ModelPtr(m);
}
inline ModelPtr load() {
  return load([](ternvk_model_params&) {});
}
// The Vulkan validation layer (on under ctest) reported nothing for this model.
inline void check_clean(ternvk_model* m) {
  ternvk_model_info info{};
  REQUIRE_OK(ternvk_model_get_info(m, &info));
  CHECK(info.validation_errors == 0);
}
inline ternvk_model_info info(ternvk_model* m) {
  ternvk_model_info i{};
  REQUIRE_OK(ternvk_model_get_info(m, &i));
  return i;
}

inline SequencePtr sequence(ternvk_model* m) {
  ternvk_sequence* s = nullptr;
  REQUIRE_OK(ternvk_sequence_create(m, &s));
  return SequencePtr(s);
}

// Token ids of `text`, BOS first when the vocabulary has one (as `ternvk run`).
inline std::vector<int32_t> tokens(ternvk_model* m, const std::string& text, uint32_t flags = TERNVK_TOKENIZE_ADD_BOS) {
  std::vector<int32_t> ids(text.size() + 8);
  size_t count = 0;
  REQUIRE_OK(ternvk_tokenize(m, text.data(), text.size(), flags, ids.data(), ids.size(), &count));
  ids.resize(count);
  return ids;
}

inline ternvk_sampling greedy() {
  ternvk_sampling s = ternvk_sampling_default();
  s.temperature = 0;
  return s;
}

// What a ternvk_generate produced through its callback.
struct Generated {
  std::vector<int32_t> tokens;
  std::string text;
  ternvk_generation result{};
};

inline int32_t collect(void* user, int32_t token, const char* piece, size_t length) {
  auto* g = static_cast<Generated*>(user);
  if (token >= 0) g->tokens.push_back(token);
  g->text.append(piece, length);
  return 0;
}

inline Generated generate(ternvk_sequence* s, const std::vector<int32_t>& prompt, int n,
                          const ternvk_sampling& sampling = greedy()) {
  Generated g;
  REQUIRE_OK(ternvk_generate(s, prompt.data(), prompt.size(), n, &sampling, collect, &g, &g.result));
  return g;
}

}  // namespace api_test
