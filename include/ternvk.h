/* ternvk: BitNet b1.58 ternary LLMs on any Vulkan GPU. The C API of libternvk (C99 and C++).
 *
 * Conventions
 * - Every function that can fail returns a ternvk_status; TERNVK_OK (0) is success. On failure,
 *   ternvk_last_error() gives a message naming what to act on (file, tensor, device, expected vs
 *   found), and outputs are left unset. No call aborts the process on bad input: null handles or
 *   pointers, freed handles, out-of-range values and malformed files all return an error.
 * - Handles (ternvk_model, ternvk_sequence, ternvk_detokenizer) are opaque. A freed handle is
 *   recognised as such (TERNVK_ERROR_INVALID_HANDLE), never dereferenced.
 * - Strings are UTF-8; lengths are in bytes. Token ids are int32_t.
 * - Output strings go to caller buffers: the call writes at most `capacity` bytes including a
 *   terminating NUL, always sets `*length` to the full length (without the NUL), and returns
 *   TERNVK_ERROR_BUFFER_TOO_SMALL when it did not fit (call again with length + 1 bytes).
 *
 * Thread safety
 * - A model may be shared by any number of threads: its calls are serialized internally (one
 *   forward pass at a time), so threads working on different sequences of one model interleave.
 * - A sequence (and a detokenizer) is used by one thread at a time. A call on a sequence that is
 *   already inside another call (from another thread, or from its own ternvk_generate callback)
 *   fails with TERNVK_ERROR_BUSY instead of racing; the one exception is ternvk_sequence_cancel,
 *   which any thread may call at any time.
 * - ternvk_last_error() is per thread.
 * - ternvk_model_free may be called while sequences or detokenizers of the model are alive: they
 *   keep working, and the model's memory is released when the last of them is freed.
 */
#ifndef TERNVK_H
#define TERNVK_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define TERNVK_API
#else
#define TERNVK_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TERNVK_VERSION_MAJOR 0
#define TERNVK_VERSION_MINOR 1
#define TERNVK_VERSION_PATCH 0

typedef enum ternvk_status {
  TERNVK_OK = 0,
  TERNVK_ERROR_INVALID_ARGUMENT = 1,  /* a null pointer, a value out of range, an unknown enum */
  TERNVK_ERROR_INVALID_HANDLE = 2,    /* a null, freed or never-created handle */
  TERNVK_ERROR_BUSY = 3,              /* the sequence is inside another call (see Thread safety) */
  TERNVK_ERROR_BUFFER_TOO_SMALL = 4,  /* *length / *count says how much is needed */
  TERNVK_ERROR_NO_SEQUENCE_SLOT = 5,  /* every sequence slot of the model is in use */
  TERNVK_ERROR_CONTEXT_FULL = 6,      /* the tokens would not fit the sequence's context */
  TERNVK_ERROR_FAILED = 7,            /* the request failed: unreadable or malformed model, bad device, ... */
  TERNVK_ERROR_OUT_OF_MEMORY = 8,     /* device or host memory ran out */
  TERNVK_ERROR_DEVICE_LOST = 9,       /* the GPU was lost; the model cannot be used any more */
  TERNVK_ERROR_INTERNAL = 10          /* a bug in ternvk: please report the message */
} ternvk_status;

typedef struct ternvk_model ternvk_model;
typedef struct ternvk_sequence ternvk_sequence;
typedef struct ternvk_detokenizer ternvk_detokenizer;

/* ---- Version and errors ---- */

/* The library's version, "MAJOR.MINOR.PATCH" (it may be newer than the header's macros). */
TERNVK_API const char* ternvk_version(void);
/* The message of this thread's most recent call; "" when that call succeeded. */
TERNVK_API const char* ternvk_last_error(void);
/* A status's name ("TERNVK_ERROR_BUSY"); "unknown status" for values outside the enum. */
TERNVK_API const char* ternvk_status_name(ternvk_status status);

/* ---- Devices ---- */

