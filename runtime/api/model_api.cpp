// The C API: version, errors, devices, models, tokens and text, chat templates.
#include <algorithm>
#include <cstring>
#include <string_view>

#include "runtime/api/state.h"
#include "runtime/core/error.h"
#include "runtime/engine/shipped_model.h"

using namespace ternvk;
using namespace ternvk::api;

namespace {

#define TERNVK_STRINGIFY2(x) #x
#define TERNVK_STRINGIFY(x) TERNVK_STRINGIFY2(x)

void copy_field(char* out, size_t capacity, const std::string& text) {
  const size_t n = std::min(text.size(), capacity - 1);
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

// An enum field or argument as the int the caller stored (a C caller may store any int there; reading
// it as the C++ enum when it is outside the enum's values would be undefined). C enums are ints.
static_assert(sizeof(ternvk_head_precision) == sizeof(int32_t) && sizeof(ternvk_plan) == sizeof(int32_t) &&
              sizeof(ternvk_status) == sizeof(int32_t) && sizeof(ternvk_layer_chain) == sizeof(int32_t) &&
              sizeof(ternvk_matrix_splits) == sizeof(int32_t));
int32_t enum_value(const void* field) {
  int32_t v;
  std::memcpy(&v, field, sizeof v);
  return v;
}

std::shared_ptr<ModelState> model_of(const ternvk_model* model) { return models().find(model, "model"); }

std::vector<int> index_list(const int32_t* values, size_t count, const char* name) {
  if (count > 0) require(values, name);
  if (count > 4096)
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, std::string(name) + ": " + std::to_string(count) + " entries, at most 4096");
  return std::vector<int>(values, values + count);
}

EngineOptions engine_options(const ternvk_model_params& p) {
  EngineOptions o;
  if (p.device < -1)
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "device " + std::to_string(p.device) + " is negative (-1: automatic)");
  if (p.device >= 0) o.device = p.device;
  o.devices = index_list(p.devices, p.device_count, "devices");
  o.split = index_list(p.split, p.split_count, "split");
  if (!o.split.empty() && o.devices.empty())
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "split needs devices (the devices the stages run on)");
  if (p.context < 0)
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "context " + std::to_string(p.context) + " is negative (0: automatic)");
  o.context = p.context;
  o.sequences = p.sequences;  // the engine checks the ranges and names them
  o.prefill_chunk = p.prefill_chunk;
  switch (const int32_t v = enum_value(&p.head)) {
    case TERNVK_HEAD_F16: o.head = HeadPrecision::F16; break;
    case TERNVK_HEAD_INT8: o.head = HeadPrecision::Int8; break;
    default: throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "head " + std::to_string(v) + " is not a ternvk_head_precision");
  }
  switch (const int32_t v = enum_value(&p.plan)) {
    case TERNVK_PLAN_AUTO: o.plan = ExecutionPlan::Auto; break;
    case TERNVK_PLAN_GPU: o.plan = ExecutionPlan::Gpu; break;
    case TERNVK_PLAN_CPU: o.plan = ExecutionPlan::Cpu; break;
    default: throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "plan " + std::to_string(v) + " is not a ternvk_plan");
  }
  if (p.progress) {
    const auto callback = p.progress;
    void* user = p.progress_user_data;
    o.progress = [callback, user](int done, int total) { callback(user, done, total); };
  }
  return o;
}

ChatMessage chat_message(const ternvk_chat_message& m, size_t i) {
  const std::string index = "messages[" + std::to_string(i) + "]";
  require(m.role, (index + ".role").c_str());
  require(m.content, (index + ".content").c_str());
  const std::string_view role = m.role;
  if (role != "system" && role != "user" && role != "assistant")
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT,
                   index + ".role is \"" + std::string(role) + "\"; expected system, user or assistant");
  return {std::string(role), m.content};
}

ChatPrompt chat_prompt(const ModelState& model, const ternvk_chat_message* messages, size_t count, int32_t add_prompt) {
  if (count > 0) require(messages, "messages");
  std::vector<ChatMessage> list;
  for (size_t i = 0; i < count; ++i) list.push_back(chat_message(messages[i], i));
  // Where the format's turn markers are plain text, a message holding one would open a turn of its own.
  if (auto m = find_turn_marker(model.chat_format, list))
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT,
                   describe_turn_marker(model.chat_format, *m, "messages[" + std::to_string(m->message) + "].content"));
  return render_chat(model.chat_format, list, chat_special_tokens(model.tokenizer()), add_prompt != 0);
}

