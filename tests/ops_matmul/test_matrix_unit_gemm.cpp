// The GEMMs on matrix units (VK_NV_cooperative_matrix): the ternary one (int8) and the FP16
// baseline's (fp16): which driver offers each takes, how they tile from device properties, that
// devices without them refuse them by name and keep the tiled GEMMs, and the on-device self-checks
// that guard them (shown to pass on a correct GEMM and to fail on a wrong one), with the FP16 bound
// shown to hold for the worst rounding the units may use. On a device with the matrix units the
// kernels themselves run: the ternary one against the GEMV, bit for bit (integer sums, the same
// float epilogue: no tolerance), the FP16 one against a CPU sum within its bound. With
// TERNVK_EMULATE_MATRIX_UNITS=1 (a ctest entry) they run on lavapipe too, the matrix operations
// emulated on its shader cores.
#include <algorithm>
#include <doctest/doctest.h>

#include <cfenv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>

#include "common/device_profiles.h"
#include "common/gpu.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/core/half.h"
#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/matrix_unit_gemm.h"
#include "runtime/ops/op_checks.h"
#include "runtime/ops/ternary_matmul.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

CooperativeMatrixOffer int8_offer(uint32_t m, uint32_t n, uint32_t k) {
  return {m, n, k, VK_COMPONENT_TYPE_SINT8_NV, VK_COMPONENT_TYPE_SINT8_NV, VK_COMPONENT_TYPE_SINT32_NV,
          VK_COMPONENT_TYPE_SINT32_NV, VK_SCOPE_SUBGROUP_NV};
}

CooperativeMatrixOffer fp16_offer(uint32_t m, uint32_t n, uint32_t k) {
  return {m, n, k, VK_COMPONENT_TYPE_FLOAT16_NV, VK_COMPONENT_TYPE_FLOAT16_NV, VK_COMPONENT_TYPE_FLOAT32_NV,
          VK_COMPONENT_TYPE_FLOAT32_NV, VK_SCOPE_SUBGROUP_NV};
}

DeviceInfo h200_with_matrix_units() {
  DeviceInfo info = test::h200_like_info();
  info.shader_int8 = info.shader_float16 = info.vulkan_memory_model = true;
  info.int8_matrix_unit = {16, 8, 32};
  info.fp16_matrix_unit = {16, 8, 16};
  return info;
}

// One GEMM of the device-only cases: n rows, k columns, t tokens, optional segments and output columns.
struct UnitGemmCase {
  uint32_t n, k, t;
  uint64_t max_segment_bytes = 0;
  uint32_t y_stride = 0, y_offset = 0;
  uint32_t stride() const { return y_stride ? y_stride : n; }
};

// Each case with both epilogues, named in failures, with a generator seeded from `seed` onwards.
template <typename Run>
void for_each_unit_case(std::initializer_list<UnitGemmCase> cases, uint32_t seed, const Run& run) {
  for (const UnitGemmCase& c : cases)
    for (Epilogue e : {Epilogue::Store, Epilogue::Accumulate}) {
      CAPTURE(c.n);
      CAPTURE(c.k);
      CAPTURE(c.t);
      CAPTURE(int(e));
      std::mt19937 rng(seed++);
      run(c, e, rng);
    }
}

// The 2B4T shapes are there for real units at full size; emulated (TERNVK_EMULATE_MATRIX_UNITS, on a
// CPU device) they would take minutes and show nothing the small shapes do not: not run there.
bool full_size_on_emulated_units(const Device& dev, const UnitGemmCase& c) {
  if (!dev.info().matrix_units_emulated || c.t < 512) return false;
  MESSAGE("emulated matrix units: the full-size case " << c.n << " x " << c.k << " x " << c.t << " is not run");
  return true;
}

// This device described with emulated matrix units of these shapes (whatever units it has itself).
DeviceInfo with_emulated_units(MatrixUnitShape int8 = {16, 8, 32}, MatrixUnitShape fp16 = {16, 8, 16}) {
  DeviceInfo info = test::device().info();
  info.int8_matrix_unit = info.fp16_matrix_unit = {};
  info.matrix_units_emulated = false;
  emulate_matrix_units(info, int8, fp16);
  return info;
}

