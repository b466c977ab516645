#version 450
// Second pass of split attention (flash-decoding): merges the per-chunk partials of attention_split
// for one (query head, token) per workgroup. Only the chunks that hold keys <= the token's position
// (which attention_split wrote) are read. Output fp32 row t at t*out_stride, head h at + h*HD.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint HD = 128;

layout(std430, set = 0, binding = 0) readonly buffer Pos { uint positions[]; };
layout(std430, set = 0, binding = 1) readonly buffer Part { float part[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Out { float outp[]; };

layout(push_constant) uniform Params {
  uint n_heads;
  uint chunk;
  uint n_chunks;
  uint capacity;
  uint out_stride;
  uint stats_offset;
} p;

void main() {
  const uint head = gl_WorkGroupID.x, t = gl_WorkGroupID.y;
  const uint pos = min(positions[t], p.capacity - 1);
  const uint live = min(p.n_chunks, pos / p.chunk + 1);
  const uint base = (t * p.n_heads + head) * p.n_chunks;
  float mx = part[p.stats_offset + base * 2];
  for (uint c = 1; c < live; ++c) mx = max(mx, part[p.stats_offset + (base + c) * 2]);
  float sum = 0.0;
  for (uint c = 0; c < live; ++c)
    sum += part[p.stats_offset + (base + c) * 2 + 1] * exp2(part[p.stats_offset + (base + c) * 2] - mx);
  const float inv = 1.0 / sum;
  for (uint d = gl_LocalInvocationID.x; d < HD; d += gl_WorkGroupSize.x) {
    float o = 0.0;
    for (uint c = 0; c < live; ++c) o += part[(base + c) * HD + d] * exp2(part[p.stats_offset + (base + c) * 2] - mx);
    outp[t * p.out_stride + head * HD + d] = o * inv;
  }
}