void write_tokens(const std::vector<TokenId>& ids, int32_t* tokens, size_t capacity, size_t* count) {
  require(count, "count");
  if (capacity > 0) require(tokens, "tokens");
  *count = ids.size();
  std::copy_n(ids.begin(), std::min(capacity, ids.size()), tokens);
  if (ids.size() > capacity)
    throw ApiError(TERNVK_ERROR_BUFFER_TOO_SMALL, "the buffer holds " + std::to_string(capacity) + " tokens; " +
                                                      std::to_string(ids.size()) + " are needed");
}

}  // namespace

extern "C" {

const char* ternvk_version(void) {
  return TERNVK_STRINGIFY(TERNVK_VERSION_MAJOR) "." TERNVK_STRINGIFY(TERNVK_VERSION_MINOR) "." TERNVK_STRINGIFY(
      TERNVK_VERSION_PATCH);
}

const char* ternvk_last_error(void) { return last_error_text(); }

const char* ternvk_status_name(ternvk_status status) {
  switch (enum_value(&status)) {
    case TERNVK_OK: return "TERNVK_OK";
    case TERNVK_ERROR_INVALID_ARGUMENT: return "TERNVK_ERROR_INVALID_ARGUMENT";
    case TERNVK_ERROR_INVALID_HANDLE: return "TERNVK_ERROR_INVALID_HANDLE";
    case TERNVK_ERROR_BUSY: return "TERNVK_ERROR_BUSY";
    case TERNVK_ERROR_BUFFER_TOO_SMALL: return "TERNVK_ERROR_BUFFER_TOO_SMALL";
    case TERNVK_ERROR_NO_SEQUENCE_SLOT: return "TERNVK_ERROR_NO_SEQUENCE_SLOT";
    case TERNVK_ERROR_CONTEXT_FULL: return "TERNVK_ERROR_CONTEXT_FULL";
    case TERNVK_ERROR_FAILED: return "TERNVK_ERROR_FAILED";
    case TERNVK_ERROR_OUT_OF_MEMORY: return "TERNVK_ERROR_OUT_OF_MEMORY";
    case TERNVK_ERROR_DEVICE_LOST: return "TERNVK_ERROR_DEVICE_LOST";
    case TERNVK_ERROR_INTERNAL: return "TERNVK_ERROR_INTERNAL";
  }
  return "unknown status";
}

ternvk_status ternvk_device_list(ternvk_device_info* devices, size_t capacity, size_t* count) {
  return run(__func__, [&] {
    require(count, "count");
    if (capacity > 0) require(devices, "devices");
    Instance instance(InstanceOptions{.validation = false, .faults = std::nullopt});
    const auto& all = instance.devices();
    *count = all.size();
    const uint32_t best = all.empty() ? 0 : instance.select().index;
    for (size_t i = 0; i < std::min(capacity, all.size()); ++i) {
      const DeviceInfo& d = all[i];
      ternvk_device_info& out = devices[i];
      out = {};
      out.index = int32_t(d.index);
      copy_field(out.name, sizeof out.name, d.name);
      copy_field(out.type, sizeof out.type, d.type_name());
      copy_field(out.vendor, sizeof out.vendor, d.vendor_name());
      copy_field(out.driver, sizeof out.driver, d.driver_name + (d.driver_info.empty() ? "" : " " + d.driver_info));
      out.vendor_id = d.vendor_id;
      out.device_id = d.device_id;
      out.device_local_bytes = d.device_local_bytes();
      out.subgroup_size = int32_t(d.subgroup_size);
      out.fast_int8_dot = d.has_fast_int8_dot();
      out.is_default = d.index == best;
    }
    if (all.size() > capacity)
      throw ApiError(TERNVK_ERROR_BUFFER_TOO_SMALL, "room for " + std::to_string(capacity) + " devices; there are " +
                                                        std::to_string(all.size()));
  });
}

ternvk_model_params ternvk_model_default_params(void) {
  ternvk_model_params p{};
  p.device = -1;
  p.sequences = 1;
  p.prefill_chunk = EngineOptions{}.prefill_chunk;
  p.head = TERNVK_HEAD_F16;
  p.plan = TERNVK_PLAN_AUTO;
  return p;
}

namespace {

// The size of the first ternvk_device_choice_params (size_t + two enums). Later versions add fields at
// the end: each is read only where the caller's `size` covers it, and a struct of this size stays valid.
constexpr size_t kFirstChoiceParamsSize = sizeof(size_t) + 2 * sizeof(int32_t);
static_assert(sizeof(ternvk_device_choice_params) == kFirstChoiceParamsSize,
              "a field was added: read it only where choices.size covers it (offsetof + sizeof)");

// The caller's choices into `o`, after checking the struct's size (see ternvk.h). This library knows
// sizeof(ternvk_device_choice_params) bytes; a later header's larger struct is accepted while the
// fields this library does not know are zero (their defaults).
void apply_device_choices(const ternvk_device_choice_params& c, EngineOptions& o) {
  constexpr size_t known = sizeof(ternvk_device_choice_params);
  // (a size past a page is not a struct's: most likely an uninitialized field, whose bytes past ours
  // must not be read)
  constexpr size_t most = 4096;
  if (c.size < kFirstChoiceParamsSize || c.size > most)
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT,
                   "choices.size " + std::to_string(c.size) + " is not the size of a ternvk_device_choice_params (" +
                       std::to_string(known) + " in this library's header; start from "
                       "TERNVK_DEVICE_CHOICE_PARAMS_INIT)");
  const auto* bytes = reinterpret_cast<const unsigned char*>(&c);
  for (size_t i = known; i < c.size; ++i)
    if (bytes[i])
      throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT,
                     "choices: byte " + std::to_string(i) + " is set, past the " + std::to_string(known) +
                         " bytes this library (" + ternvk_version() + ") knows: a field of a newer header");
  switch (const int32_t v = enum_value(&c.chain_layers)) {
    case TERNVK_CHAIN_AUTO: o.chain_layers = LayerChain::Auto; break;
    case TERNVK_CHAIN_OFF: o.chain_layers = LayerChain::Off; break;
    case TERNVK_CHAIN_ON: o.chain_layers = LayerChain::On; break;
    case TERNVK_CHAIN_MEASURE: o.chain_layers = LayerChain::Measure; break;
    default: throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "chain_layers " + std::to_string(v) + " is not a ternvk_layer_chain");
  }
  switch (const int32_t v = enum_value(&c.matrix_splits)) {
    case TERNVK_SPLITS_AUTO: o.matrix_splits = MatrixSplits::Auto; break;
    case TERNVK_SPLITS_RULE: o.matrix_splits = MatrixSplits::Rule; break;
    case TERNVK_SPLITS_MEASURE: o.matrix_splits = MatrixSplits::Measure; break;
    default:
      throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "matrix_splits " + std::to_string(v) + " is not a ternvk_matrix_splits");
  }
}