// TERNVK_EMULATE_MATRIX_UNITS=1 in this process's environment (a ctest entry).
bool emulation_asked() {
  const char* v = std::getenv("TERNVK_EMULATE_MATRIX_UNITS");
  return v && std::string(v) == "1";
}

// What the output holds before a GEMM stores or accumulates into it.
std::vector<float> initial_output(size_t count) {
  std::vector<float> y0(count);
  for (size_t i = 0; i < count; ++i) y0[i] = float(int(i % 17) - 8);
  return y0;
}

// fp32 -> fp16 -> fp32 rounded toward zero (a unit may truncate; round-to-nearest is never worse).
float fp16_toward_zero(float x) {
  float h = half_to_float(float_to_half(x));
  if (std::fabs(h) > std::fabs(x)) {
    const uint16_t bits = float_to_half(x);
    h = half_to_float(uint16_t(bits - 1));  // the next half toward zero (same sign, one ulp smaller)
  }
  return h;
}

}  // namespace

TEST_CASE("the int8 matrix shape is picked from the driver's offers") {
  CHECK_FALSE(pick_int8_matrix_unit({}).any());
  // fp16 and unsigned offers, workgroup scope, a k that does not divide 64 or is not a whole uvec4
  // (16 bytes), and an n that is not a multiple of 4 do not qualify.
  CooperativeMatrixOffer fp16 = int8_offer(16, 16, 16);
  fp16.a = fp16.b = VK_COMPONENT_TYPE_FLOAT16_NV;
  CooperativeMatrixOffer unsigned_a = int8_offer(16, 8, 32);
  unsigned_a.a = VK_COMPONENT_TYPE_UINT8_NV;
  CooperativeMatrixOffer workgroup = int8_offer(16, 8, 32);
  workgroup.scope = VK_SCOPE_WORKGROUP_NV;
  CHECK_FALSE(pick_int8_matrix_unit({fp16, unsigned_a, workgroup, int8_offer(16, 8, 48), int8_offer(16, 8, 8),
                                    int8_offer(16, 6, 32)})
                  .any());
  // Among the qualifying ones, the most products per multiply.
  const MatrixUnitShape best = pick_int8_matrix_unit({int8_offer(8, 8, 32), fp16, int8_offer(16, 8, 32)});
  CHECK(best.m == 16);
  CHECK(best.n == 8);
  CHECK(best.k == 32);
}

TEST_CASE("the fp16 matrix shape is picked from the driver's offers") {
  CHECK_FALSE(pick_fp16_matrix_unit({}).any());
  // int8 offers, fp16 accumulators, workgroup scope, a k that is no whole uvec4 of halves or does not
  // divide 64, and an n that is not a multiple of 4 do not qualify.
  CooperativeMatrixOffer fp16_accumulators = fp16_offer(16, 8, 16);
  fp16_accumulators.c = fp16_accumulators.result = VK_COMPONENT_TYPE_FLOAT16_NV;
  CooperativeMatrixOffer workgroup = fp16_offer(16, 8, 16);
  workgroup.scope = VK_SCOPE_WORKGROUP_NV;
  CHECK_FALSE(pick_fp16_matrix_unit({int8_offer(16, 8, 32), fp16_accumulators, workgroup, fp16_offer(16, 8, 4),
                                     fp16_offer(16, 8, 24), fp16_offer(16, 6, 16)})
                  .any());
  // Among the qualifying ones, the most products per multiply.
  const MatrixUnitShape best = pick_fp16_matrix_unit({fp16_offer(16, 8, 8), int8_offer(16, 16, 32),
                                                      fp16_offer(16, 16, 16), fp16_offer(16, 8, 16)});
  CHECK(best.m == 16);
  CHECK(best.n == 16);
  CHECK(best.k == 16);
}

