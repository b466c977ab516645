/* ternvk-batched: several prompts decoded together, one forward pass per step for all of them
 * (ternvk_decode), greedily. Each continuation is the same as the prompt's run alone.
 *
 *   ternvk-batched [-m MODEL] [-n N] PROMPT...
 *
 * Prints, for each prompt in order, a line "=== i ===" then the prompt and its continuation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ternvk.h>

typedef struct {
  ternvk_sequence* sequence;
  ternvk_detokenizer* detokenizer;
  int32_t next;   /* the sampled token to feed at the next step */
  int generated;
  int done;
  char* text;     /* the continuation so far */
  size_t length;
} Stream;

static int fail(const char* what) {
  fprintf(stderr, "ternvk-batched: %s: %s\n", what, ternvk_last_error());
  return 1;
}

static int append(Stream* s, const char* piece, size_t length) {
  char* grown = realloc(s->text, s->length + length + 1);
  if (!grown) return 0;
  memcpy(grown + s->length, piece, length);
  s->length += length;
  grown[s->length] = '\0';
  s->text = grown;
  return 1;
}

int main(int argc, char** argv) {
  const char* model_path = NULL;
  int n_predict = 32;
  int first = 1, n_prompts, i, active, rc = 1;
  ternvk_model* model = NULL;
  ternvk_model_info info;
  ternvk_model_params params = ternvk_model_default_params();
  ternvk_sampling greedy = ternvk_sampling_default();
  Stream* streams = NULL;
  ternvk_sequence** batch = NULL;
  int32_t* batch_tokens = NULL;
  int* batch_index = NULL;
  while (first + 1 < argc && argv[first][0] == '-') {
    if (strcmp(argv[first], "-m") == 0) model_path = argv[first + 1];
    else if (strcmp(argv[first], "-n") == 0) n_predict = atoi(argv[first + 1]);
    else break;
    first += 2;
  }
  n_prompts = argc - first;
  if (n_prompts < 1 || n_predict < 1) {
    fprintf(stderr, "usage: %s [-m MODEL] [-n N] PROMPT...\n", argv[0]);
    return 2;
  }
  greedy.temperature = 0;
  params.sequences = n_prompts; /* one KV cache slot per prompt */
  if (ternvk_model_load(model_path, &params, &model) != TERNVK_OK) return fail("loading the model");
  if (ternvk_model_get_info(model, &info) != TERNVK_OK) goto failed;
  streams = calloc((size_t)n_prompts, sizeof *streams);
  batch = calloc((size_t)n_prompts, sizeof *batch);
  batch_tokens = calloc((size_t)n_prompts, sizeof *batch_tokens);
  batch_index = calloc((size_t)n_prompts, sizeof *batch_index);
  if (!streams || !batch || !batch_tokens || !batch_index) goto done;

  /* Each prompt: its own sequence, prefilled alone, then its first token sampled. */
  for (i = 0; i < n_prompts; ++i) {
    Stream* s = &streams[i];
    const char* prompt = argv[first + i];
    int32_t tokens[4096];
    size_t count = 0;
    if (ternvk_tokenize(model, prompt, strlen(prompt), TERNVK_TOKENIZE_ADD_BOS, tokens, 4096, &count) != TERNVK_OK ||
        ternvk_sequence_create(model, &s->sequence) != TERNVK_OK ||
        ternvk_sequence_set_sampling(s->sequence, &greedy) != TERNVK_OK ||
        ternvk_detokenizer_create(model, 0, &s->detokenizer) != TERNVK_OK ||
        ternvk_sequence_prefill(s->sequence, tokens, count) != TERNVK_OK ||
        ternvk_sequence_sample(s->sequence, &s->next) != TERNVK_OK)
      goto failed;
  }
  /* Steps: every unfinished sequence takes its sampled token, all in one forward pass. */
  for (;;) {
    active = 0;
    for (i = 0; i < n_prompts; ++i) {
      Stream* s = &streams[i];
      const char* piece;
      size_t length;
      if (s->done) continue;
      if (s->next == info.eos || s->next == info.eot) {
        s->done = 1;
        continue;
      }
      if (ternvk_detokenizer_feed(s->detokenizer, s->next, &piece, &length) != TERNVK_OK) goto failed;
      if (!append(s, piece, length)) goto done;
      if (++s->generated == n_predict) {
        s->done = 1;
        continue;
      }
      batch[active] = s->sequence;
      batch_tokens[active] = s->next;
      batch_index[active] = i;
      ++active;
    }
    if (active == 0) break;
    if (ternvk_decode(model, batch, batch_tokens, (size_t)active) != TERNVK_OK) goto failed;
    for (i = 0; i < active; ++i)
      if (ternvk_sequence_sample(streams[batch_index[i]].sequence, &streams[batch_index[i]].next) != TERNVK_OK)
        goto failed;
  }
  for (i = 0; i < n_prompts; ++i) {
    const char* tail;
    size_t length;
    if (ternvk_detokenizer_flush(streams[i].detokenizer, &tail, &length) != TERNVK_OK) goto failed;
    if (!append(&streams[i], tail, length)) goto done;
    printf("=== %d ===\n%s%s\n", i, argv[first + i], streams[i].text ? streams[i].text : "");
  }
  rc = 0;
  goto done;
failed:
  rc = fail("generating");
done:
  for (i = 0; streams && i < n_prompts; ++i) {
    ternvk_detokenizer_free(streams[i].detokenizer);
    ternvk_sequence_free(streams[i].sequence);
    free(streams[i].text);
  }
  free(streams);
  free(batch);
  free(batch_tokens);
  free(batch_index);
  ternvk_model_free(model);
  return rc;
}
