#version 450
// Embedding lookup: out[t, :] = table[ids[t], :] as fp32, from one row segment of the table
// (tables larger than maxStorageBufferRange are split by rows; the host dispatches once per
// segment). Rows of ids outside this segment are left alone, except that the dispatch with
// zero_invalid set writes zeros for ids >= total_rows: an out-of-range id never reads out of
// bounds (the host should still validate ids before upload).
// TABLE_F16=1: fp16 rows as uint words (element 2i in the low half of word i), row_stride words a
// row (round_up(cols, 8) / 2 for the architecture.md layout). TABLE_I8=1: int8 rows as uint words
// (element 4i in the low byte of word i; round_up(cols, 16) / 4 words a row, the int8 head's
// layout) times a per-row scale. Otherwise fp32 rows, row_stride floats.
// Bindings: 0 ids uint [tokens]; 1 table segment [segment_rows, row_stride]; 2 out fp32 [tokens, cols];
// with TABLE_I8, 3 row scales fp32 [total_rows].
// Dispatch: (ceil(items / WG), tokens), items = ceil(cols / 2) for fp16, ceil(cols / 4) for int8
// and cols for fp32.
layout(local_size_x_id = 0) in;

#ifndef TABLE_I8
#define TABLE_I8 0
#endif
layout(std430, set = 0, binding = 0) readonly buffer Ids { uint ids[]; };
#if TABLE_F16 || TABLE_I8
layout(std430, set = 0, binding = 1) readonly buffer Table { uint table[]; };
#else
layout(std430, set = 0, binding = 1) readonly buffer Table { float table[]; };
#endif
layout(std430, set = 0, binding = 2) writeonly buffer Out { float out_rows[]; };
#if TABLE_I8
layout(std430, set = 0, binding = 3) readonly buffer Scales { float row_scale[]; };
#endif
layout(push_constant) uniform Params {
  uint cols;
  uint row_stride;
  uint first_row;     // table row held by this segment's row 0
  uint segment_rows;
  uint total_rows;    // vocabulary size
  uint zero_invalid;  // nonzero: write zeros for ids >= total_rows
} p;

void main() {
  const uint t = gl_GlobalInvocationID.y;
  const uint item = gl_GlobalInvocationID.x;
#if TABLE_F16
  const uint c = 2 * item;
#elif TABLE_I8
  const uint c = 4 * item;
#else
  const uint c = item;
#endif
  if (c >= p.cols) return;
  const uint id = ids[t];
  const uint local_row = id - p.first_row;  // wraps to a huge value when id < first_row
  const uint dst = t * p.cols + c;
#if TABLE_F16
  vec2 v;
  if (local_row < p.segment_rows) v = unpackHalf2x16(table[local_row * p.row_stride + item]);
  else if (p.zero_invalid != 0 && id >= p.total_rows) v = vec2(0.0);
  else return;
  out_rows[dst] = v.x;
  if (c + 1 < p.cols) out_rows[dst + 1] = v.y;
#elif TABLE_I8
  vec4 v;
  if (local_row < p.segment_rows) {
    const int word = int(table[local_row * p.row_stride + item]);
    v = vec4(float((word << 24) >> 24), float((word << 16) >> 24), float((word << 8) >> 24), float(word >> 24)) *
        row_scale[id];
  } else if (p.zero_invalid != 0 && id >= p.total_rows) {
    v = vec4(0.0);
  } else {
    return;
  }
  for (uint i = 0; i < 4 && c + i < p.cols; ++i) out_rows[dst + i] = v[i];
#else
  float v;
  if (local_row < p.segment_rows) v = table[local_row * p.row_stride + item];
  else if (p.zero_invalid != 0 && id >= p.total_rows) v = 0.0;
  else return;
  out_rows[dst] = v;
#endif
}