TEST_CASE("the fp16 matrix-unit GEMM tiles from device properties, with twice the bytes a K block") {
  const DeviceInfo h200 = h200_with_matrix_units();
  const MatrixUnitTile t = MatrixUnitTile::pick(h200, 512, 0, std::nullopt, MatrixUnitOperands::Fp16);
  CHECK(t.operands == MatrixUnitOperands::Fp16);
  CHECK(std::string(t.shader()) == "fp16_gemm_matrix_unit");
  CHECK(t.unit.k == 16);
  CHECK(t.tile_tokens() == 64);
  CHECK(t.tile_rows() == 128);
  // Two 64-element chunks of halves a staged row would take 52 KB with the 192 rows of the tile: one fits.
  CHECK(t.k_chunks == 1);
  CHECK(t.shared_bytes() <= h200.max_shared_memory);
  CHECK(MatrixUnitTile::pick(h200, 512).k_chunks == 2);  // int8: the same tile holds two
  // The fill rule as for int8 (o, down: 2560 rows at 512 tokens).
  CHECK(MatrixUnitTile::pick(h200, 512, 2560, std::nullopt, MatrixUnitOperands::Fp16).tile_rows() == 64);
  CHECK(MatrixUnitTile::row_choices(h200, MatrixUnitOperands::Fp16) == std::vector<uint32_t>{8, 4});
  // A device with int8 units and no fp16 ones (or the reverse) refuses the other by name.
  DeviceInfo int8_only = h200;
  int8_only.fp16_matrix_unit = {};
  CHECK_THROWS_WITH_AS(MatrixUnitTile::pick(int8_only, 512, 0, std::nullopt, MatrixUnitOperands::Fp16),
                       doctest::Contains("fp16 x fp16 -> fp32"), Error);
  CHECK_NOTHROW(MatrixUnitTile::pick(int8_only, 512));
  DeviceInfo other = h200;
  other.fp16_matrix_unit = {16, 16, 16};
  CHECK_THROWS_WITH_AS(t.validate(other), doctest::Contains("multiplies 16x16x16"), Error);
  // A shape the kernel cannot address (k not a whole uvec4 of halves) is refused, whoever made it.
  DeviceInfo odd = h200;
  odd.fp16_matrix_unit = {16, 8, 4};
  CHECK_THROWS_WITH_AS(MatrixUnitTile::pick(odd, 512, 0, std::nullopt, MatrixUnitOperands::Fp16),
                       doctest::Contains("do not fit the kernel"), Error);
}

TEST_CASE("the fp16 GEMM bound holds for fp16 activations and fp32 sums rounded toward zero in any order") {
  // Activations truncated to fp16 and every fp32 add truncated (one ulp, not half), over K = 1 to
  // 8192 random terms (mixed signs, and all of one sign so that no cancellation hides the rounding)
  // in a shuffled order, against the exact sum in double: never over the bound, and not loose by
  // orders of magnitude (the worst case seen uses a fair part of it). The worst case itself rests on
  // the derivation in matrix_unit_gemm.h, not on these samples.
  std::mt19937 rng(61);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  double worst = 0;
  for (uint32_t k : {1u, 7u, 64u, 324u, 2560u, 6912u, 8192u})
    for (int rep = 0; rep < 8; ++rep) {
      std::vector<float> w(k), x(k);
      for (auto& v : w) v = half_to_float(float_to_half(uniform(rng)));
      for (auto& v : x) v = uniform(rng) * (rep % 2 ? 100.0f : 1.0f);
      // Same-sign terms: no cancellation hides the rounding.
      if (rep >= 6)
        for (uint32_t i = 0; i < k; ++i) x[i] = std::copysign(x[i], w[i]);
      double exact = 0, abs_sum = 0, abs_w = 0;
      for (uint32_t i = 0; i < k; ++i) {
        exact += double(w[i]) * x[i];
        abs_sum += std::fabs(double(w[i]) * x[i]);
        abs_w += std::fabs(w[i]);
      }
      std::vector<float> x16(k);
      for (uint32_t i = 0; i < k; ++i) x16[i] = fp16_toward_zero(x[i]);
      std::vector<uint32_t> order(k);
      for (uint32_t i = 0; i < k; ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), rng);
      const int mode = std::fegetround();
      std::fesetround(FE_TOWARDZERO);
      volatile float sum = 0.0f;
      for (uint32_t i : order) sum = sum + w[i] * x16[i];  // fp16 x fp16 products are exact in fp32
      std::fesetround(mode);
      const double bound = fp16_gemm_error_bound(k, abs_sum, abs_w);
      CAPTURE(k);
      CAPTURE(rep);
      CHECK(std::fabs(double(sum) - exact) <= bound);
      worst = std::max(worst, std::fabs(double(sum) - exact) / bound);
    }
  MESSAGE("worst error: " << worst << " of the bound");
  CHECK(worst > 0.05);
}

