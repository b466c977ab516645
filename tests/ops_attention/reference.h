// Naive CPU references (fp32 data, plain loops, double accumulation) for rope, the KV store and
// attention, following docs/architecture.md.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "runtime/core/half.h"
#include "runtime/ops/attention.h"

namespace ternvk::test::ref {

// RoPE in place on q and k heads of activation rows (QkvView columns). freq_i = theta^(-2i/hd)
// in fp32, angle = float(pos) * freq_i in fp32, cos/sin in double.
inline void rope(std::vector<float>& act, const ops::QkvView& v, const ops::HeadLayout& h,
                 const std::vector<uint32_t>& pos, float theta, ops::RopeForm form, bool q = true, bool k = true) {
  const uint32_t hd = h.head_dim;
  auto rotate_head = [&](size_t base, uint32_t p) {
    for (uint32_t i = 0; i < hd / 2; ++i) {
      const float freq = static_cast<float>(std::pow(double(theta), -2.0 * i / hd));
      const float angle = static_cast<float>(p) * freq;
      const double c = std::cos(double(angle)), s = std::sin(double(angle));
      const size_t a = base + (form == ops::RopeForm::NeoX ? i : 2 * i);
      const size_t b = base + (form == ops::RopeForm::NeoX ? i + hd / 2 : 2 * i + 1);
      const double x = act[a], y = act[b];
      act[a] = static_cast<float>(x * c - y * s);
      act[b] = static_cast<float>(x * s + y * c);
    }
  };
  for (uint32_t t = 0; t < v.tokens; ++t) {
    const size_t row = size_t(t) * v.row_stride;
    if (q)
      for (uint32_t hh = 0; hh < h.n_heads; ++hh) rotate_head(row + v.q_col + hh * hd, pos[t]);
    if (k)
      for (uint32_t hh = 0; hh < h.n_kv_heads; ++hh) rotate_head(row + v.k_col + hh * hd, pos[t]);
  }
}

// The largest error a conforming Vulkan device may make in one rotated element whose pair holds a
// and b at position `pos` (freq <= 1, so the angle is at most pos):
//  - sin and cos: absolute error 2^-11 on [-pi, pi] (the Vulkan spec's precision table; shaders
//    reduce the angle to that range first);
//  - the frequency theta_scale^i by pow: the error of exp2(i * log2(theta_scale)), (3 + 2 |i log2 x|)
//    ulp with |i log2 x| <= log2(theta) <= 20 for the thetas used: 43 ulp, ~5.2e-6 relative, which
//    moves the angle by at most pos * 5.2e-6 (sin and cos are 1-Lipschitz), plus the fp32 product;
//  - the rotation's two products and their sum: 2^-22 of |a| + |b|.
// Devices differ well inside this (lavapipe's libm is exact to an ulp, NVIDIA's sin/cos are
// approximations): the bound is the spec's, not one device's.
inline double rope_error_bound(double a, double b, uint32_t pos) {
  return (std::fabs(a) + std::fabs(b)) * (std::ldexp(1.0, -11) + pos * 5.3e-6 + std::ldexp(1.0, -22));
}

// Half an fp16 ulp at |v| (the error of rounding v to fp16; subnormals below 2^-14).
inline double half_rounding(double v) {
  const double a = std::max(std::fabs(v), std::ldexp(1.0, -14));
  return std::ldexp(1.0, std::ilogb(a) - 11);
}

// The worst ratio of |got - want| to the allowed error over an fp16 K cache whose rows hold rotated
// heads of `head_dim` (RoPE `form`) at positions below `max_pos`: each element may differ from the
// reference by rope_error_bound of its pair (a rotation keeps the pair's norm, so the reference
// pair's values bound |a| + |b| by sqrt(2) times their norm) plus the fp16 rounding of both sides.
inline double k_cache_error_ratio(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, uint32_t head_dim,
                                  ops::RopeForm form, uint32_t max_pos) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] == want[i]) continue;  // untouched rows (and NaN sentinels) compare bit for bit
    const size_t e = i % head_dim, base = i - e;
    const size_t partner =
        base + (form == ops::RopeForm::NeoX ? (e < head_dim / 2 ? e + head_dim / 2 : e - head_dim / 2) : (e ^ 1u));
    const double w = half_to_float(want[i]), p = half_to_float(want[partner]);
    const double norm = std::sqrt(w * w + p * p) + 2 * half_rounding(std::max(std::fabs(w), std::fabs(p)));
    const double bound = rope_error_bound(norm, norm, max_pos) / std::sqrt(2.0);
    const double allowed = bound + 2 * half_rounding(std::fabs(w) + bound);
    const double d = std::fabs(double(half_to_float(got[i])) - w);
    if (!(d <= allowed * 1e6)) return 1e30;  // NaN, or a different value altogether
    worst = std::max(worst, d / allowed);
  }
  return worst;
}

// Sequence slots (kv_cache.h): token t is in slot slots[t] (0 when `slots` is empty), whose rows
// start at slot * capacity. capacity 0: one region, no bound (the caller keeps positions in range).
struct Slots {
  std::vector<uint32_t> slot;  // per token; empty = all slot 0
  uint32_t capacity = 0;
  uint32_t sequences = 1;
  uint32_t of(uint32_t t) const { return slot.empty() ? 0 : slot[t]; }
};