typedef struct ternvk_device_info {
  int32_t index;               /* the index models take (ternvk_model_params.device) */
  char name[256];              /* "NVIDIA GeForce RTX 4090", "llvmpipe (LLVM 15.0.7, 256 bits)" */
  char type[32];               /* "discrete GPU", "integrated GPU", "virtual GPU", "CPU", "other" */
  char vendor[32];             /* "NVIDIA", "AMD", "Intel", "Mesa", ... */
  char driver[256];            /* driver name and version text */
  uint32_t vendor_id, device_id;
  uint64_t device_local_bytes; /* memory the GPU owns (0 on unified-memory devices' host heaps) */
  int32_t subgroup_size;
  int32_t fast_int8_dot;       /* 1: accelerated packed int8 dot products */
  int32_t is_default;          /* 1: the device chosen when none is asked for */
} ternvk_device_info;

/* Lists the Vulkan devices: writes up to `capacity` entries to `devices` (may be NULL when
 * capacity is 0) and sets *count to how many exist. TERNVK_ERROR_BUFFER_TOO_SMALL if they did not fit. */
TERNVK_API ternvk_status ternvk_device_list(ternvk_device_info* devices, size_t capacity, size_t* count);

/* ---- Models ---- */

typedef enum ternvk_head_precision {
  TERNVK_HEAD_F16 = 0,  /* the output head as the file's FP16 values */
  TERNVK_HEAD_INT8 = 1  /* int8 rows with one scale each: half the bytes (docs/performance.md) */
} ternvk_head_precision;

typedef enum ternvk_plan {
  TERNVK_PLAN_AUTO = 0, /* the decode plan family chosen from the device */
  TERNVK_PLAN_GPU = 1,  /* the GPU-shaped plan */
  TERNVK_PLAN_CPU = 2   /* the plan for CPU devices (lavapipe) */
} ternvk_plan;

typedef void (*ternvk_progress_callback)(void* user_data, int32_t done, int32_t total);

typedef struct ternvk_model_params {
  int32_t device;               /* device index; -1: TERNVK_DEVICE, else the most capable */
  const int32_t* devices;       /* several devices: the model runs as a pipeline of stages, one */
  size_t device_count;          /*   per entry (indices may repeat); overrides `device` when > 0 */
  const int32_t* split;         /* layers per device with `devices`; split_count 0: automatic */
  size_t split_count;
  int32_t context;              /* KV cache positions per sequence; 0: min(model maximum, 4096) */
  int32_t sequences;            /* sequences that can exist at once (KV cache slots), >= 1 */
  int32_t prefill_chunk;        /* prompt tokens per forward pass, 1..4096 */
  ternvk_head_precision head;
  ternvk_plan plan;
  ternvk_progress_callback progress; /* called while weights upload; may be NULL */
  void* progress_user_data;
} ternvk_model_params;

/* The defaults: the best device, context 0 (automatic), 1 sequence, chunks of 64, FP16 head, auto plan. */
TERNVK_API ternvk_model_params ternvk_model_default_params(void);

/* Loads a model: `path` is a GGUF file or a Hugging Face folder (config.json + safetensors); NULL
 * loads the model that ships with ternvk (TERNVK_MODEL overrides it). `params` may be NULL for the
 * defaults. On success *model is a new handle (free it with ternvk_model_free). */
TERNVK_API ternvk_status ternvk_model_load(const char* path, const ternvk_model_params* params, ternvk_model** model);
/* Releases the caller's handle; the memory goes once its sequences and detokenizers are freed too. */
TERNVK_API ternvk_status ternvk_model_free(ternvk_model* model);

/* What the engine decides on the device as it loads (docs/performance.md), each `auto` by default:
 * on GPUs measured while the model loads, as the CLI's --chain-layers and --matrix-splits. */
typedef enum ternvk_layer_chain {
  TERNVK_CHAIN_AUTO = 0,   /* GPUs: a trial keeps the chain where it gives the same bits and wins */
  TERNVK_CHAIN_OFF = 1,    /* a barrier between each of a token's dispatches */
  TERNVK_CHAIN_ON = 2,     /* no barriers, each dispatch waiting in its shader (refused where it cannot) */
  TERNVK_CHAIN_MEASURE = 3 /* the trial on any device */
} ternvk_layer_chain;

typedef enum ternvk_matrix_splits {
  TERNVK_SPLITS_AUTO = 0,   /* GPUs: a trial keeps the fastest of the argued split rule and its neighbours */
  TERNVK_SPLITS_RULE = 1,   /* the argued rule, no trial */
  TERNVK_SPLITS_MEASURE = 2 /* the trial wherever the fused layers fit their splits to the device */
} ternvk_matrix_splits;