TEST_CASE("the matrix-unit GEMM tiles from device properties") {
  const DeviceInfo h200 = h200_with_matrix_units();
  const MatrixUnitTile big = MatrixUnitTile::pick(h200, 512);
  CHECK(big.workgroup() == 128);
  CHECK(big.tile_tokens() == 64);
  CHECK(big.tile_rows() == 128);
  CHECK(big.k_chunks == 2);
  CHECK(big.shared_bytes() <= h200.max_shared_memory);
  // Required (with full subgroups) wherever the device can require a size, even its only one.
  CHECK(big.required_subgroup_size == 32);
  DeviceInfo fixed = h200;
  fixed.subgroup_size_control = false;
  CHECK(MatrixUnitTile::pick(fixed, 512).required_subgroup_size == 0);
  // Few tokens: a tile of at most twice as many.
  CHECK(MatrixUnitTile::pick(h200, 20).tile_tokens() == 32);
  // Two workgroups a compute unit (132 SMs: 264) where a matrix's rows allow: 2B4T at 512 tokens.
  auto workgroups = [&](const MatrixUnitTile& t, uint32_t rows, uint32_t tokens) {
    return ((rows + t.tile_rows() - 1) / t.tile_rows()) * ((tokens + t.tile_tokens() - 1) / t.tile_tokens());
  };
  const MatrixUnitTile o = MatrixUnitTile::pick(h200, 512, 2560);   // o, down
  CHECK(o.tile_rows() == 64);
  CHECK(workgroups(o, 2560, 512) == 320);
  CHECK(MatrixUnitTile::pick(h200, 512, 3840).tile_rows() == 64);     // qkv: 240 workgroups of 128 rows
  CHECK(MatrixUnitTile::pick(h200, 512, 13824).tile_rows() == 128);   // gate|up: 864 already
  CHECK(MatrixUnitTile::pick(h200, 512, 200).tile_rows() == 64);      // never under 64 rows
  CHECK(MatrixUnitTile::row_choices(h200) == std::vector<uint32_t>{8, 4});
  // 16 KiB of shared memory: the K block, then the rows a subgroup holds, shrink.
  DeviceInfo small = h200;
  small.max_shared_memory = 16 << 10;
  const MatrixUnitTile fitted = MatrixUnitTile::pick(small, 512);
  CHECK(fitted.shared_bytes() <= small.max_shared_memory);
  CHECK(fitted.k_chunks == 1);
  CHECK(fitted.tile_rows() < big.tile_rows());
  // Every width pick() returns on a device is among row_choices (which the self-check runs), and a cap
  // never yields a tile the device cannot hold.
  for (const uint32_t kib : {16u, 32u, 48u}) {
    DeviceInfo d = h200;
    d.max_shared_memory = kib << 10;
    CAPTURE(kib);
    const std::vector<uint32_t> choices = MatrixUnitTile::row_choices(d);
    for (const uint32_t tokens : {1u, 20u, 33u, 70u, 512u})
      for (const uint32_t rows : {0u, 200u, 2560u, 13824u}) {
        CAPTURE(tokens);
        CAPTURE(rows);
        const uint32_t picked_n = MatrixUnitTile::pick(d, tokens, rows).matrices_n;
        CHECK(std::find(choices.begin(), choices.end(), picked_n) != choices.end());
        for (const uint32_t cap : choices) CHECK(MatrixUnitTile::pick(d, tokens, rows, cap).matrices_n <= cap);
      }
  }
  DeviceInfo small32 = h200;
  small32.max_shared_memory = 32 << 10;
  CHECK(MatrixUnitTile::row_choices(small32) == std::vector<uint32_t>{8, 4});  // 8 fits only with 32-token tiles
  CHECK(MatrixUnitTile::pick(small32, 70, 0, 8).matrices_n == 4);
  CHECK_THROWS_WITH_AS(big.validate(small), doctest::Contains("shared memory"), Error);
  // A device whose subgroup size varies: 32 is required, or the tile is refused without size control.
  DeviceInfo varying = h200;
  varying.min_subgroup_size = 16;
  varying.max_subgroup_size = 64;
  CHECK(MatrixUnitTile::pick(varying, 512).required_subgroup_size == 32);
  varying.subgroup_size_control = false;
  CHECK_THROWS_WITH_AS(MatrixUnitTile::pick(varying, 512), doctest::Contains("cannot require"), Error);
  // Another unit size: the tile follows it.
  DeviceInfo other = h200;
  other.int8_matrix_unit = {16, 16, 32};
  CHECK(MatrixUnitTile::pick(other, 512).tile_rows() == 128);
  CHECK(MatrixUnitTile::pick(other, 512, 2560).tile_rows() == 64);
  CHECK(MatrixUnitTile::row_choices(other) == std::vector<uint32_t>{4, 2});
  CHECK_THROWS_WITH_AS(big.validate(other), doctest::Contains("multiplies 16x16x32"), Error);
  // No unit: refused by name.
  CHECK_THROWS_WITH_AS(MatrixUnitTile::pick(test::h200_like_info(), 512), doctest::Contains("cooperative matrices"),
                       Error);
}

