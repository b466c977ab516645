#version 450
// Fills a uint buffer with a value: the smallest shader, used by the device self-check and tests.
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) writeonly buffer Out { uint data[]; };
layout(push_constant) uniform Params { uint count; uint value; } p;
void main() {
  uint i = gl_GlobalInvocationID.x;
  if (i < p.count) data[i] = p.value + i;
}
