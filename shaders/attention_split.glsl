// One split of the GPU decode attention: the online softmax of the ATT_R q heads of one kv head over
// a range of keys, by the whole workgroup. attention_flash_decode.comp runs it once per split, and
// fused_linear.comp's qkv (ATTEND) runs it as the last workgroup to finish a kv head's rows: the same
// code with the same constants, so both give the same bits for a context of one split.
//
// Lanes go over keys: a key group of ATT_LPK lanes (a power of two within one subgroup) takes one key
// at a time, lane j reading the 16-byte column groups j, j + ATT_LPK, ... of the K and V rows (the
// group reads a row's consecutive bytes, each row once for all ATT_R heads). Each group holds q for
// its columns in registers, takes ATT_KB keys per step (keys of step s are kb + s*G*KB ..), sums the
// partial dots over its lanes with shuffle-xor butterflies and keeps its own online softmax; then the
// groups merge within a subgroup by shuffle-xor and each subgroup leaves its state in shared memory.
// Correct for any subgroup size that ATT_LPK divides, with the workgroup made of full subgroups
// (lanes find their group through gl_SubgroupID and gl_SubgroupInvocationID).
//
// The includer defines before including: the constants ATT_WG (lanes of the workgroup), ATT_HD,
// ATT_R, ATT_KB, ATT_LPK and ATT_MAXSG (subgroups per workgroup at the smallest subgroup size), and
// the loads vec4 att_q4(uint o) (q floats o .. o + 3), uvec4 att_k(uint i) and uvec4 att_v(uint i)
// (16-byte words of the K and V caches).

const uint ATT_NCG = ATT_HD / 8;                            // 16-byte (8-half) column groups of a head
const uint ATT_CPL = (ATT_NCG + ATT_LPK - 1) / ATT_LPK;     // column groups per lane
const uint ATT_G = ATT_WG / ATT_LPK;                        // key groups per workgroup
const uint ATT_E4 = ATT_R * ATT_HD / 4;                     // vec4s of one output: ATT_R heads, contiguous
const float ATT_NEG_BIG = -1e30;  // "no key yet": exp2(ATT_NEG_BIG - s) == 0 for any score s

shared vec4 sh_acc[ATT_MAXSG * ATT_E4];  // per subgroup: unnormalized output of the ATT_R heads
shared float sh_m[ATT_MAXSG * ATT_R];
shared float sh_l[ATT_MAXSG * ATT_R];

// Online-softmax states (m, l, o) and (m2, l2, o2) of disjoint keys -> one state, with weights
// exp2(m - max) (0 for a state without keys, whose m is ATT_NEG_BIG).
void merge_weights(float m, float m2, out float w, out float w2, out float mx) {
  mx = max(m, m2);
  w = exp2(m - mx);
  w2 = exp2(m2 - mx);
}