TEST_CASE("devices without int8 matrix units refuse them by name and keep the tiled GEMM") {
  Device& dev = test::device();
  if (dev.info().has_int8_matrix_unit()) {
    MESSAGE("device has int8 matrix units: its own test case below runs them");
    return;
  }
  CHECK_THROWS_WITH_AS(TernaryMatmul(dev, {.kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::MatrixUnits}),
                       doctest::Contains("cooperative matrices"), Error);
  CHECK_FALSE(TernaryMatmul(dev, {.kernel = MatmulKernel::Gemm}).gemm().uses_matrix_units());
  CHECK_FALSE(matrix_unit_gemm_agrees(dev));
  CHECK_FALSE(use_matrix_units(GemmUnits::Auto, dev));
}

TEST_CASE("devices without fp16 matrix units refuse them by name and keep the tiled FP16 GEMM") {
  Device& dev = test::device();
  if (dev.info().has_fp16_matrix_unit()) {
    MESSAGE("device has fp16 matrix units: its own test case below runs them");
    return;
  }
  CHECK_THROWS_WITH_AS(Fp16Matmul(dev, {.kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::MatrixUnits}),
                       doctest::Contains("fp16 x fp16 -> fp32 cooperative matrices"), Error);
  CHECK_FALSE(Fp16Matmul(dev, {.kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::Auto}).gemm().uses_matrix_units());
  CHECK_FALSE(fp16_matrix_unit_gemm_agrees(dev));
  CHECK_FALSE(use_matrix_units(GemmUnits::Auto, dev, MatrixUnitOperands::Fp16));
}

TEST_CASE("a device runs each self-check once and refuses one inside another") {
  Device& dev = test::device();
  const std::string name = "test self-check " + std::to_string(std::rand());
  int runs = 0;
  CHECK(dev.self_check(name, [&] { return ++runs > 0; }));
  CHECK(dev.self_check(name, [&] { return ++runs > 5; }));  // remembered: not run again
  CHECK(runs == 1);
  CHECK_THROWS_WITH_AS(dev.self_check(name + " outer", [&] { return dev.self_check(name + " inner", [] { return true; }); }),
                       doctest::Contains("inside another self-check"), Error);
  CHECK_FALSE(dev.self_check(name + " after", [] { return false; }));  // the lock and the owner were released
}