void load_model(const char* path, const ternvk_model_params* params, const ternvk_device_choice_params* choices,
              ternvk_model** model) {
  require(model, "model (the output)");
  *model = nullptr;
  const ternvk_model_params p = params ? *params : ternvk_model_default_params();
  EngineOptions options = engine_options(p);
  if (choices) apply_device_choices(*choices, options);
  const std::filesystem::path file = path ? std::filesystem::path(path) : shipped_model_path();
  auto state = std::make_shared<ModelState>();
  state->instance = std::make_unique<Instance>();
  state->engine = std::make_unique<Engine>(*state->instance, file, std::move(options));
  Engine& engine = *state->engine;
  state->slot_used.assign(size_t(engine.sequences()), false);
  state->path = file.string();
  state->architecture = engine.config().arch_name;
  state->chat_format = detect_chat_format(engine.tokenizer(), engine.config().arch_name);
  state->chat_format_text = std::string(chat_format_name(state->chat_format));
  state->device_name = engine.device().info().name;
  state->plan = engine.describe_plan();
  *model = reinterpret_cast<ternvk_model*>(models().add(std::move(state)));
}

}  // namespace

ternvk_status ternvk_model_load(const char* path, const ternvk_model_params* params, ternvk_model** model) {
  return run(__func__, [&] { load_model(path, params, nullptr, model); });
}

ternvk_status ternvk_model_load_with_choices(const char* path, const ternvk_model_params* params,
                                             const ternvk_device_choice_params* choices, ternvk_model** model) {
  return run(__func__, [&] { load_model(path, params, choices, model); });
}

ternvk_status ternvk_model_free(ternvk_model* model) {
  return run(__func__, [&] { models().remove(model, "model"); });
}

ternvk_status ternvk_model_get_device_choices(const ternvk_model* model, const char** text) {
  return run(__func__, [&] {
    auto m = model_of(model);
    require(text, "text");
    std::lock_guard lock(m->mutex);
    const Engine& e = *m->engine;
    m->device_choices = "layers chained " + e.layer_chain_note() + "\nmatrix splits " + e.matrix_split_note() + "\n";
    *text = m->device_choices.c_str();
  });
}

ternvk_status ternvk_model_get_info(const ternvk_model* model, ternvk_model_info* info) {
  return run(__func__, [&] {
    auto m = model_of(model);
    require(info, "info");
    std::lock_guard lock(m->mutex);
    const Engine& e = *m->engine;
    const ModelConfig& c = e.config();
    const Tokenizer& tok = m->tokenizer();
    ternvk_model_info out{};
    out.path = m->path.c_str();
    out.architecture = m->architecture.c_str();
    out.chat_format = m->chat_format_text.c_str();
    out.device_name = m->device_name.c_str();
    out.plan = m->plan.c_str();
    out.layers = c.n_layers;
    out.hidden_size = c.dim;
    out.heads = c.n_heads;
    out.kv_heads = c.n_kv_heads;
    out.head_dim = c.head_dim;
    out.ffn_size = c.ffn_dim;
    out.vocab_size = c.vocab;
    out.max_context = c.context;
    out.context = e.context();
    out.sequences = e.sequences();
    out.max_batch = std::min(e.max_batch(), e.sequences());
    out.stages = int32_t(e.stage_count());
    out.bos = tok.bos().value_or(-1);
    out.eos = tok.eos().value_or(-1);
    out.eot = tok.eot().value_or(-1);
    out.gpu_bytes = e.peak_gpu_bytes();
    out.validation_errors = m->instance->validation_errors();
    *info = out;
  });
}

