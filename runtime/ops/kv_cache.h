// The fp16 KV cache of one layer and the ops that fill it.
//
// Layout (docs/architecture.md): K and V each fp16 [sequences][capacity][n_kv_heads][head_dim] as
// uint words (element 2i in the low half of word i): `sequences` regions (slots) of `capacity` rows,
// back to back, one per sequence of a batch. A token at position p of slot s lands in row
// s * capacity + p and attends to rows s * capacity + 0 .. s * capacity + p (its own sequence only).
//
// Slots: an optional uint32 [T] buffer, the slot of each token (written by the host before each
// replay, like the positions). Without one (an empty BufferRange) every token is in slot 0: the
// shaders are then specialized without the slot load (spec constant), so single-sequence recordings
// cost exactly what they did before slots existed. A slot >= sequences is never stored (the store
// skips it, like a position >= capacity) and attention clamps it to the last slot: never out of
// bounds, but the engine must not produce either.
#pragma once
#include <cstdint>

#include "runtime/device/memory.h"
#include "runtime/device/recording.h"
#include "runtime/ops/rope.h"

namespace ternvk::ops {

struct KvCacheLayer {
  BufferRange k;
  BufferRange v;
  uint32_t capacity = 0;   // rows (positions) per sequence
  uint32_t sequences = 1;  // regions of `capacity` rows, one per sequence slot, back to back
};

// Bytes of one of K or V for `capacity` positions (of one sequence; times `sequences` for all).
uint64_t kv_cache_bytes(uint32_t capacity, uint32_t n_kv_heads, uint32_t head_dim);

// Copies the k and v heads of T tokens into the cache as fp16 (round to nearest even on lavapipe;
// packHalf2x16's rounding is the driver's) at row slots[t] * capacity + positions[t]. Tokens with
// positions >= capacity or slots >= sequences are skipped (the engine must never produce them).
// `slots`: uint32 [T] or empty (all slot 0). One dispatch.
void record_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                     const KvCacheLayer& cache, BufferRange slots = {});

// Fused RoPE + KV store, one dispatch: rotates q and k in place in the activations (as record_rope)
// and stores the rotated k and the v heads in the cache (as record_kv_store). What the engine uses.
void record_rope_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                          const RopeParams& rope, const KvCacheLayer& cache, BufferRange slots = {});

namespace detail {
// Shared with attention: sequences >= 1, capacity * sequences rows fit the K/V ranges (ranges of
// size 0 are taken as large enough), the slots range (when given) holds `tokens` uint32.
void check_cache(const KvCacheLayer& cache, const HeadLayout& heads, uint32_t tokens, BufferRange slots,
                 const char* op);
}  // namespace detail

}  // namespace ternvk::ops