TEST_CASE("the GEMM self-check passes a correct GEMM and fails a wrong one") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  // The SWAR tiled GEMM (another kernel than the check's reference where the device has OpSDot)
  // agrees bit for bit.
  const TernaryGemm swar(dev, false, std::nullopt, GemmUnits::Vector);
  CHECK(ternary_gemm_agrees_with_tiled(dev, [&](Recording& rec, const TernaryMatrixGpu& w,
                                                const QuantizedActivations& x, uint32_t tokens, const MatmulOutput& y,
                                                uint32_t stride, Epilogue e) {
    swar.record(rec, w, x, tokens, y, stride, e);
  }));
  // One token short (the last token's outputs are never written): caught.
  CHECK_FALSE(ternary_gemm_agrees_with_tiled(dev, [&](Recording& rec, const TernaryMatrixGpu& w,
                                                      const QuantizedActivations& x, uint32_t tokens,
                                                      const MatmulOutput& y, uint32_t stride, Epilogue e) {
    swar.record(rec, w, x, tokens - 1, y, stride, e);
  }));
  // Store where the reference accumulates: caught.
  CHECK_FALSE(ternary_gemm_agrees_with_tiled(dev, [&](Recording& rec, const TernaryMatrixGpu& w,
                                                      const QuantizedActivations& x, uint32_t tokens,
                                                      const MatmulOutput& y, uint32_t stride, Epilogue) {
    swar.record(rec, w, x, tokens, y, stride, Epilogue::Store);
  }));
}

TEST_CASE("the FP16 GEMM self-check passes a correct GEMM and fails a wrong one") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  // The tiled FP16 GEMM (fp32 activations: well within the bound).
  const Fp16Matmul tiled(dev, {.kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::Vector});
  auto record = [&](uint32_t tokens_short, std::optional<Epilogue> forced) {
    return [&, tokens_short, forced](Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens,
                                     const MatmulOutput& y, uint32_t stride, Epilogue e) {
      tiled.gemm().record(rec, w, x, tokens - tokens_short, y, stride, forced.value_or(e));
    };
  };
  CHECK(fp16_gemm_within_bound(dev, record(0, std::nullopt)));
  // One token short (the last token's outputs are never written): caught.
  CHECK_FALSE(fp16_gemm_within_bound(dev, record(1, std::nullopt)));
  // Store where the reference accumulates: caught.
  CHECK_FALSE(fp16_gemm_within_bound(dev, record(0, Epilogue::Store)));
}

TEST_CASE("the matrix-unit GEMMs pass their self-checks with emulated units of several shapes") {
  // The kernels' staging, K blocks, segments, tiles and epilogues, with the matrix operations on the
  // shader cores (gemm_matrix_unit.comp, EMULATED): NVIDIA's shapes, square ones (AMD's WMMA), and
  // matrices of 8 tokens (four a subgroup across tokens). Each self-check runs every tile width at two
  // token counts, whole matrices and segments, stored and accumulated. A device with units of its own
  // runs the real kernels in the cases below instead (and a lent GPU's minutes are not spent here).
  if (test::device().info().uses_cooperative_matrix_extension()) {
    MESSAGE("device '" << test::device().info().name << "' has matrix units: the cases below run them");
    return;
  }
  test::ValidationGuard guard;
  struct Shapes {
    MatrixUnitShape int8, fp16;
  };
  for (const Shapes& s : {Shapes{{16, 8, 32}, {16, 8, 16}}, Shapes{{16, 16, 16}, {16, 16, 16}},
                          Shapes{{8, 8, 32}, {8, 8, 8}}}) {
    CAPTURE(s.int8.n);
    CAPTURE(s.int8.m);
    const DeviceInfo info = with_emulated_units(s.int8, s.fp16);
    REQUIRE(info.matrix_units_emulated);
    Device dev(test::instance(), info);
    CHECK(matrix_unit_gemm_agrees(dev));
    CHECK(fp16_matrix_unit_gemm_agrees(dev));
  }
}