// Keys kb .. ke - 1 (ke > kb) of kv head g: q head h at floats q_base + h * ATT_HD, key k's rows at
// 16-byte words ((base + k) * kvh + g) * ATT_NCG of the caches. Leaves each subgroup's state in sh_*;
// ends with a barrier. Reached by the whole workgroup.
void att_split(uint q_base, uint g, uint kb, uint ke, uint base, uint kvh, float scale_log2e) {
  const uint STEP = ATT_G * ATT_KB;
  const uint sgl = gl_SubgroupInvocationID;
  const uint grp = (gl_SubgroupID * gl_SubgroupSize + sgl) / ATT_LPK;
  const uint j = sgl % ATT_LPK;

  // q of the heads for this lane's column groups (zeros past the head: their clamped loads add 0).
  vec4 q[ATT_R * ATT_CPL * 2];
  uint col[ATT_CPL];
  [[unroll]] for (uint i = 0; i < ATT_CPL; ++i) {
    const uint cg = j + i * ATT_LPK;
    col[i] = min(cg, ATT_NCG - 1);
    const float f = cg < ATT_NCG ? scale_log2e : 0.0;
    [[unroll]] for (uint h = 0; h < ATT_R; ++h) {
      const uint o = q_base + h * ATT_HD + col[i] * 8;
      q[(h * ATT_CPL + i) * 2] = att_q4(o) * f;
      q[(h * ATT_CPL + i) * 2 + 1] = att_q4(o + 4) * f;
    }
  }

  float m[ATT_R], l[ATT_R];
  float acc[ATT_R * ATT_CPL * 8];
  [[unroll]] for (uint h = 0; h < ATT_R; ++h) {
    m[h] = ATT_NEG_BIG;
    l[h] = 0.0;
  }
  [[unroll]] for (uint x = 0; x < ATT_R * ATT_CPL * 8; ++x) acc[x] = 0.0;

  const uint steps = (ke - kb + STEP - 1) / STEP;
  for (uint s = 0; s < steps; ++s) {  // uniform trip count: every lane takes part in the shuffles
    const uint k0 = kb + (s * ATT_G + grp) * ATT_KB;
    // The block's K and V words first: all its loads in flight at once (keys past ke re-read the
    // split's last key and weigh 0).
    uvec4 kw[ATT_KB * ATT_CPL], vw[ATT_KB * ATT_CPL];
    [[unroll]] for (uint b = 0; b < ATT_KB; ++b) {
      const uint row = ((base + min(k0 + b, ke - 1)) * kvh + g) * ATT_NCG;
      [[unroll]] for (uint i = 0; i < ATT_CPL; ++i) {
        kw[b * ATT_CPL + i] = att_k(row + col[i]);
        vw[b * ATT_CPL + i] = att_v(row + col[i]);
      }
    }
    float sc[ATT_KB * ATT_R];
    [[unroll]] for (uint b = 0; b < ATT_KB; ++b) {
      float d[ATT_R];
      [[unroll]] for (uint h = 0; h < ATT_R; ++h) d[h] = 0.0;
      [[unroll]] for (uint i = 0; i < ATT_CPL; ++i) {
        const uvec4 w = kw[b * ATT_CPL + i];
        const vec4 k0v = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
        const vec4 k1v = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
        [[unroll]] for (uint h = 0; h < ATT_R; ++h)
          d[h] += dot(q[(h * ATT_CPL + i) * 2], k0v) + dot(q[(h * ATT_CPL + i) * 2 + 1], k1v);
      }
      [[unroll]] for (uint h = 0; h < ATT_R; ++h) sc[b * ATT_R + h] = d[h];
    }
    // Sum each key's partial dots over the group's lanes: every lane gets the R*KB scores.
    [[unroll]] for (uint o = 1; o < ATT_LPK; o <<= 1)
      [[unroll]] for (uint x = 0; x < ATT_KB * ATT_R; ++x) sc[x] += subgroupShuffleXor(sc[x], o);
    // Online softmax over the block; keys past ke (the split's end) weigh 0.
    [[unroll]] for (uint h = 0; h < ATT_R; ++h) {
      float bm = ATT_NEG_BIG;
      [[unroll]] for (uint b = 0; b < ATT_KB; ++b)
        if (k0 + b < ke) bm = max(bm, sc[b * ATT_R + h]);
      const float nm = max(m[h], bm);
      const float corr = exp2(m[h] - nm);
      m[h] = nm;
      float sum = 0.0;
      [[unroll]] for (uint b = 0; b < ATT_KB; ++b) {
        const float pb = k0 + b < ke ? exp2(sc[b * ATT_R + h] - nm) : 0.0;
        sc[b * ATT_R + h] = pb;
        sum += pb;
      }
      l[h] = l[h] * corr + sum;
      [[unroll]] for (uint x = 0; x < ATT_CPL * 8; ++x) acc[h * ATT_CPL * 8 + x] *= corr;
    }
    [[unroll]] for (uint b = 0; b < ATT_KB; ++b) {
      [[unroll]] for (uint i = 0; i < ATT_CPL; ++i) {
        const uvec4 w = vw[b * ATT_CPL + i];
        const vec2 v0 = unpackHalf2x16(w.x), v1 = unpackHalf2x16(w.y), v2 = unpackHalf2x16(w.z),
                   v3 = unpackHalf2x16(w.w);
        [[unroll]] for (uint h = 0; h < ATT_R; ++h) {
          const float pb = sc[b * ATT_R + h];
          const uint a = (h * ATT_CPL + i) * 8;
          acc[a + 0] += pb * v0.x;
          acc[a + 1] += pb * v0.y;
          acc[a + 2] += pb * v1.x;
          acc[a + 3] += pb * v1.y;
          acc[a + 4] += pb * v2.x;
          acc[a + 5] += pb * v2.y;
          acc[a + 6] += pb * v3.x;
          acc[a + 7] += pb * v3.y;
        }
      }
    }
  }

  // Merge the key groups of each subgroup (lanes l and l ^ o own the same columns).
  for (uint o = ATT_LPK; o < gl_SubgroupSize; o <<= 1) {
    [[unroll]] for (uint h = 0; h < ATT_R; ++h) {
      const float m2 = subgroupShuffleXor(m[h], o), l2 = subgroupShuffleXor(l[h], o);
      float w, w2, mx;
      merge_weights(m[h], m2, w, w2, mx);
      m[h] = mx;
      l[h] = l[h] * w + l2 * w2;
      [[unroll]] for (uint x = 0; x < ATT_CPL * 8; ++x) {
        const uint a = h * ATT_CPL * 8 + x;
        acc[a] = acc[a] * w + subgroupShuffleXor(acc[a], o) * w2;
      }
    }
  }
  // ... then each subgroup's state into shared memory, for the lanes that merge the subgroups.
  const uint sg = gl_SubgroupID;
  if (sgl < ATT_LPK) {
    [[unroll]] for (uint h = 0; h < ATT_R; ++h) {
      [[unroll]] for (uint i = 0; i < ATT_CPL; ++i) {
        const uint cg = j + i * ATT_LPK;
        if (cg < ATT_NCG) {
          const uint a = (h * ATT_CPL + i) * 8, e = sg * ATT_E4 + (h * ATT_HD + cg * 8) / 4;
          sh_acc[e] = vec4(acc[a], acc[a + 1], acc[a + 2], acc[a + 3]);
          sh_acc[e + 1] = vec4(acc[a + 4], acc[a + 5], acc[a + 6], acc[a + 7]);
        }
      }
    }
    if (sgl == 0) {
      [[unroll]] for (uint h = 0; h < ATT_R; ++h) {
        sh_m[sg * ATT_R + h] = m[h];
        sh_l[sg * ATT_R + h] = l[h];
      }
    }
  }
  barrier();
}

// Output vec4 e (< ATT_E4) of the split after att_split: its max, softmax sum and unnormalized
// output, over the workgroup's subgroups in order (output = o / sum).
void att_split_output(uint e, out float mx, out float sum, out vec4 o) {
  const uint h = e / (ATT_HD / 4);
  const uint nsg = gl_NumSubgroups;
  mx = ATT_NEG_BIG;
  for (uint s = 0; s < nsg; ++s) mx = max(mx, sh_m[s * ATT_R + h]);
  sum = 0.0;
  o = vec4(0.0);
  for (uint s = 0; s < nsg; ++s) {
    const float w = exp2(sh_m[s * ATT_R + h] - mx);
    sum += w * sh_l[s * ATT_R + h];
    o += w * sh_acc[s * ATT_E4 + e];
  }
}