ternvk_status ternvk_tokenize(const ternvk_model* model, const char* text, size_t length, uint32_t flags,
                              int32_t* tokens, size_t capacity, size_t* count) {
  return run(__func__, [&] {
    auto m = model_of(model);
    if (length > 0) require(text, "text");
    if (flags & ~uint32_t(TERNVK_TOKENIZE_ADD_BOS | TERNVK_TOKENIZE_PARSE_SPECIAL))
      throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "flags " + std::to_string(flags) + " has bits that are not TERNVK_TOKENIZE_*");
    const Tokenizer& tok = m->tokenizer();
    const bool add_bos = (flags & TERNVK_TOKENIZE_ADD_BOS) && tok.bos().has_value();
    write_tokens(tok.encode(std::string_view(text ? text : "", length), add_bos, flags & TERNVK_TOKENIZE_PARSE_SPECIAL),
                 tokens, capacity, count);
  });
}

ternvk_status ternvk_detokenize(const ternvk_model* model, const int32_t* tokens, size_t count, int32_t render_special,
                                char* text, size_t capacity, size_t* length) {
  return run(__func__, [&] {
    auto m = model_of(model);
    checked_tokens(*m, tokens, count);
    const std::vector<TokenId> ids(tokens, tokens + count);
    write_text(m->tokenizer().decode(ids, render_special != 0), text, capacity, length);
  });
}

ternvk_status ternvk_detokenizer_create(const ternvk_model* model, int32_t render_special,
                                        ternvk_detokenizer** detokenizer) {
  return run(__func__, [&] {
    auto m = model_of(model);
    require(detokenizer, "detokenizer (the output)");
    *detokenizer = nullptr;
    auto state = std::make_shared<DetokenizerState>(std::move(m), render_special != 0);
    *detokenizer = reinterpret_cast<ternvk_detokenizer*>(detokenizers().add(std::move(state)));
  });
}

ternvk_status ternvk_detokenizer_feed(ternvk_detokenizer* detokenizer, int32_t token, const char** piece,
                                      size_t* length) {
  return run(__func__, [&] {
    auto d = detokenizers().find(detokenizer, "detokenizer");
    require(piece, "piece");
    require(length, "length");
    InUse in_use(d->busy, "detokenizer");
    checked_tokens(*d->model, &token, 1);
    d->piece = d->decoder.feed(token);
    *piece = d->piece.c_str();
    *length = d->piece.size();
  });
}

ternvk_status ternvk_detokenizer_flush(ternvk_detokenizer* detokenizer, const char** piece, size_t* length) {
  return run(__func__, [&] {
    auto d = detokenizers().find(detokenizer, "detokenizer");
    require(piece, "piece");
    require(length, "length");
    InUse in_use(d->busy, "detokenizer");
    d->piece = d->decoder.flush();
    *piece = d->piece.c_str();
    *length = d->piece.size();
  });
}

ternvk_status ternvk_detokenizer_free(ternvk_detokenizer* detokenizer) {
  return run(__func__, [&] {
    auto d = detokenizers().find(detokenizer, "detokenizer");
    InUse in_use(d->busy, "detokenizer");
    detokenizers().remove(detokenizer, "detokenizer");
  });
}

ternvk_status ternvk_chat_apply(const ternvk_model* model, const ternvk_chat_message* messages, size_t count,
                                int32_t add_generation_prompt, char* text, size_t capacity, size_t* length) {
  return run(__func__, [&] {
    auto m = model_of(model);
    write_text(chat_prompt(*m, messages, count, add_generation_prompt).to_string(), text, capacity, length);
  });
}

ternvk_status ternvk_chat_tokenize(const ternvk_model* model, const ternvk_chat_message* messages, size_t count,
                                   int32_t add_generation_prompt, int32_t* tokens, size_t capacity,
                                   size_t* token_count) {
  return run(__func__, [&] {
    auto m = model_of(model);
    const ChatPrompt prompt = chat_prompt(*m, messages, count, add_generation_prompt);
    write_tokens(encode_chat(m->tokenizer(), prompt), tokens, capacity, token_count);
  });
}

}  // extern "C"