TEST_CASE("emulated matrix units keep their loops within lavapipe's budget or refuse by name") {
  DeviceInfo info = with_emulated_units();
  info.max_shared_memory = 32 * 1024;  // lavapipe's, whatever this device's
  for (const MatrixUnitOperands operands : {MatrixUnitOperands::Int8, MatrixUnitOperands::Fp16}) {
    CAPTURE(int(operands));
    const MatrixUnitTile t = MatrixUnitTile::pick(info, 64, 256, std::nullopt, operands);
    CHECK(t.emulated);
    CHECK(std::string(t.shader()).ends_with("_emulated"));
    // The self-check's K and the small models' run; the loops grow with K; 2B4T's down does not fit.
    CHECK(t.emulated_loop_iterations(324) <= kShaderLoopBudget);
    CHECK(t.emulated_loop_iterations(2560) > t.emulated_loop_iterations(1280));
    CHECK(t.emulated_loop_iterations(65536) > kShaderLoopBudget);
  }
  // A GEMM over the budget is refused when recorded, naming the matrix, K and what to do instead.
  Device dev(test::instance(), info);
  const uint32_t k = 65536;
  const TernaryMatrixGpu w(dev, pack_ternary(std::vector<int8_t>(k, 1), 1, k, 1.0f), "a long row");
  const QuantizedActivationsBuffers x = QuantizedActivationsBuffers::create(dev, 32, k, "long activations");
  Buffer y = dev.create_buffer(32 * 4, MemoryKind::DeviceLocal, "one output a token");
  Recording rec(dev);
  CHECK_THROWS_WITH_AS(MatrixUnitGemm(dev).record(rec, w, x.view(), 32, {y.range()}, 1, Epilogue::Store),
                       doctest::Contains("a long row on emulated units: K = 65536"), Error);
  CHECK_THROWS_WITH_AS(MatrixUnitGemm(dev).record(rec, w, x.view(), 32, {y.range()}, 1, Epilogue::Store),
                       doctest::Contains("TERNVK_EMULATE_MATRIX_UNITS"), Error);
  DeviceInfo real = h200_with_matrix_units();
  CHECK_FALSE(MatrixUnitTile::pick(real, 512).emulated);
  emulate_matrix_units(real);  // units of its own: kept, not emulated
  CHECK_FALSE(real.matrix_units_emulated);
  CHECK(real.uses_cooperative_matrix_extension());
}