/* Starts with its own size, so that later versions can add fields without breaking programs built
 * against this header: start from TERNVK_DEVICE_CHOICE_PARAMS_INIT (the size as *your* compiler sees
 * it, every choice auto) and change what you need. Fields are only ever added at the end, in 8-byte
 * units (no padding), each defaulting to 0. */
typedef struct ternvk_device_choice_params {
  size_t size; /* sizeof(ternvk_device_choice_params) as the caller was compiled */
  ternvk_layer_chain chain_layers;
  ternvk_matrix_splits matrix_splits;
} ternvk_device_choice_params;

#define TERNVK_DEVICE_CHOICE_PARAMS_INIT \
  { sizeof(ternvk_device_choice_params), TERNVK_CHAIN_AUTO, TERNVK_SPLITS_AUTO }

/* ternvk_model_load with the device choices made by the caller (`choices` NULL: all auto, the same
 * as ternvk_model_load). TERNVK_ERROR_INVALID_ARGUMENT: a `size` smaller than the first version's
 * struct (16 bytes on 64-bit systems) or over 4096, one larger than this library's with any byte past
 * the fields it knows set (a newer header's choice it cannot honour), a value outside its enum. A
 * choice the device cannot honour (TERNVK_CHAIN_ON where a stage cannot chain) fails the load with the
 * reason. ternvk_model_get_device_choices says what was chosen. */
TERNVK_API ternvk_status ternvk_model_load_with_choices(const char* path, const ternvk_model_params* params,
                                                        const ternvk_device_choice_params* choices,
                                                        ternvk_model** model);

typedef struct ternvk_model_info {
  const char* path;          /* the file or folder loaded */
  const char* architecture;  /* as the file names it ("bitnet-b1.58", "bitnet", ...) */
  const char* chat_format;   /* the chat template ternvk_chat_* apply ("bitnet-2b4t", "llama3", "plain", ...) */
  const char* device_name;   /* the (first stage's) device */
  const char* plan;          /* one line per stage: device, layers, weights and KV cache bytes */
  int32_t layers, hidden_size, heads, kv_heads, head_dim, ffn_size;
  int32_t vocab_size;        /* token ids are 0 .. vocab_size - 1 */
  int32_t max_context;       /* the model's maximum positions */
  int32_t context;           /* positions per sequence as loaded */
  int32_t sequences;         /* sequence slots */
  int32_t max_batch;         /* sequences one ternvk_decode can advance */
  int32_t stages;            /* devices the model runs on */
  int32_t bos, eos, eot;     /* special tokens; -1 when the vocabulary has none */
  uint64_t gpu_bytes;        /* device memory in use at most so far */
  uint64_t validation_errors;/* Vulkan validation errors so far (TERNVK_VALIDATION=1 turns the layer on) */
} ternvk_model_info;

/* Fills *info. Its strings stay valid until ternvk_model_free(model). */
TERNVK_API ternvk_status ternvk_model_get_info(const ternvk_model* model, ternvk_model_info* info);

/* What ternvk chose on the device for this model, for logs and bug reports: two lines, "layers chained
 * ..." and "matrix splits ...", each saying what runs and why (on GPUs both are measured while the
 * model loads; a chained wait that later times out turns chaining off, and the text then says so).
 * *text stays valid until the next call for this model or ternvk_model_free(model). */
TERNVK_API ternvk_status ternvk_model_get_device_choices(const ternvk_model* model, const char** text);

/* ---- Tokens and text ---- */

enum {
  TERNVK_TOKENIZE_ADD_BOS = 1,      /* prepend BOS when the vocabulary has one (what `ternvk run` does) */
  TERNVK_TOKENIZE_PARSE_SPECIAL = 2 /* read control-token spellings ("<|eot_id|>") in the text as
                                       control tokens; leave it off for untrusted text */
};

/* Encodes `length` bytes of UTF-8 `text` (`flags`: TERNVK_TOKENIZE_*). Writes up to `capacity`
 * ids and sets *count to the number of tokens; invalid UTF-8 is an error naming the byte offset. */
TERNVK_API ternvk_status ternvk_tokenize(const ternvk_model* model, const char* text, size_t length, uint32_t flags,
                                         int32_t* tokens, size_t capacity, size_t* count);
