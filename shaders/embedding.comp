#version 450
// Embedding lookup: out[t, :] = table[ids[t], :] as fp32, from one row segment of the table
// (tables larger than maxStorageBufferRange are split by rows; the host dispatches once per
// segment). Rows of ids outside this segment are left alone, except that the dispatch with
// zero_invalid set writes zeros for ids >= total_rows: an out-of-range id never reads out of
// bounds (the host should still validate ids before upload).
// TABLE_F16=1: fp16 rows as uint words (element 2i in the low half of word i), row_stride words a
// row (round_up(cols, 8) / 2 for the architecture.md layout). TABLE_F16=0: fp32 rows, row_stride floats.
// Bindings: 0 ids uint [tokens]; 1 table segment [segment_rows, row_stride]; 2 out fp32 [tokens, cols].
// Dispatch: (ceil(items / WG), tokens), items = ceil(cols / 2) for fp16 and cols for fp32.
layout(local_size_x_id = 0) in;

layout(std430, set = 0, binding = 0) readonly buffer Ids { uint ids[]; };
#if TABLE_F16
layout(std430, set = 0, binding = 1) readonly buffer Table { uint table[]; };
#else
layout(std430, set = 0, binding = 1) readonly buffer Table { float table[]; };
#endif
layout(std430, set = 0, binding = 2) writeonly buffer Out { float out_rows[]; };
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
#else
  float v;
  if (local_row < p.segment_rows) v = table[local_row * p.row_stride + item];
  else if (p.zero_invalid != 0 && id >= p.total_rows) v = 0.0;
  else return;
  out_rows[dst] = v;
#endif
}