TEST_CASE("fp16 matrix-unit GEMM is within its bound of the exact sums (devices with fp16 matrix units)") {
  Device& dev = test::device();
  if (!dev.info().has_fp16_matrix_unit()) {
    REQUIRE_FALSE(emulation_asked());  // the ctest entry that sets it must run this case, not pass it by
    MESSAGE("device '" << dev.info().name << "' has no fp16 matrix units: the kernel is not run here");
    return;
  }
  test::ValidationGuard guard;
  CHECK(fp16_matrix_unit_gemm_agrees(dev));
  // Not tile multiples; K of a partial block and padded rows; several token tiles; segments; strided
  // output columns; both epilogues; the 2B4T shapes at 512 tokens (every 61st row and the last checked).
  const std::initializer_list<UnitGemmCase> cases = {
      {127, 200, 13}, {1, 4, 1}, {65, 64, 70}, {129, 2580, 9}, {129, 300, 130, 129 * 304},
      {127, 200, 13, 0, 150, 7}, {3840, 2560, 512}, {2560, 6912, 512}};
  for_each_unit_case(cases, 1300, [&](const UnitGemmCase& c, Epilogue e, std::mt19937& rng) {
    if (full_size_on_emulated_units(dev, c)) return;
    const auto wh = test::random_halves(rng, size_t(c.n) * c.k, -1.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
    std::vector<float> x(size_t(c.t) * c.k);
    for (auto& v : x) v = uniform(rng);
    const Fp16MatrixGpu gw(dev, wh, c.n, c.k, "fp16 matrix-unit test matrix", c.max_segment_bytes);
    Buffer gx = test::upload(x, "fp16 matrix-unit test activations");
    const uint32_t stride = c.stride();
    const std::vector<float> y0 = initial_output(size_t(c.t) * stride);
    Buffer gy = test::upload(y0, "fp16 matrix-unit test output");
    const Fp16Matmul op(dev, {.kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::MatrixUnits});
    Recording rec(dev);
    op.record(rec, gw, gx.range(), c.t, {gy.range(), c.y_stride, c.y_offset}, e);
    rec.submit_and_wait();
    const auto y = test::download<float>(gy, y0.size());
    for (uint32_t t = 0; t < c.t; ++t)
      for (uint32_t col = 0; col < stride; ++col) {
        const size_t at = size_t(t) * stride + col;
        if (col < c.y_offset || col >= c.y_offset + c.n) {
          REQUIRE(std::memcmp(&y[at], &y0[at], 4) == 0);
          continue;
        }
        const uint32_t r = col - c.y_offset;
        REQUIRE(std::isfinite(y[at]));  // every output written and finite, checked or not
        if (c.n > 1000 && r % 61 != 0 && r != c.n - 1) continue;
        double ref = e == Epilogue::Accumulate ? y0[at] : 0.0, abs_sum = 0, abs_w = 0;
        for (uint32_t k = 0; k < c.k; ++k) {
          const double w = half_to_float(wh[size_t(r) * c.k + k]);
          ref += w * x[size_t(t) * c.k + k];
          abs_sum += std::fabs(w * x[size_t(t) * c.k + k]);
          abs_w += std::fabs(w);
        }
        // The GEMM's bound, then the epilogue's store or add (one more rounding of the result).
        const double tolerance = fp16_gemm_error_bound(c.k, abs_sum, abs_w) + std::ldexp(std::fabs(ref) + 8.0, -23);
        INFO("t=" << t << " row=" << r);
        REQUIRE(std::fabs(y[at] - ref) <= tolerance);
      }
  });
}

TEST_CASE("matrix-unit GEMM equals the GEMV bit for bit (devices with int8 matrix units)") {
  Device& dev = test::device();
  if (!dev.info().has_int8_matrix_unit()) {
    REQUIRE_FALSE(emulation_asked());  // the ctest entry that sets it must run this case, not pass it by
    MESSAGE("device '" << dev.info().name << "' has no int8 matrix units: the kernel is not run here");
    return;
  }
  test::ValidationGuard guard;
  CHECK(matrix_unit_gemm_agrees(dev));
  // Not tile multiples; K of a partial block; several token tiles; one of everything; segments;
  // strided output columns; both epilogues; the 2B4T shapes at 512 tokens (checked rows only).
  const std::initializer_list<UnitGemmCase> cases = {
      {127, 200, 13}, {1, 1, 1}, {65, 64, 70}, {129, 2577, 9}, {129, 300, 130, 800},
      {127, 200, 13, 0, 150, 7}, {3840, 2560, 512}, {2560, 6912, 512}};
  for_each_unit_case(cases, 1200, [&](const UnitGemmCase& c, Epilogue e, std::mt19937& rng) {
    if (full_size_on_emulated_units(dev, c)) return;
    const auto w = test::random_ternary(rng, size_t(c.n) * c.k);
    const auto x = test::random_quantized(rng, c.t, c.k, false);
    TernaryMatrixGpu gw(dev, pack_ternary(w, c.n, c.k, 0.37f), "matrix-unit test matrix", c.max_segment_bytes);
    auto gx = test::upload_activations(x);
    const std::vector<float> y0 = initial_output(size_t(c.t) * c.stride());
    auto run = [&](TernaryMatmulOptions o) {
      Buffer gy = test::upload(y0, "matrix-unit test output");
      TernaryMatmul op(dev, o);
      Recording rec(dev);
      op.record(rec, gw, gx.view, c.t, {gy.range(), c.y_stride, c.y_offset}, e);
      rec.submit_and_wait();
      return test::download<float>(gy, y0.size());
    };
    const auto units = run({.kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::MatrixUnits});
    const auto gemv = run({.kernel = MatmulKernel::Gemv});
    REQUIRE(std::memcmp(units.data(), gemv.data(), units.size() * 4) == 0);
  });
}
