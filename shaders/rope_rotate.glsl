// The rotation of one RoPE pair, shared by rope.comp and the fused qkv epilogue of
// fused_linear.comp so that both write the same bits: frequency theta_scale^freq_index, angle
// float(pos) * frequency in fp32, Cody-Waite reduced to [-pi, pi] (sin/cos are only accurate there
// on many GPUs), then the 2x2 rotation.
#ifndef ROPE_ROTATE_GLSL
#define ROPE_ROTATE_GLSL

vec2 rope_rotate(vec2 xy, float pos, uint freq_index, float theta_scale) {
  precise float angle = pos * pow(theta_scale, float(freq_index));
  precise float k = round(angle * 0.15915494309189535);
  precise float r = (angle - k * 6.28125) - k * 0.0019353071795864769;
  float c = cos(r), s = sin(r);
  return vec2(xy.x * c - xy.y * s, xy.x * s + xy.y * c);
}

#endif
