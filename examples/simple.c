/* ternvk-simple: greedy generation from a prompt, streamed. Prints the prompt, then the
 * continuation, exactly as `ternvk run -p PROMPT -n N --temp 0` does.
 *
 *   ternvk-simple [-m MODEL] [-p PROMPT] [-n N]
 *
 * MODEL is a GGUF file or a Hugging Face folder; without -m, the model that ships with ternvk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ternvk.h>

static int32_t print_piece(void* user_data, int32_t token, const char* piece, size_t length) {
  (void)user_data;
  (void)token;
  fwrite(piece, 1, length, stdout);
  fflush(stdout);
  return 0; /* nonzero would stop the generation */
}

static int fail(const char* what) {
  fprintf(stderr, "ternvk-simple: %s: %s\n", what, ternvk_last_error());
  return 1;
}

int main(int argc, char** argv) {
  const char* model_path = NULL; /* NULL: the shipped model */
  const char* prompt = "ROMEO:\n";
  int n_predict = 128;
  ternvk_model* model = NULL;
  ternvk_sequence* sequence = NULL;
  int32_t* tokens = NULL;
  size_t count = 0;
  ternvk_sampling greedy;
  int rc = 1;
  int i;
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-m") == 0) model_path = argv[i + 1];
    else if (strcmp(argv[i], "-p") == 0) prompt = argv[i + 1];
    else if (strcmp(argv[i], "-n") == 0) n_predict = atoi(argv[i + 1]);
    else break;
  }
  if (i != argc || n_predict < 0 || prompt[0] == '\0') {
    fprintf(stderr, "usage: %s [-m MODEL] [-p PROMPT] [-n N]\n", argv[0]);
    return 2;
  }

  if (ternvk_model_load(model_path, NULL, &model) != TERNVK_OK) return fail("loading the model");
  /* Tokenize as `ternvk run` does (BOS first when the vocabulary has one): ask for the count, then fill. */
  if (ternvk_tokenize(model, prompt, strlen(prompt), TERNVK_TOKENIZE_ADD_BOS, NULL, 0, &count) !=
      TERNVK_ERROR_BUFFER_TOO_SMALL) {
    rc = fail("tokenizing the prompt");
    goto done;
  }
  tokens = malloc(count * sizeof *tokens);
  if (!tokens || ternvk_tokenize(model, prompt, strlen(prompt), TERNVK_TOKENIZE_ADD_BOS, tokens, count, &count) != TERNVK_OK) {
    rc = fail("tokenizing the prompt");
    goto done;
  }
  if (ternvk_sequence_create(model, &sequence) != TERNVK_OK) {
    rc = fail("creating a sequence");
    goto done;
  }
  greedy = ternvk_sampling_default();
  greedy.temperature = 0;
  printf("%s", prompt);
  fflush(stdout);
  if (ternvk_generate(sequence, tokens, count, n_predict, &greedy, print_piece, NULL, NULL) != TERNVK_OK) {
    printf("\n");
    rc = fail("generating");
    goto done;
  }
  printf("\n");
  rc = 0;
done:
  free(tokens);
  ternvk_sequence_free(sequence); /* a NULL handle only returns an error */
  ternvk_model_free(model);
  return rc;
}
