// The fp16 KV cache of one layer and the ops that fill it.
//
// Layout (docs/architecture.md): K and V each fp16 [capacity][n_kv_heads][head_dim] as uint words
// (element 2i in the low half of word i). A token at position p lands in row p. One sequence per
// cache region: for several sequences (batched decode) give each its own region (the K/V ranges
// of the sequence's slot) -- the ops only see the ranges they are given.
#pragma once
#include <cstdint>

#include "runtime/device/memory.h"
#include "runtime/device/recording.h"
#include "runtime/ops/rope.h"

namespace ternvk::ops {

struct KvCacheLayer {
  BufferRange k;
  BufferRange v;
  uint32_t capacity = 0;  // rows (positions) the ranges hold
};

// Bytes of one of K or V for `capacity` positions.
uint64_t kv_cache_bytes(uint32_t capacity, uint32_t n_kv_heads, uint32_t head_dim);

// Copies the k and v heads of T tokens into the cache as fp16 (round to nearest even on lavapipe;
// packHalf2x16's rounding is the driver's) at row positions[t]. Tokens with positions >= capacity
// are skipped (the engine must never produce them). One dispatch.
void record_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                     const KvCacheLayer& cache);

// Fused RoPE + KV store, one dispatch: rotates q and k in place in the activations (as record_rope)
// and stores the rotated k and the v heads in the cache (as record_kv_store). What the engine uses.
void record_rope_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                          const RopeParams& rope, const KvCacheLayer& cache);

}  // namespace ternvk::ops