/* Decodes a whole token sequence to text (`render_special`: write control tokens as their spelling). */
TERNVK_API ternvk_status ternvk_detokenize(const ternvk_model* model, const int32_t* tokens, size_t count,
                                           int32_t render_special, char* text, size_t capacity, size_t* length);

/* A streaming detokenizer: feed generated tokens one at a time, get back only whole UTF-8
 * characters (a character split over several tokens comes out once complete). */
TERNVK_API ternvk_status ternvk_detokenizer_create(const ternvk_model* model, int32_t render_special,
                                                   ternvk_detokenizer** detokenizer);
/* The text that became complete with `token` (possibly empty). *piece stays valid until the next
 * call on this detokenizer; it is NUL-terminated. */
TERNVK_API ternvk_status ternvk_detokenizer_feed(ternvk_detokenizer* detokenizer, int32_t token, const char** piece,
                                                 size_t* length);
/* Ends the text: returns the held-back bytes (an incomplete character becomes U+FFFD) and resets
 * the detokenizer for a new text. */
TERNVK_API ternvk_status ternvk_detokenizer_flush(ternvk_detokenizer* detokenizer, const char** piece, size_t* length);
TERNVK_API ternvk_status ternvk_detokenizer_free(ternvk_detokenizer* detokenizer);

/* ---- Chat templates ---- */

typedef struct ternvk_chat_message {
  const char* role;     /* "system", "user" or "assistant" */
  const char* content;  /* UTF-8, NUL-terminated */
} ternvk_chat_message;

/* The model's chat prompt for `messages` as text, control tokens written out (for display and
 * logs). `add_generation_prompt`: end with the assistant's cue.
 * In chat formats whose turn markers are plain text ("plain": a line "Assistant: ..."; "llama2":
 * "[INST]", "[/INST]", "<<SYS>>"), a message containing one would open a turn of its own: both
 * functions refuse it with TERNVK_ERROR_INVALID_ARGUMENT, the message naming the marker and the
 * message ("messages[1].content contains '[/INST]' ..."). */
TERNVK_API ternvk_status ternvk_chat_apply(const ternvk_model* model, const ternvk_chat_message* messages, size_t count,
                                           int32_t add_generation_prompt, char* text, size_t capacity, size_t* length);
/* The same prompt as token ids, ready to feed: control tokens become their ids and message text is
 * never read for control-token spellings, so a message cannot forge a turn. */
TERNVK_API ternvk_status ternvk_chat_tokenize(const ternvk_model* model, const ternvk_chat_message* messages,
                                              size_t count, int32_t add_generation_prompt, int32_t* tokens,
                                              size_t capacity, size_t* token_count);

/* ---- Sampling ---- */

typedef struct ternvk_sampling {
  float temperature;        /* <= 0: greedy (the highest logit, lowest id on ties) */
  int32_t top_k;            /* <= 0: every token */
  float top_p;              /* (0, 1]; 1: off */
  float min_p;              /* [0, 1); 0: off */
  float repeat_penalty;     /* > 0; 1: off */
  int32_t repeat_last_n;    /* tokens the penalties look back at; -1: all */
  float frequency_penalty;
  float presence_penalty;
  uint64_t seed;
} ternvk_sampling;

/* The CLI's defaults (`ternvk run`): temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties. */
TERNVK_API ternvk_sampling ternvk_sampling_default(void);

/* ---- Sequences ---- */

/* Starts an empty sequence in a free slot of the model (TERNVK_ERROR_NO_SEQUENCE_SLOT when all
 * ternvk_model_params.sequences slots are taken). It samples with ternvk_sampling_default(). */
TERNVK_API ternvk_status ternvk_sequence_create(ternvk_model* model, ternvk_sequence** sequence);
/* Frees the sequence and its slot (TERNVK_ERROR_BUSY while another call is using it). */
TERNVK_API ternvk_status ternvk_sequence_free(ternvk_sequence* sequence);
/* Sets how ternvk_sequence_sample picks tokens and reseeds (NULL: the defaults). Checks the values. */
TERNVK_API ternvk_status ternvk_sequence_set_sampling(ternvk_sequence* sequence, const ternvk_sampling* sampling);
/* Keep the full row of logits of each later step (for ternvk_sequence_logits); off by default,
 * when a step reads back only what sampling needs. */