// The cache as halves [sequences][capacity][KVH][hd]: stores k and v of each token at row
// slot * capacity + position; tokens beyond the capacity or the slots are skipped.
inline void kv_store(const std::vector<float>& act, const ops::QkvView& v, const ops::HeadLayout& h,
                     const std::vector<uint32_t>& pos, std::vector<uint16_t>& kc, std::vector<uint16_t>& vc,
                     const Slots& slots = {}) {
  const size_t row_elems = size_t(h.n_kv_heads) * h.head_dim;
  for (uint32_t t = 0; t < v.tokens; ++t) {
    if (slots.capacity && (pos[t] >= slots.capacity || slots.of(t) >= slots.sequences)) continue;
    const size_t row = size_t(slots.of(t)) * slots.capacity + pos[t];
    for (size_t e = 0; e < row_elems; ++e) {
      kc[row * row_elems + e] = float_to_half(act[size_t(t) * v.row_stride + v.k_col + e]);
      vc[row * row_elems + e] = float_to_half(act[size_t(t) * v.row_stride + v.v_col + e]);
    }
  }
}

// out [T][H*hd]: token t attends to cache rows base + 0..pos[t] of its slot (base = slot *
// capacity); K/V from the fp16 cache.
inline std::vector<float> attention(const std::vector<float>& act, const ops::QkvView& v, const ops::HeadLayout& h,
                                    const std::vector<uint32_t>& pos, const std::vector<uint16_t>& kc_all,
                                    const std::vector<uint16_t>& vc_all, float scale, const Slots& slots = {}) {
  const uint32_t hd = h.head_dim, ratio = h.n_heads / h.n_kv_heads;
  std::vector<float> out(size_t(v.tokens) * h.n_heads * hd);
  std::vector<double> s;
  for (uint32_t t = 0; t < v.tokens; ++t)
    for (uint32_t hh = 0; hh < h.n_heads; ++hh) {
      const uint32_t g = hh / ratio, len = pos[t] + 1;
      const size_t base = size_t(slots.of(t)) * slots.capacity * h.n_kv_heads * hd;
      const uint16_t* kc = kc_all.data() + base;
      const uint16_t* vc = vc_all.data() + base;
      const float* q = &act[size_t(t) * v.row_stride + v.q_col + hh * hd];
      s.assign(len, 0.0);
      double mx = -1e300;
      for (uint32_t j = 0; j < len; ++j) {
        double d = 0;
        for (uint32_t i = 0; i < hd; ++i) d += double(q[i]) * half_to_float(kc[(size_t(j) * h.n_kv_heads + g) * hd + i]);
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (uint32_t i = 0; i < hd; ++i) {
        double o = 0;
        for (uint32_t j = 0; j < len; ++j) o += s[j] * half_to_float(vc[(size_t(j) * h.n_kv_heads + g) * hd + i]);
        out[(size_t(t) * h.n_heads + hh) * hd + i] = static_cast<float>(o / sum);
      }
    }
  return out;
}

// A bound on |gpu - attention()| per output element for a kernel that reads the same fp16 K/V and
// computes in fp32 (unit roundoff u = 2^-24; first order in u, doubled; the double reference's own
// rounding is negligible). With c = scale * log2(e) (scores in log2 units), S = max_j c*sum_i
// |q_i k_ji| over the token's live keys, L live keys, V = max |v| over them, o the exact output:
//  - a score c * sum_i q_i k_ji summed in fp32 in any order (and q scaled by c in fp32):
//      |ds| <= (hd + 2) u S;
//  - exp2 of x = s_j - max (|x| <= 2S) within Vulkan's 3 + 2|x| ulp: relative (3 + 4S) u;
//    so a weight p_j = exp2(s_j - max) is off by a relative e_w <= ln2 * 2|ds| + (3 + 4S) u;
//  - sum p_j and sum p_j v_j over L keys in fp32, with the online-softmax rescales and the merges of
//    lanes, groups and splits (a few dozen roundings at most): relative (L + 32) u of sum p_j |v_j|;
//  - o = sum p v / sum p then moves by at most (V + |o|) (e_w + (L + 32) u).
// The bound returned is twice that.
inline std::vector<double> attention_bound(const std::vector<float>& act, const ops::QkvView& v,
                                           const ops::HeadLayout& h, const std::vector<uint32_t>& pos,
                                           const std::vector<uint16_t>& kc_all, const std::vector<uint16_t>& vc_all,
                                           float scale, const std::vector<float>& exact, const Slots& slots = {}) {
  const double u = std::ldexp(1.0, -24), c = double(scale) * 1.4426950408889634;
  const uint32_t hd = h.head_dim, ratio = h.n_heads / h.n_kv_heads;
  std::vector<double> bound(exact.size());
  for (uint32_t t = 0; t < v.tokens; ++t)
    for (uint32_t hh = 0; hh < h.n_heads; ++hh) {
      const uint32_t g = hh / ratio, len = pos[t] + 1;
      const size_t base = size_t(slots.of(t)) * slots.capacity * h.n_kv_heads * hd;
      const float* q = &act[size_t(t) * v.row_stride + v.q_col + hh * hd];
      double s_max = 0, v_max = 0;
      for (uint32_t j = 0; j < len; ++j) {
        const size_t row = base + (size_t(j) * h.n_kv_heads + g) * hd;
        double a = 0;
        for (uint32_t i = 0; i < hd; ++i) {
          a += std::fabs(double(q[i]) * half_to_float(kc_all[row + i]));
          v_max = std::max(v_max, double(std::fabs(half_to_float(vc_all[row + i]))));
        }
        s_max = std::max(s_max, c * a);
      }
      const double ds = (hd + 2) * u * s_max;
      const double e_w = std::log(2.0) * 2 * ds + (3 + 4 * s_max) * u;
      for (uint32_t i = 0; i < hd; ++i) {
        const size_t e = (size_t(t) * h.n_heads + hh) * hd + i;
        bound[e] = 2 * (v_max + std::fabs(exact[e])) * (e_w + (len + 32) * u);
      }
    }
  return bound;
}

}  // namespace ternvk::test::ref
