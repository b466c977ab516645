#version 450
// Copies uvec4 texels read through a uniform texel buffer into a storage buffer: exercises the
// texel-buffer path of the device layer (the fast read path on CPU devices such as lavapipe).
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) uniform usamplerBuffer src;
layout(std430, set = 0, binding = 1) writeonly buffer Dst { uvec4 dst[]; };
layout(push_constant) uniform Params { uint count; } p;
void main() {
  uint i = gl_GlobalInvocationID.x;
  if (i < p.count) dst[i] = texelFetch(src, int(i));
}