TERNVK_API ternvk_status ternvk_sequence_keep_logits(ternvk_sequence* sequence, int32_t keep);
/* Appends `count` tokens (> 0) to the sequence in prefill chunks; then a next token can be sampled. */
TERNVK_API ternvk_status ternvk_sequence_prefill(ternvk_sequence* sequence, const int32_t* tokens, size_t count);
/* One decode step for several sequences of `model` in one forward pass: tokens[i] is appended to
 * sequences[i] (distinct sequences, at most max_batch). A sequence's results do not depend on the
 * others in the step. */
TERNVK_API ternvk_status ternvk_decode(ternvk_model* model, ternvk_sequence* const* sequences, const int32_t* tokens,
                                       size_t count);
/* Picks the next token after the last step (prefill or decode) with the sequence's sampling; does
 * not append it. Each call draws anew. */
TERNVK_API ternvk_status ternvk_sequence_sample(ternvk_sequence* sequence, int32_t* token);
/* The last step's logits (vocab_size floats), when ternvk_sequence_keep_logits was on for it.
 * *logits stays valid until the next call on this sequence. */
TERNVK_API ternvk_status ternvk_sequence_logits(ternvk_sequence* sequence, const float** logits, size_t* count);
/* The number of tokens in the sequence. */
TERNVK_API ternvk_status ternvk_sequence_length(const ternvk_sequence* sequence, int32_t* length);
/* Copies the sequence's tokens (up to `capacity`) and sets *count to its length. */
TERNVK_API ternvk_status ternvk_sequence_tokens(const ternvk_sequence* sequence, int32_t* tokens, size_t capacity,
                                                size_t* count);
/* Keeps the first `length` tokens (0 <= length <= current length); the rest is forgotten. */
TERNVK_API ternvk_status ternvk_sequence_truncate(ternvk_sequence* sequence, int32_t length);
/* Empties the sequence (ternvk_sequence_truncate to 0). */
TERNVK_API ternvk_status ternvk_sequence_clear(ternvk_sequence* sequence);
/* Asks a ternvk_generate running on the sequence to stop after the current token. Any thread, any
 * time; a generate started later is not affected. */
TERNVK_API ternvk_status ternvk_sequence_cancel(ternvk_sequence* sequence);

/* ---- Streaming generation ---- */

typedef enum ternvk_stop_reason {
  TERNVK_STOP_LENGTH = 0,    /* max_tokens generated */
  TERNVK_STOP_EOS = 1,       /* the model ended its text (EOS/EOT, not passed to the callback) */
  TERNVK_STOP_CONTEXT = 2,   /* the sequence filled its context */
  TERNVK_STOP_CALLBACK = 3,  /* the callback returned nonzero */
  TERNVK_STOP_CANCELLED = 4  /* ternvk_sequence_cancel */
} ternvk_stop_reason;

/* Called with each generated token and the text it completes (`piece`, possibly empty, valid only
 * during the call). Once generation ends, called one last time with token -1 when held-back bytes
 * remain. Return 0 to go on, nonzero to stop. It must not call into the same sequence (BUSY). */
typedef int32_t (*ternvk_piece_callback)(void* user_data, int32_t token, const char* piece, size_t length);

typedef struct ternvk_generation {
  int32_t prompt_tokens;
  int32_t generated_tokens;
  ternvk_stop_reason stop_reason;
  double prompt_seconds;
  double decode_seconds;
} ternvk_generation;

/* Appends `prompt` (count > 0 tokens) to the sequence and generates up to `max_tokens` tokens,
 * sampling with `sampling` (which then becomes the sequence's, reseeded) or, when NULL, with the
 * sequence's own. Same tokens and text as `ternvk run` with the same settings. `callback` may be
 * NULL; `result` may be NULL. Generated tokens stay in the sequence. */
TERNVK_API ternvk_status ternvk_generate(ternvk_sequence* sequence, const int32_t* prompt, size_t count,
                                         int32_t max_tokens, const ternvk_sampling* sampling,
                                         ternvk_piece_callback callback, void* user_data, ternvk_generation* result);

#ifdef __cplusplus
}
#endif

#endif /* TERNVK_H */
