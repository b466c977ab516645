// The float step shared by ternary_matmul.comp and ternary_gemm.comp, which must round alike (the
// GEMM's results are the GEMV's, bit for bit): (wq * scale) * s, `precise` so that no driver fuses
// it with the accumulate epilogue's add into an fma in one kernel and not the other. A function, so
// that `precise` reaches only these multiplies, not the integer sums before them.
#ifndef TERNARY_EPILOGUE_GLSL
#define TERNARY_EPILOGUE_GLSL
float scaled_sum(int wq, int scale_bits, int s_bits) {
  precise const float v = float(wq) * intBitsToFloat(scale_bits) * intBitsToFloat(s_bits);
  return v;
}
#endif
