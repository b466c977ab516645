/* The C API from C99 (compiled with -std=c99 -pedantic -Werror): the header is plain C, and a
 * program written in it gets the same text as a C++ caller. */
#include <string.h>
#include <ternvk.h>

typedef struct {
  char* out;
  size_t capacity;
  size_t used;
} Text;

static int32_t append_piece(void* user_data, int32_t token, const char* piece, size_t length) {
  Text* text = (Text*)user_data;
  (void)token;
  if (text->used + length + 1 > text->capacity) return 1; /* full: stop */
  memcpy(text->out + text->used, piece, length);
  text->used += length;
  text->out[text->used] = '\0';
  return 0;
}

/* Greedy continuation of `prompt` into `out`; returns 0, or the failing status with its message in `out`. */
int c99_generate_greedy(const char* model_path, const char* prompt, int n, char* out, size_t capacity) {
  ternvk_model* model = NULL;
  ternvk_sequence* sequence = NULL;
  int32_t tokens[256];
  size_t count = 0;
  ternvk_sampling greedy = ternvk_sampling_default();
  ternvk_device_choice_params device_choices = TERNVK_DEVICE_CHOICE_PARAMS_INIT;
  Text text;
  ternvk_status status;
  text.out = out;
  text.capacity = capacity;
  text.used = 0;
  out[0] = '\0';
  greedy.temperature = 0.0f;
  device_choices.matrix_splits = TERNVK_SPLITS_RULE; /* no trial at load: the argued split rule */
  status = ternvk_model_load_with_choices(model_path, NULL, &device_choices, &model);
  if (status == TERNVK_OK) {
    const char* choices = NULL; /* a log line's worth: what ran on the device and why */
    status = ternvk_model_get_device_choices(model, &choices);
  }
  if (status == TERNVK_OK)
    status = ternvk_tokenize(model, prompt, strlen(prompt), TERNVK_TOKENIZE_ADD_BOS, tokens, 256, &count);
  if (status == TERNVK_OK) status = ternvk_sequence_create(model, &sequence);
  if (status == TERNVK_OK) status = ternvk_generate(sequence, tokens, count, n, &greedy, append_piece, &text, NULL);
  if (status != TERNVK_OK) {
    strncpy(out, ternvk_last_error(), capacity - 1);
    out[capacity - 1] = '\0';
  }
  if (sequence) ternvk_sequence_free(sequence);
  if (model) ternvk_model_free(model);
  return (int)status;
}

/* The name of a status value the header does not list (C lets a caller store any int in an enum). */
const char* c99_status_name(int value) { return ternvk_status_name((ternvk_status)value); }
