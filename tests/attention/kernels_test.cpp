// The attention kernels against the float64 reference, on fresh random inputs each run, for
// every instruction set this machine can run. Replay a failure with ANCHORCTX_TEST_SEED=<seed>
// (the seed is in the failure message).
#include "anchorctx/attention/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/attention/reference.h"
#include "anchorctx/core/error.h"
#include "attention/test_support.h"
#include "support/env_override.h"

namespace anchorctx::core {
// Readable parameter values in gtest's messages (found by argument-dependent lookup).
static void PrintTo(DType dtype, std::ostream* os) {
  *os << to_string(dtype);
}
}  // namespace anchorctx::core

namespace anchorctx::attention {
static void PrintTo(MaskKind mask, std::ostream* os) {
  *os << to_string(mask);
}

namespace {

using core::DType;
using test_support::LayoutOptions;
using test_support::random_layout;
using test_support::RandomLayout;
using test_support::relative_error;
using test_support::test_seed;

constexpr MaskKind kMasks[] = {MaskKind::causal, MaskKind::intra_doc, MaskKind::anchor};
constexpr std::uint16_t kBf16Nan = 0x7FC0;
// Kernel vs the float64 reference, relative to each element's error scale
// (reference_error_scales). float32: 2e-6 is about 34 float32 ulps (sums of a few hundred
// terms; the worst seen over 3e4 random tensors was 3.6 ulps). bf16: the kernel rounds P, dS
// and its outputs to 8 bits, 2^-9 relative each; 2^-7 is four of those (the worst seen, 0.6).
constexpr double kTolF32 = 2e-6;
const double kTolBf16 = std::ldexp(1.0, -7);

using test::EnvOverride;

// ANCHORCTX_ISA for its lifetime.
class IsaOverride : public EnvOverride {
 public:
  explicit IsaOverride(const std::string& isa) : EnvOverride("ANCHORCTX_ISA", isa) {}
};

// The instruction sets the kernels actually run here (the variable can only lower the ISA, so
// an ISA the CPU lacks reports something else and is skipped).
std::vector<std::string> runnable_isas() {
  std::vector<std::string> isas;
  for (const char* isa : {"avx512", "avx2", "portable"}) {
    IsaOverride guard(isa);
    if (kernel_isa() == isa) isas.emplace_back(isa);
  }
  return isas;
}

// One way the kernels can run here: an instruction set (ANCHORCTX_ISA) and whether bf16 products
// are asked to run natively. `name` is what kernel_isa(dtype, options) reports for it.
struct KernelPath {
  std::string isa;
  bool native_bf16 = false;
  std::string name;
  bool amx = true;  // false: ANCHORCTX_AMX=off (the native products on vdpbf16ps, not AMX)
};

// A path's environment for its lifetime: ANCHORCTX_ISA and ANCHORCTX_AMX.
class PathOverride {
 public:
  explicit PathOverride(const KernelPath& path)
      : isa_(path.isa), amx_("ANCHORCTX_AMX", path.amx ? "on" : "off") {}

 private:
  IsaOverride isa_;
  EnvOverride amx_;
};

// The paths to test for a dtype. float32: every runnable ISA. bf16: the native path where the
// CPU has AVX512_BF16 (else a printed skip), avx512 emulated, and the lower ISAs with native
// asked for, which must fall back to their own emulated code (the override's promise).
std::vector<KernelPath> runnable_paths(DType dtype) {
  std::vector<KernelPath> paths;
  for (const std::string& isa : runnable_isas()) {
    if (dtype == DType::f32) {
      paths.push_back({isa, false, isa});
      continue;
    }
    IsaOverride guard(isa);
    std::string why;
    if (isa == "avx512") {
      if (native_bf16_available(&why)) {
        // Native on AMX tiles where this CPU has them, and on vdpbf16ps (AMX off) always.
        if (kernel_isa(DType::bf16, {0.0f, 0, true}) == "amx_bf16") {
          paths.push_back({isa, true, "amx_bf16"});
        } else {
          static bool told_amx = false;
          if (!told_amx) std::cout << "[ SKIPPED  ] AMX bf16 kernels not tested: no usable AMX\n";
          told_amx = true;
        }
        paths.push_back({isa, true, "avx512_bf16", false});
      } else {
        static bool told = false;
        if (!told) std::cout << "[ SKIPPED  ] native bf16 kernels not tested: " << why << "\n";
        told = true;
      }
      paths.push_back({isa, false, isa});
    } else {
      paths.push_back({isa, true, isa});
    }
  }
  return paths;
}

KernelOptions with_path(KernelOptions options, const KernelPath& path) {
  options.native_bf16 = path.native_bf16;
  return options;
}

// Inputs as float; for bf16 cases they are already rounded, so both sides see the same values.
struct Inputs {
  std::vector<float> q, k, v, dout;
};

// Outputs widened to double for comparison: out, lse, dq, dk, dv.
struct Results {
  std::vector<double> out, lse, dq, dk, dv;
};

Inputs random_inputs(std::mt19937_64& rng, std::int64_t tokens, const AttentionDims& dims,
                     DType dtype, std::int64_t key_tokens = -1) {
  if (key_tokens < 0) key_tokens = tokens;
  const std::size_t nq = tokens * dims.heads_q * dims.head_dim;
  const std::size_t nkv = key_tokens * dims.heads_kv * dims.head_dim;
  // q a little larger than k so that softmax rows are peaked, not nearly uniform.
  Inputs in{test_support::random_floats(rng, nq, 1.5f), test_support::random_floats(rng, nkv),
            test_support::random_floats(rng, nkv), test_support::random_floats(rng, nq)};
  if (dtype == DType::bf16) {
    for (auto* x : {&in.q, &in.k, &in.v, &in.dout})
      *x = test_support::round_to_bf16(*x);
  }
  return in;
}

// The float64 reference and, per element, the scale its float rounding errors live on.
struct Reference {
  Results values;
  std::vector<double> out_scale, lse_scale, dq_scale, dk_scale, dv_scale;
};

Reference run_reference(const AttentionLayout& layout, const Mask& mask, const AttentionDims& dims,
                        const Inputs& in, double scale) {
  const auto q = test_support::to_double(in.q), k = test_support::to_double(in.k),
             v = test_support::to_double(in.v), dout = test_support::to_double(in.dout);
  Reference r;
  Results& x = r.values;
  x.out.resize(q.size());
  x.lse.resize(layout.total_q_tokens() * dims.heads_q);
  x.dq.resize(q.size());
  x.dk.resize(k.size());
  x.dv.resize(v.size());
  reference_forward(layout, mask, dims, q, k, v, x.out, x.lse, scale);
  reference_backward(layout, mask, dims, q, k, v, dout, x.dq, x.dk, x.dv, scale);
  r.out_scale.resize(q.size());
  r.lse_scale.resize(x.lse.size());
  r.dq_scale.resize(q.size());
  r.dk_scale.resize(k.size());
  r.dv_scale.resize(v.size());
  reference_error_scales(layout, mask, dims, q, k, v, dout, r.out_scale, r.lse_scale, r.dq_scale,
                         r.dk_scale, r.dv_scale, scale);
  return r;
}

// A tensor of either dtype, poisoned with NaN so that an element the kernel never writes fails.
struct Buffer {
  DType dtype;
  std::vector<float> f32;
  std::vector<std::uint16_t> bf16;

  Buffer(DType t, std::size_t n) : dtype(t) {
    if (t == DType::f32) {
      f32.assign(n, std::numeric_limits<float>::quiet_NaN());
    } else {
      bf16.assign(n, kBf16Nan);
    }
  }
  Buffer(DType t, const std::vector<float>& values) : dtype(t) {
    if (t == DType::f32) {
      f32 = values;
    } else {
      bf16 = test_support::to_bf16_bits(values);
    }
  }
  void* data() { return dtype == DType::f32 ? static_cast<void*>(f32.data()) : bf16.data(); }
  const void* data() const {
    return dtype == DType::f32 ? static_cast<const void*>(f32.data()) : bf16.data();
  }
  std::vector<double> to_double() const {
    return dtype == DType::f32 ? test_support::to_double(f32)
                               : test_support::bf16_bits_to_double(bf16);
  }
  bool same_bits(const Buffer& other) const { return f32 == other.f32 && bf16 == other.bf16; }
};

// Everything one forward + backward produces, in the kernel's own dtype.
struct KernelRun {
  Buffer out, dq, dk, dv;
  std::vector<float> lse;

  bool same_bits(const KernelRun& o) const {
    return out.same_bits(o.out) && dq.same_bits(o.dq) && dk.same_bits(o.dk) && dv.same_bits(o.dv) &&
           std::memcmp(lse.data(), o.lse.data(), lse.size() * sizeof(float)) == 0;
  }
  Results to_results() const {
    return {out.to_double(), std::vector<double>(lse.begin(), lse.end()), dq.to_double(),
            dk.to_double(), dv.to_double()};
  }
};

// Forward, then backward from the kernel's own out and lse (as training does).
KernelRun run_kernels(const BlockPlan& plan, const AttentionDims& dims, DType dtype,
                      const Inputs& in, const KernelOptions& options) {
  const std::size_t t = plan.layout().total_q_tokens();
  const Buffer q(dtype, in.q), k(dtype, in.k), v(dtype, in.v), dout(dtype, in.dout);
  KernelRun run{Buffer(dtype, in.q.size()), Buffer(dtype, in.q.size()), Buffer(dtype, in.k.size()),
                Buffer(dtype, in.v.size()),
                std::vector<float>(t * dims.heads_q, std::numeric_limits<float>::quiet_NaN())};
  forward(plan, dims, {dtype, q.data(), k.data(), v.data(), run.out.data(), run.lse.data()},
          options);
  backward(plan, dims,
           {dtype, q.data(), k.data(), v.data(), run.out.data(), dout.data(), run.lse.data(),
            run.dq.data(), run.dk.data(), run.dv.data()},
           options);
  return run;
}

// Every element within tol times its own error scale (reference_error_scales), so that values
// which cancel to nearly 0 (dS = P (dP - rowsum(dO O)) on short rows) are judged on the size of
// their terms, and no element hides behind the others' norm. Reports the worst element.
testing::AssertionResult within_error_scale(const std::vector<double>& got,
                                            const std::vector<double>& ref,
                                            const std::vector<double>& error_scale, double tol) {
  if (got.size() != ref.size()) return testing::AssertionFailure() << "size differs";
  std::size_t worst = 0, bad = 0;
  double worst_ratio = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (got[i] == ref[i]) continue;  // also the -inf lse of a row that sees nothing
    const double ratio = std::fabs(got[i] - ref[i]) / error_scale[i];
    if (ratio <= tol) continue;  // a NaN (unwritten) element fails here
    if (bad++ == 0 || ratio > worst_ratio) {
      worst = i;
      worst_ratio = ratio;
    }
  }
  if (bad == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << bad << " of " << ref.size() << " elements off; worst [" << worst << "] got "
         << got[worst] << " want " << ref[worst] << ", error " << std::fabs(got[worst] - ref[worst])
         << " > " << tol << " x error scale " << error_scale[worst];
}

void expect_close(const Results& got, const Reference& reference, DType dtype) {
  const double tol = dtype == DType::f32 ? kTolF32 : kTolBf16;
  const Results& ref = reference.values;
  EXPECT_TRUE(within_error_scale(got.out, ref.out, reference.out_scale, tol)) << "out";
  EXPECT_TRUE(within_error_scale(got.dq, ref.dq, reference.dq_scale, tol)) << "dq";
  EXPECT_TRUE(within_error_scale(got.dk, ref.dk, reference.dk_scale, tol)) << "dk";
  EXPECT_TRUE(within_error_scale(got.dv, ref.dv, reference.dv_scale, tol)) << "dv";
  // lse is float32 in both modes and computed from the same (rounded) inputs; a row that sees
  // nothing has -inf in both.
  EXPECT_TRUE(within_error_scale(got.lse, ref.lse, reference.lse_scale, kTolF32)) << "lse";
}

// One layout, mask, shape and dtype: the reference once, then the kernels on every ISA.
void check_against_reference(const AttentionLayout& layout, const Mask& mask,
                             const AttentionDims& dims, DType dtype, std::mt19937_64& rng,
                             int tile_size = BlockPlan::kDefaultTileSize, float scale = 0.0f,
                             int threads = 0) {
  const Inputs in = random_inputs(rng, layout.total_q_tokens(), dims, dtype, layout.total_tokens());
  const Reference ref = run_reference(layout, mask, dims, in, scale);
  const BlockPlan plan = BlockPlan::build(layout, mask, tile_size);
  for (const KernelPath& path : runnable_paths(dtype)) {
    PathOverride guard(path);
    SCOPED_TRACE("kernels " + path.name);
    const KernelOptions options = with_path({scale, threads}, path);
    ASSERT_EQ(kernel_isa(dtype, options), path.name);
    const KernelRun run = run_kernels(plan, dims, dtype, in, options);
    expect_close(run.to_results(), ref, dtype);
  }
}

std::string describe(MaskKind mask, const AttentionDims& dims, DType dtype) {
  return fmt::format("{} Hq={} Hkv={} D={} {}", to_string(mask), dims.heads_q, dims.heads_kv,
                     dims.head_dim, core::to_string(dtype));
}

// Each test draws fresh random inputs from its own seed, printed with any failure (replay with
// ANCHORCTX_TEST_SEED=<seed>).
class Kernels : public testing::Test {
 protected:
  const std::uint64_t seed = test_seed();
  const testing::ScopedTrace seed_trace{__FILE__, __LINE__, testing::Message() << "seed=" << seed};
  std::mt19937_64 rng{seed};
};

TEST_F(Kernels, ReportsARunnableIsa) {
  const std::string isa = kernel_isa();
  EXPECT_TRUE(isa == "avx512" || isa == "avx2" || isa == "portable") << isa;
  const auto isas = runnable_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), "portable");  // every machine can run the portable code
  // The variable lowers, never raises: portable stays portable.
  IsaOverride guard("portable");
  EXPECT_EQ(kernel_isa(), "portable");
  std::string list;
  for (const auto& i : isas)
    list += i + " ";
  RecordProperty("isas", list);
  std::cout << "[ INFO     ] kernel ISAs tested: " << list << "\n";
}

// (mask, head_dim, {heads_q, heads_kv}, dtype)
using CaseParam = std::tuple<MaskKind, int, std::pair<int, int>, DType>;

class KernelsVsReference : public testing::TestWithParam<CaseParam> {};

TEST_P(KernelsVsReference, RandomLayouts) {
  const auto [mask, head_dim, heads, dtype] = GetParam();
  const AttentionDims dims{heads.first, heads.second, head_dim};
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed << " " << describe(mask, dims, dtype));
  std::mt19937_64 rng(seed);
  LayoutOptions options;
  options.min_sequences = 2;
  options.max_sequences = 3;
  options.max_seq_len = 160;
  const RandomLayout r = random_layout(rng, options);
  SCOPED_TRACE(r.describe());
  check_against_reference(r.layout, mask, dims, dtype, rng);
}

std::string case_name(const testing::TestParamInfo<CaseParam>& info) {
  const auto& [mask, d, heads, dtype] = info.param;
  return fmt::format("{}_D{}_H{}x{}_{}", to_string(mask), d, heads.first, heads.second,
                     core::to_string(dtype));
}

INSTANTIATE_TEST_SUITE_P(AllMasks, KernelsVsReference,
                         testing::Combine(testing::ValuesIn(kMasks), testing::Values(64, 128, 40),
                                          testing::Values(std::pair{4, 2}, std::pair{2, 2}),
                                          testing::Values(DType::f32, DType::bf16)),
                         case_name);

TEST_F(Kernels, SmallTilesMatchTheReference) {
  for (MaskKind mask : kMasks) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      const AttentionDims dims{4, 2, 64};
      SCOPED_TRACE(describe(mask, dims, dtype));
      LayoutOptions options;
      options.tile = 16;
      options.max_sequences = 3;
      options.max_seq_len = 100;
      const RandomLayout r = random_layout(rng, options);
      SCOPED_TRACE(r.describe());
      check_against_reference(r.layout, mask, dims, dtype, rng, 16);
    }
  }
}

TEST_F(Kernels, OddTileSizesMatchTheReference) {
  // The plan accepts any positive tile size; the kernels must not assume the default. 1 and 40
  // leave the native staging's pairs of rows short of a whole 16-word block (8, then 16 + 8).
  for (int tile : {1, 24, 40, 128}) {
    for (MaskKind mask : kMasks) {
      for (DType dtype : {DType::f32, DType::bf16}) {
        const AttentionDims dims{2, 1, 40};
        SCOPED_TRACE(testing::Message() << describe(mask, dims, dtype) << " tile " << tile);
        LayoutOptions options;
        options.tile = tile;
        options.max_seq_len = tile == 1 ? 40 : 300;
        const RandomLayout r = random_layout(rng, options);
        SCOPED_TRACE(r.describe());
        check_against_reference(r.layout, mask, dims, dtype, rng, tile);
      }
    }
  }
}

TEST_F(Kernels, ScaleOptionIsHonoured) {
  for (MaskKind mask : kMasks) {
    const AttentionDims dims{3, 1, 64};
    SCOPED_TRACE(describe(mask, dims, DType::f32));
    const RandomLayout r = random_layout(rng);
    SCOPED_TRACE(r.describe());
    check_against_reference(r.layout, mask, dims, DType::f32, rng, BlockPlan::kDefaultTileSize,
                            0.37f);
  }
}

TEST_F(Kernels, NegativeScaleMasksTheSameKeys) {
  // A negative softmax scale is legal (finite, non-zero): a masked key must still get zero
  // probability, in the forward and in the backward's recomputed P, for both dtypes.
  for (MaskKind mask : kMasks) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      const AttentionDims dims{2, 1, 64};
      SCOPED_TRACE(describe(mask, dims, dtype));
      const RandomLayout r = random_layout(rng);
      SCOPED_TRACE(r.describe());
      check_against_reference(r.layout, mask, dims, dtype, rng, BlockPlan::kDefaultTileSize,
                              -0.37f);
    }
  }
}

TEST_F(Kernels, OtherHeadDims) {
  // Any multiple of 8 up to 256 must be correct, not only the fast ones.
  for (int head_dim : {8, 16, 96, 256}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      const AttentionDims dims{2, 1, head_dim};
      SCOPED_TRACE(describe(MaskKind::anchor, dims, dtype));
      LayoutOptions options;
      options.max_seq_len = 90;
      const RandomLayout r = random_layout(rng, options);
      SCOPED_TRACE(r.describe());
      check_against_reference(r.layout, MaskKind::anchor, dims, dtype, rng);
    }
  }
}

TEST_F(Kernels, LongerWindow) {
  // One larger case: many tiles per sequence, so full tiles, long kv lists, the forward's
  // steps over runs of full key tiles (kernels_impl.h, next_forward_step) and the transposed
  // lists of the backward all get exercised.
  LayoutOptions options;
  options.min_sequences = 2;
  options.max_sequences = 2;
  options.max_seq_len = 600;
  const RandomLayout r = random_layout(rng, options);
  SCOPED_TRACE(r.describe());
  for (MaskKind mask : {MaskKind::causal, MaskKind::anchor}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(describe(mask, {4, 2, 64}, dtype));
      check_against_reference(r.layout, mask, {4, 2, 64}, dtype, rng);
    }
  }
}

// The kernels keep their staged inputs and dQ accumulator for the calling thread's next call
// (CallScratch): a smaller call after a larger one runs on arrays that still hold the larger
// call's values past its own, and must write everything it reads (padding columns of D = 40,
// tile edges, the accumulator). Larger, smaller, larger again, each against the reference.
TEST_F(Kernels, ScratchArraysReusedAcrossCallsOfDifferentSizes) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const int max_len : {500, 70, 500}) {
      LayoutOptions options;
      options.min_sequences = 2;
      options.max_seq_len = max_len;
      const RandomLayout r = random_layout(rng, options);
      SCOPED_TRACE(testing::Message() << core::to_string(dtype) << " " << r.describe());
      check_against_reference(r.layout, MaskKind::anchor, {4, 2, 40}, dtype, rng);
    }
  }
}

// The native bf16 path runs exactly where it should: bf16 tensors with native asked for, on a
// CPU with AVX512_BF16 and ANCHORCTX_ISA not below avx512; everything else keeps its path.
TEST_F(Kernels, NativeBf16IsChosenOnlyWhereAvailable) {
  KernelOptions native;
  native.native_bf16 = true;
  std::string why;
  const bool available = native_bf16_available(&why);
  if (available) {
    const std::string chosen = kernel_isa(DType::bf16, native);
    EXPECT_TRUE(chosen == "amx_bf16" || chosen == "avx512_bf16") << chosen;
    EnvOverride no_amx("ANCHORCTX_AMX", "off");
    EXPECT_EQ(kernel_isa(DType::bf16, native), "avx512_bf16");
  } else {
    EXPECT_EQ(kernel_isa(DType::bf16, native), kernel_isa());
  }
  EXPECT_EQ(kernel_isa(DType::bf16, {}), kernel_isa());
  EXPECT_EQ(kernel_isa(DType::f32, native), kernel_isa());
  if (!available) {
    EXPECT_FALSE(why.empty());
    std::cout << "[ INFO     ] native bf16 kernels unavailable here: " << why << "\n";
  }
  IsaOverride guard("avx2");
  EXPECT_FALSE(native_bf16_available(&why));
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(kernel_isa(DType::bf16, native), kernel_isa());
}

// Native and emulated bf16 on the same inputs: both round their outputs to bf16 and differ only
// in where P and dS are rounded and in the order of float32 sums, so each element stays within
// the bf16 tolerance of its error scale from the other. Awkward shapes: one-token documents,
// documents across tile edges, lengths off the tile, fewer queries than keys, D not a multiple
// of the vector width (40), and a long row of tiles (D = 128).
TEST_F(Kernels, NativeBf16MatchesEmulatedWithinBf16Scales) {
  std::string why;
  if (!native_bf16_available(&why)) GTEST_SKIP() << "native bf16 kernels unavailable: " << why;
  KernelOptions native;
  native.native_bf16 = true;
  for (int trial = 0; trial < 12; ++trial) {
    // Odd trials with the products on vdpbf16ps, even ones on AMX where this CPU has it.
    const EnvOverride amx("ANCHORCTX_AMX", trial % 2 == 1 ? "off" : "on");
    const AttentionDims dims = trial % 3 == 0   ? AttentionDims{4, 2, 128}
                               : trial % 3 == 1 ? AttentionDims{2, 2, 40}
                                                : AttentionDims{4, 1, 64};
    const MaskKind mask = kMasks[trial % 3];
    LayoutOptions options;
    options.min_sequences = 1;
    options.max_sequences = 3;
    options.max_seq_len = trial < 4 ? 400 : 160;
    options.fewer_queries = trial / 2 % 2 == 1;
    const RandomLayout r = random_layout(rng, options);
    SCOPED_TRACE(testing::Message() << "trial " << trial << " " << describe(mask, dims, DType::bf16)
                                    << " " << r.describe());
    const Inputs in =
        random_inputs(rng, r.layout.total_q_tokens(), dims, DType::bf16, r.total_tokens());
    const Reference ref = run_reference(r.layout, mask, dims, in, 0.0);
    const BlockPlan plan = BlockPlan::build(r.layout, mask);
    const Results got = run_kernels(plan, dims, DType::bf16, in, native).to_results();
    const Results want = run_kernels(plan, dims, DType::bf16, in, {}).to_results();
    EXPECT_TRUE(within_error_scale(got.out, want.out, ref.out_scale, kTolBf16)) << "out";
    EXPECT_TRUE(within_error_scale(got.lse, want.lse, ref.lse_scale, kTolF32)) << "lse";
    EXPECT_TRUE(within_error_scale(got.dq, want.dq, ref.dq_scale, kTolBf16)) << "dq";
    EXPECT_TRUE(within_error_scale(got.dk, want.dk, ref.dk_scale, kTolBf16)) << "dk";
    EXPECT_TRUE(within_error_scale(got.dv, want.dv, ref.dv_scale, kTolBf16)) << "dv";
    expect_close(got, ref, DType::bf16);
  }
}

TEST_F(Kernels, LongerWindowInBf16) {
  // LongerWindow's shapes in bf16 with D = 128, the paper's head size: every path, the native
  // one included, over many full tiles.
  LayoutOptions options;
  options.min_sequences = 2;
  options.max_sequences = 2;
  options.max_seq_len = 500;
  options.fewer_queries = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  const RandomLayout r = random_layout(rng, options);
  SCOPED_TRACE(r.describe());
  for (MaskKind mask : {MaskKind::causal, MaskKind::anchor}) {
    SCOPED_TRACE(to_string(mask));
    check_against_reference(r.layout, mask, {4, 2, 128}, DType::bf16, rng);
  }
}

TEST_F(Kernels, EmptySequencesAreSkipped) {
  using I32 = std::vector<std::int32_t>;
  const auto layout = AttentionLayout::from_arrays(I32{0, 0, 70, 70, 75, 75}, I32{0, 0, 2, 2, 2, 2},
                                                   I32{0, 33}, I32{0, 3, 0, 1, 0});
  for (MaskKind mask : kMasks) {
    SCOPED_TRACE(to_string(mask));
    check_against_reference(layout, mask, {2, 1, 64}, DType::f32, rng);
  }
}

TEST_F(Kernels, DeterministicAcrossThreadsAndRuns) {
  LayoutOptions options;
  options.min_sequences = 2;
  options.max_sequences = 3;
  options.max_seq_len = 160;
  options.fewer_queries = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  const RandomLayout r = random_layout(rng, options);
  SCOPED_TRACE(r.describe());
  for (MaskKind mask : kMasks) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      const AttentionDims dims{4, 2, 64};
      SCOPED_TRACE(describe(mask, dims, dtype));
      const Inputs in =
          random_inputs(rng, r.layout.total_q_tokens(), dims, dtype, r.total_tokens());
      const BlockPlan plan = BlockPlan::build(r.layout, mask);
      for (const KernelPath& path : runnable_paths(dtype)) {
        PathOverride guard(path);
        SCOPED_TRACE("kernels " + path.name);
        const KernelRun one = run_kernels(plan, dims, dtype, in, with_path({0.0f, 1}, path));
        const KernelRun two = run_kernels(plan, dims, dtype, in, with_path({0.0f, 2}, path));
        const KernelRun again = run_kernels(plan, dims, dtype, in, with_path({0.0f, 2}, path));
        const KernelRun three = run_kernels(plan, dims, dtype, in, with_path({0.0f, 3}, path));
        EXPECT_TRUE(one.same_bits(two)) << "threads=1 and threads=2 differ";
        EXPECT_TRUE(two.same_bits(again)) << "two runs with threads=2 differ";
        EXPECT_TRUE(one.same_bits(three)) << "threads=1 and threads=3 differ";
        // The most threads a call may ask for: it runs as many as it has tiles (4096 threads'
        // workspaces asked for GBs on a batch of a few tiles), with the same bits.
        const KernelRun most = run_kernels(plan, dims, dtype, in, with_path({0.0f, 4096}, path));
        EXPECT_TRUE(one.same_bits(most)) << "threads=1 and threads=4096 differ";
      }
    }
  }
}

// backward_schedule: fused where (sequence, kv head) items fill the threads' rounds to 85%,
// else key tiles in turn.
TEST(BackwardSchedule, FusedWhereItsItemsFillTheThreads) {
  const auto schedule = [](int sequences, int heads_kv, int threads) {
    const std::vector<std::vector<std::int32_t>> docs(static_cast<std::size_t>(sequences),
                                                      std::vector<std::int32_t>{100});
    const BlockPlan plan =
        BlockPlan::build(AttentionLayout::from_document_lengths(docs, 0), Mask{});
    return backward_schedule(plan, AttentionDims{2 * heads_kv, heads_kv, 64}, threads);
  };
  constexpr BackwardSchedule fused = BackwardSchedule::fused;
  constexpr BackwardSchedule in_turn = BackwardSchedule::key_tiles_in_turn;
  EXPECT_EQ(schedule(1, 1, 1), fused);
  EXPECT_EQ(schedule(1, 2, 2), fused);
  EXPECT_EQ(schedule(1, 1, 2), in_turn);   // one item, two threads
  EXPECT_EQ(schedule(3, 1, 2), in_turn);   // a second round for one item: 75%
  EXPECT_EQ(schedule(1, 7, 8), fused);     // 7 of 8 threads: 87.5%
  EXPECT_EQ(schedule(1, 8, 64), in_turn);  // Llama 3 8B's kv heads on 64 cores
  EXPECT_EQ(schedule(2, 8, 16), fused);
  EXPECT_EQ(schedule(9, 2, 8), in_turn);  // 18 items in 3 rounds of 8: 75%
  EXPECT_EQ(to_string(fused), "fused");
  EXPECT_EQ(to_string(in_turn), "key_tiles_in_turn");
}

// The backward runs one item per (sequence, kv head) where those items fill the threads, else
// key tiles in turn (dq_turns.h): 1 to 6 such items on 1, 2 and 4 threads take both schedules.
// Both add every contribution in the same order: the bits must not change with the thread count.
TEST_F(Kernels, BackwardSchedulesAgreeToTheBit) {
  LayoutOptions options;
  options.min_sequences = 1;
  options.max_sequences = 3;
  options.max_seq_len = 300;
  options.fewer_queries = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  const RandomLayout r = random_layout(rng, options);
  SCOPED_TRACE(r.describe());
  for (MaskKind mask : kMasks) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      const int kv_heads = std::uniform_int_distribution<int>(1, 2)(rng);
      const AttentionDims dims{2 * kv_heads, kv_heads, 64};
      SCOPED_TRACE(describe(mask, dims, dtype));
      const Inputs in =
          random_inputs(rng, r.layout.total_q_tokens(), dims, dtype, r.total_tokens());
      const Reference ref = run_reference(r.layout, mask, dims, in, 0.0);
      const BlockPlan plan = BlockPlan::build(r.layout, mask, 32);
      for (const KernelPath& path : runnable_paths(dtype)) {
        PathOverride guard(path);
        SCOPED_TRACE("kernels " + path.name);
        const KernelRun one = run_kernels(plan, dims, dtype, in, with_path({0.0f, 1}, path));
        const KernelRun two = run_kernels(plan, dims, dtype, in, with_path({0.0f, 2}, path));
        const KernelRun four = run_kernels(plan, dims, dtype, in, with_path({0.0f, 4}, path));
        EXPECT_TRUE(one.same_bits(two)) << "threads=1 (fused) and threads=2 differ";
        EXPECT_TRUE(one.same_bits(four)) << "threads=1 (fused) and threads=4 differ";
        expect_close(two.to_results(), ref, dtype);
      }
    }
  }
}

// The paper's two formulations of AnchorAttention give the same result. Shared anchor: one
// window [a][doc1][doc2]..., anchor_len 1, anchor mask. Per-document anchor: each document
// prefixed by its own copy of a (identical q/k/v rows), intra_doc mask. Every document token
// must get the same output and gradients; the shared anchor's dk/dv are the sums over the
// copies (with dout = 0 on the anchor rows, so its own query adds nothing to either side).
TEST_F(Kernels, SharedAnchorEqualsPerDocumentAnchors) {
  const AttentionDims dims{4, 2, 64};
  const int hq = dims.heads_q, hkv = dims.heads_kv, d = dims.head_dim;
  for (int trial = 0; trial < 3; ++trial) {
    // Document lengths: some one-token, some crossing tile edges.
    std::vector<std::int32_t> docs;
    std::uniform_int_distribution<int> pick(0, 3);
    const int n_docs = std::uniform_int_distribution<int>(2, 6)(rng);
    for (int i = 0; i < n_docs; ++i) {
      docs.push_back(pick(rng) == 0 ? 1 : std::uniform_int_distribution<int>(2, 90)(rng));
    }
    SCOPED_TRACE(fmt::format("documents {}", docs));

    // Shared: [a][doc1][doc2]...; per-document: [a doc1][a doc2]...
    std::vector<std::int32_t> shared_docs = {1};
    std::vector<std::int32_t> per_doc_docs;
    for (std::int32_t len : docs) {
      shared_docs.push_back(len);
      per_doc_docs.push_back(1 + len);
    }
    const auto shared = AttentionLayout::from_document_lengths({shared_docs}, 1);
    const auto per_doc = AttentionLayout::from_document_lengths({per_doc_docs}, 0);
    const std::int64_t ts = shared.total_tokens(), tp = per_doc.total_tokens();
    ASSERT_EQ(tp, ts + n_docs - 1);

    // Token i of the shared window -> its rows in the per-document window.
    std::vector<std::int64_t> doc_token_map(ts, -1);  // shared token -> per-doc token
    std::vector<std::int64_t> anchor_copies;          // per-doc positions of the copies
    {
      std::int64_t s = 1, p = 0;
      for (std::int32_t len : docs) {
        anchor_copies.push_back(p++);
        for (std::int32_t j = 0; j < len; ++j)
          doc_token_map[s++] = p++;
      }
    }

    const Inputs shared_in = random_inputs(rng, ts, dims, DType::f32);
    Inputs shared_in_zero = shared_in;
    for (int h = 0; h < hq; ++h) {
      for (int c = 0; c < d; ++c)
        shared_in_zero.dout[h * d + c] = 0.0f;  // anchor row
    }
    Inputs per_in{std::vector<float>(tp * hq * d), std::vector<float>(tp * hkv * d),
                  std::vector<float>(tp * hkv * d), std::vector<float>(tp * hq * d, 0.0f)};
    const auto copy_row = [&](const std::vector<float>& from, std::int64_t src,
                              std::vector<float>& to, std::int64_t dst, int width) {
      std::copy_n(from.begin() + src * width, width, to.begin() + dst * width);
    };
    for (std::int64_t s = 0; s < ts; ++s) {
      std::vector<std::int64_t> targets;
      if (s == 0) {
        targets = anchor_copies;
      } else {
        targets = {doc_token_map[s]};
      }
      for (std::int64_t p : targets) {
        copy_row(shared_in_zero.q, s, per_in.q, p, hq * d);
        copy_row(shared_in_zero.k, s, per_in.k, p, hkv * d);
        copy_row(shared_in_zero.v, s, per_in.v, p, hkv * d);
        copy_row(shared_in_zero.dout, s, per_in.dout, p, hq * d);
      }
    }

    const BlockPlan shared_plan = BlockPlan::build(shared, MaskKind::anchor);
    const BlockPlan per_doc_plan = BlockPlan::build(per_doc, MaskKind::intra_doc);
    const KernelRun a = run_kernels(shared_plan, dims, DType::f32, shared_in_zero, {});
    const KernelRun b = run_kernels(per_doc_plan, dims, DType::f32, per_in, {});

    // Gather the per-document results into the shared window's token order.
    const auto gather = [&](const std::vector<float>& per, int width, bool sum_anchor) {
      std::vector<double> g(ts * width, 0.0);
      for (std::int64_t s = 1; s < ts; ++s) {
        for (int c = 0; c < width; ++c)
          g[s * width + c] = per[doc_token_map[s] * width + c];
      }
      for (std::size_t i = 0; i < anchor_copies.size(); ++i) {
        if (!sum_anchor && i > 0) break;
        for (int c = 0; c < width; ++c)
          g[c] += per[anchor_copies[i] * width + c];
      }
      return g;
    };
    const auto as_double = [](const std::vector<float>& x) {
      return std::vector<double>(x.begin(), x.end());
    };
    EXPECT_LE(relative_error(as_double(a.out.f32), gather(b.out.f32, hq * d, false)), 1e-5)
        << "out";
    EXPECT_LE(relative_error(as_double(a.dq.f32), gather(b.dq.f32, hq * d, false)), 1e-5) << "dq";
    EXPECT_LE(relative_error(as_double(a.dk.f32), gather(b.dk.f32, hkv * d, true)), 1e-5) << "dk";
    EXPECT_LE(relative_error(as_double(a.dv.f32), gather(b.dv.f32, hkv * d, true)), 1e-5) << "dv";
    // Row by row too, so one document's tokens cannot hide behind the others' norm.
    for (std::int64_t s = 1; s < ts; ++s) {
      const std::int64_t p = doc_token_map[s];
      std::vector<double> x(a.out.f32.begin() + s * hq * d, a.out.f32.begin() + (s + 1) * hq * d);
      std::vector<double> y(b.out.f32.begin() + p * hq * d, b.out.f32.begin() + (p + 1) * hq * d);
      ASSERT_LE(relative_error(x, y), 1e-5) << "out of token " << s;
      for (int h = 0; h < hq; ++h) {
        ASSERT_NEAR(a.lse[h * ts + s], b.lse[h * tp + p], 1e-5) << "lse of token " << s;
      }
    }
  }
}

// Fewer queries than keys (prefill with a cache, chunked prefill, one-token decode): the
// queries are the last keys of each sequence. Forward and backward against the reference.
TEST_F(Kernels, QueriesFewerThanKeysMatchTheReference) {
  for (const int tile : {16, 64}) {
    for (MaskKind mask : kMasks) {
      for (DType dtype : {DType::f32, DType::bf16}) {
        const AttentionDims dims{4, 2, 64};
        SCOPED_TRACE(testing::Message() << describe(mask, dims, dtype) << " tile " << tile);
        LayoutOptions options;
        options.tile = tile;
        options.max_sequences = 3;
        options.max_seq_len = 170;
        options.fewer_queries = true;
        const RandomLayout r = random_layout(rng, options);
        SCOPED_TRACE(r.describe());
        check_against_reference(r.layout, mask, dims, dtype, rng, tile);
      }
    }
  }
}

// Sliding windows and non-causal masks (mask.h's modifiers), with equal and fewer queries.
TEST_F(Kernels, MaskVariantsMatchTheReference) {
  const int window = std::uniform_int_distribution<int>(1, 40)(rng);
  SCOPED_TRACE(testing::Message() << "window " << window);
  for (const Mask& mask : test_support::mask_variants(window)) {
    SCOPED_TRACE(test_support::describe_mask(mask));
    LayoutOptions options;
    options.tile = 16;
    options.max_seq_len = 120;
    options.fewer_queries = mask.window % 2 == 1;
    const RandomLayout r = random_layout(rng, options);
    SCOPED_TRACE(r.describe());
    check_against_reference(r.layout, mask, {2, 1, 40}, DType::f32, rng, 16);
    check_against_reference(r.layout, mask, {4, 2, 64}, DType::bf16, rng, 16);
  }
}

// Tensors of element type E (float or bf16 bits) laid out with arbitrary strides.
template <typename E>
E to_element(float x) {
  if constexpr (std::is_same_v<E, float>) {
    return x;
  } else {
    return core::float_to_bf16_bits(x);
  }
}

// q, k and v read in place from one fused [T, Hq + 2 Hkv, D] buffer, dout head-major
// [Hq, T, D], out written into every other D-slot of a [T, Hq, 2D] buffer and dq, dk, dv into
// a fused gradient buffer: the same bits as dense tensors.
template <typename E>
void check_strided_matches_dense(const AttentionLayout& layout, const Mask& mask,
                                 const AttentionDims& dims, const Inputs& in,
                                 const KernelOptions& options) {
  const DType dtype = std::is_same_v<E, float> ? DType::f32 : DType::bf16;
  const std::int64_t T = layout.total_tokens();
  const int hq = dims.heads_q, hkv = dims.heads_kv, d = dims.head_dim;
  const std::int64_t fused = static_cast<std::int64_t>(hq + 2 * hkv) * d;
  const BlockPlan plan = BlockPlan::build(layout, mask, 32);
  const KernelRun dense = run_kernels(plan, dims, dtype, in, options);

  const E nan = to_element<E>(std::numeric_limits<float>::quiet_NaN());
  std::vector<E> qkv(T * fused, nan), dout(in.dout.size(), nan), out(T * hq * 2 * d, nan),
      grads(T * fused, nan);
  std::vector<float> lse(T * hq, std::numeric_limits<float>::quiet_NaN());
  for (std::int64_t t = 0; t < T; ++t) {
    for (int c = 0; c < hq * d; ++c) {
      qkv[t * fused + c] = to_element<E>(in.q[t * hq * d + c]);
      const int h = c / d;
      dout[(h * T + t) * d + c % d] = to_element<E>(in.dout[t * hq * d + c]);
    }
    for (int c = 0; c < hkv * d; ++c) {
      qkv[t * fused + hq * d + c] = to_element<E>(in.k[t * hkv * d + c]);
      qkv[t * fused + (hq + hkv) * d + c] = to_element<E>(in.v[t * hkv * d + c]);
    }
  }
  const Strides in_rows{fused, d}, out_rows{2LL * hq * d, 2LL * d}, head_major{d, T * d};
  forward(
      plan, dims,
      {dtype, qkv.data(), qkv.data() + hq * d, qkv.data() + (hq + hkv) * d, out.data(), lse.data()},
      options, {in_rows, in_rows, in_rows, out_rows});
  backward(
      plan, dims,
      {dtype, qkv.data(), qkv.data() + hq * d, qkv.data() + (hq + hkv) * d, out.data(), dout.data(),
       lse.data(), grads.data(), grads.data() + hq * d, grads.data() + (hq + hkv) * d},
      options, {in_rows, in_rows, in_rows, out_rows, head_major, in_rows, in_rows, in_rows});

  const auto bits = [](const Buffer& b, std::size_t i) -> E {
    if constexpr (std::is_same_v<E, float>) {
      return b.f32[i];
    } else {
      return b.bf16[i];
    }
  };
  const auto same = [](E a, E b) { return std::memcmp(&a, &b, sizeof(E)) == 0; };
  ASSERT_EQ(std::memcmp(lse.data(), dense.lse.data(), lse.size() * sizeof(float)), 0) << "lse";
  for (std::int64_t t = 0; t < T; ++t) {
    for (int c = 0; c < hq * d; ++c) {
      const std::size_t i = t * hq * d + c;
      ASSERT_TRUE(same(out[t * 2 * hq * d + (c / d) * 2 * d + c % d], bits(dense.out, i)))
          << "out " << t << " " << c;
      ASSERT_TRUE(same(out[t * 2 * hq * d + (c / d) * 2 * d + d + c % d], nan))
          << "out gap written " << t << " " << c;
      ASSERT_TRUE(same(grads[t * fused + c], bits(dense.dq, i))) << "dq " << t << " " << c;
    }
    for (int c = 0; c < hkv * d; ++c) {
      const std::size_t i = t * hkv * d + c;
      ASSERT_TRUE(same(grads[t * fused + hq * d + c], bits(dense.dk, i))) << "dk " << t;
      ASSERT_TRUE(same(grads[t * fused + (hq + hkv) * d + c], bits(dense.dv, i))) << "dv " << t;
    }
  }
}

TEST_F(Kernels, StridedTensorsGiveTheDenseBits) {
  LayoutOptions options;
  options.max_seq_len = 150;
  const RandomLayout r = random_layout(rng, options);
  SCOPED_TRACE(r.describe());
  const AttentionDims dims{4, 2, 40};
  for (const DType dtype : {DType::f32, DType::bf16}) {
    for (const KernelPath& path : runnable_paths(dtype)) {
      PathOverride guard(path);
      SCOPED_TRACE("kernels " + path.name);
      for (MaskKind mask : kMasks) {
        SCOPED_TRACE(to_string(mask));
        const Inputs in = random_inputs(rng, r.total_tokens(), dims, dtype);
        if (dtype == DType::f32) {
          check_strided_matches_dense<float>(r.layout, mask, dims, in, with_path({}, path));
        } else {
          check_strided_matches_dense<std::uint16_t>(r.layout, mask, dims, in, with_path({}, path));
        }
      }
    }
  }
}

TEST_F(Kernels, RejectsNegativeStrides) {
  const auto layout = AttentionLayout::from_document_lengths({{20}}, 0);
  const BlockPlan plan = BlockPlan::build(layout, MaskKind::causal);
  std::vector<float> x(20 * 64, 1.0f), out(20 * 64, 7.0f), lse(20, 7.0f);
  ForwardStrides strides;
  strides.k.token = -64;
  try {
    forward(plan, {1, 1, 64}, {DType::f32, x.data(), x.data(), x.data(), out.data(), lse.data()},
            {}, strides);
    ADD_FAILURE() << "negative stride accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'k'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(out[0], 7.0f);
}

// --- NaN propagation (kernels.h): a non-finite input reaches exactly the outputs the mask
// lets it reach, as NaN; every other output keeps its clean value.

enum class Input { q, k, v, dout, out, lse };

struct Poison {
  Input input;
  std::int64_t token;  // query row (q, dout, out, lse) or key row (k, v)
  int head;            // query head (q, dout, out, lse) or kv head (k, v)
  int dim;
  float value;  // NaN or +-inf
};

// Which (row, head) outputs the poisons must reach, from the oracle mask alone.
struct Reach {
  std::vector<char> fwd_rows, bwd_rows;  // [Tq, Hq]: out/lse, dq
  std::vector<char> keys;                // [Tk, Hkv]: dk, dv
};

Reach expected_reach(const RandomLayout& r, const Mask& mask, const AttentionDims& dims,
                     const std::vector<Poison>& poisons) {
  const AttentionLayout& layout = r.layout;
  const std::int64_t tq = layout.total_q_tokens(), tk = layout.total_tokens();
  const int hq = dims.heads_q, hkv = dims.heads_kv, group = hq / hkv;
  std::vector<char> bad_key(tk * hkv, 0), bad_row(tq * hq, 0), bad_bwd_row(tq * hq, 0);
  for (const Poison& p : poisons) {
    if (p.input == Input::k || p.input == Input::v) bad_key[p.token * hkv + p.head] = 1;
    if (p.input == Input::q) bad_row[p.token * hq + p.head] = 1;
    if (p.input != Input::k && p.input != Input::v) bad_bwd_row[p.token * hq + p.head] = 1;
  }
  Reach reach{std::vector<char>(tq * hq, 0), std::vector<char>(tq * hq, 0),
              std::vector<char>(tk * hkv, 0)};
  for (int b = 0; b < layout.num_sequences(); ++b) {
    for (std::int32_t i = 0; i < layout.q_len(b); ++i) {
      const std::int64_t row = layout.q_begin(b) + i;
      for (int h = 0; h < hq; ++h) {
        bool sees_bad = false;
        for (std::int32_t j = 0; j < layout.seq_len(b); ++j) {
          sees_bad |= r.oracle_visible(mask, b, i, j) &&
                      bad_key[(layout.seq_begin(b) + j) * hkv + h / group];
        }
        const std::int64_t at = row * hq + h;
        reach.fwd_rows[at] = bad_row[at] || sees_bad;
        reach.bwd_rows[at] = reach.fwd_rows[at] || bad_bwd_row[at];
        if (!reach.bwd_rows[at]) continue;
        for (std::int32_t j = 0; j < layout.seq_len(b); ++j) {
          if (r.oracle_visible(mask, b, i, j))
            reach.keys[(layout.seq_begin(b) + j) * hkv + h / group] = 1;
        }
      }
    }
  }
  return reach;
}

// Row (row, head) of a [rows, heads, D] buffer is all NaN when `reached`, else equal (as a
// value, so -0 == +0) to the clean run's.
testing::AssertionResult rows_as_expected(const std::vector<double>& got,
                                          const std::vector<double>& clean,
                                          const std::vector<char>& reached, int d,
                                          const char* name) {
  for (std::size_t at = 0; at < reached.size(); ++at) {
    for (int c = 0; c < d; ++c) {
      const double x = got[at * d + c];
      if (reached[at] ? !std::isnan(x) : !(x == clean[at * d + c])) {
        return testing::AssertionFailure()
               << name << " row*head " << at << " col " << c << ": got " << x << ", expected "
               << (reached[at] ? "NaN" : "clean ") << (reached[at] ? 0.0 : clean[at * d + c]);
      }
    }
  }
  return testing::AssertionSuccess();
}

TEST_F(Kernels, NonFiniteInputsReachExactlyTheOutputsTheMaskAllows) {
  const AttentionDims dims{4, 2, 40};
  const int hq = dims.heads_q, hkv = dims.heads_kv, d = dims.head_dim;
  const std::vector<Mask> masks = test_support::mask_variants(7);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (int trial = 0; trial < 12; ++trial) {
    const Mask mask = masks[std::uniform_int_distribution<std::size_t>(0, masks.size() - 1)(rng)];
    const DType dtype = trial % 2 == 0 ? DType::f32 : DType::bf16;
    LayoutOptions options;
    options.tile = 16;
    options.min_sequences = 2;
    options.max_seq_len = 90;
    options.fewer_queries = trial % 3 == 1;
    const RandomLayout r = random_layout(rng, options);
    const AttentionLayout& layout = r.layout;
    const std::int64_t tq = layout.total_q_tokens(), tk = layout.total_tokens();
    SCOPED_TRACE(testing::Message() << "trial " << trial << " " << test_support::describe_mask(mask)
                                    << " " << core::to_string(dtype) << " " << r.describe());
    const Inputs clean = random_inputs(rng, tq, dims, dtype, tk);
    const BlockPlan plan = BlockPlan::build(layout, mask, 16);

    // One to three poisons, in any input, each NaN or an infinity.
    std::vector<Poison> poisons;
    const int count = std::uniform_int_distribution<int>(1, 3)(rng);
    for (int p = 0; p < count; ++p) {
      const auto input = static_cast<Input>(std::uniform_int_distribution<int>(0, 5)(rng));
      const bool key = input == Input::k || input == Input::v;
      poisons.push_back({input,
                         std::uniform_int_distribution<std::int64_t>(0, (key ? tk : tq) - 1)(rng),
                         std::uniform_int_distribution<int>(0, (key ? hkv : hq) - 1)(rng),
                         std::uniform_int_distribution<int>(0, d - 1)(rng),
                         specials[std::uniform_int_distribution<int>(0, 2)(rng)]});
    }
    Inputs poisoned = clean;
    for (const Poison& p : poisons) {
      if (p.input == Input::q) poisoned.q[(p.token * hq + p.head) * d + p.dim] = p.value;
      if (p.input == Input::k) poisoned.k[(p.token * hkv + p.head) * d + p.dim] = p.value;
      if (p.input == Input::v) poisoned.v[(p.token * hkv + p.head) * d + p.dim] = p.value;
      if (p.input == Input::dout) poisoned.dout[(p.token * hq + p.head) * d + p.dim] = p.value;
    }
    const Reach reach = expected_reach(r, mask, dims, poisons);
    // One thread runs the fused backward; 8 threads, more than sequences x kv heads (<= 6), key
    // tiles in turn.
    const KernelOptions thread_options{0.0f, trial % 4 < 2 ? 1 : 8};

    for (const KernelPath& path : runnable_paths(dtype)) {
      PathOverride guard(path);
      SCOPED_TRACE("kernels " + path.name);
      const KernelOptions kernel_options = with_path(thread_options, path);
      const KernelRun base = run_kernels(plan, dims, dtype, clean, with_path({}, path));
      const Results want = base.to_results();
      // Forward on the poisoned q, k, v.
      const Buffer q(dtype, poisoned.q), k(dtype, poisoned.k), v(dtype, poisoned.v),
          dout(dtype, poisoned.dout);
      Buffer out(dtype, clean.q.size());
      std::vector<float> lse(tq * hq, 0.0f);
      forward(plan, dims, {dtype, q.data(), k.data(), v.data(), out.data(), lse.data()},
              kernel_options);
      std::vector<char> lse_reach(tq * hq);
      for (std::int64_t t = 0; t < tq; ++t) {
        for (int h = 0; h < hq; ++h)
          lse_reach[h * tq + t] = reach.fwd_rows[t * hq + h];
      }
      EXPECT_TRUE(rows_as_expected(out.to_double(), want.out, reach.fwd_rows, d, "out"));
      EXPECT_TRUE(rows_as_expected(std::vector<double>(lse.begin(), lse.end()), want.lse, lse_reach,
                                   1, "lse"));
      // Backward on the poisoned inputs, from the clean out and lse with their own poisons.
      Buffer out_in = base.out;
      std::vector<float> lse_in = base.lse;
      for (const Poison& p : poisons) {
        const std::size_t at = (p.token * hq + p.head) * d + p.dim;
        if (p.input == Input::out) {
          if (dtype == DType::f32) {
            out_in.f32[at] = p.value;
          } else {
            out_in.bf16[at] = core::float_to_bf16_bits(p.value);
          }
        }
        if (p.input == Input::lse) lse_in[p.head * tq + p.token] = p.value;
      }
      // An lse of -inf is a row that sees nothing, not a poison: use NaN there instead.
      for (const Poison& p : poisons) {
        if (p.input == Input::lse && p.value < 0.0f)
          lse_in[p.head * tq + p.token] = std::numeric_limits<float>::quiet_NaN();
      }
      Buffer dq(dtype, clean.q.size()), dk(dtype, clean.k.size()), dv(dtype, clean.v.size());
      backward(plan, dims,
               {dtype, q.data(), k.data(), v.data(), out_in.data(), dout.data(), lse_in.data(),
                dq.data(), dk.data(), dv.data()},
               kernel_options);
      EXPECT_TRUE(rows_as_expected(dq.to_double(), want.dq, reach.bwd_rows, d, "dq"));
      EXPECT_TRUE(rows_as_expected(dk.to_double(), want.dk, reach.keys, d, "dk"));
      EXPECT_TRUE(rows_as_expected(dv.to_double(), want.dv, reach.keys, d, "dv"));
    }
  }
}

// Bad dims and null tensors throw anchorctx::Error and leave every output as it was.
TEST_F(Kernels, RejectsBadArgumentsWithoutWriting) {
  const auto layout = AttentionLayout::from_document_lengths({{20, 12}}, 1);
  const BlockPlan plan = BlockPlan::build(layout, MaskKind::anchor);
  const std::size_t t = layout.total_tokens();
  constexpr float kSentinel = 7.0f;
  // Big enough for every shape tried below (up to Hq=4, Hkv=4, D=264).
  const std::size_t n = t * 4 * 264;
  std::vector<float> q(n, 0.5f), k(n, 0.25f), v(n, 1.0f), dout(n, 1.0f), out_in(n, 0.1f),
      lse_in(t * 4, 1.0f);
  std::vector<float> out(n, kSentinel), lse(t * 4, kSentinel), dq(n, kSentinel), dk(n, kSentinel),
      dv(n, kSentinel);
  const auto untouched = [&] {
    for (const auto* x : {&out, &lse, &dq, &dk, &dv}) {
      for (float value : *x) {
        if (value != kSentinel) return false;
      }
    }
    return true;
  };
  const ForwardTensors fwd{DType::f32, q.data(), k.data(), v.data(), out.data(), lse.data()};
  const BackwardTensors bwd{DType::f32,  q.data(),      k.data(),  v.data(),  out_in.data(),
                            dout.data(), lse_in.data(), dq.data(), dk.data(), dv.data()};

  const AttentionDims bad_dims[] = {
      {3, 2, 64},   // heads_q not a multiple of heads_kv
      {2, 4, 64},   // more kv heads than q heads
      {4, 0, 64},   // no kv heads
      {0, 2, 64},   // no q heads
      {4, 2, 0},    // head_dim 0
      {4, 2, 12},   // not a multiple of 8
      {4, 2, 264},  // above 256
      {4, 2, -8},   // negative
  };
  for (const AttentionDims& dims : bad_dims) {
    SCOPED_TRACE(testing::Message()
                 << "Hq=" << dims.heads_q << " Hkv=" << dims.heads_kv << " D=" << dims.head_dim);
    EXPECT_THROW(forward(plan, dims, fwd), Error);
    EXPECT_THROW(backward(plan, dims, bwd), Error);
    ASSERT_TRUE(untouched());
  }

  const AttentionDims dims{4, 2, 64};
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(testing::Message() << "forward tensor " << i << " null");
    ForwardTensors f = fwd;
    if (i == 0) f.q = nullptr;
    if (i == 1) f.k = nullptr;
    if (i == 2) f.v = nullptr;
    if (i == 3) f.out = nullptr;
    if (i == 4) f.lse = nullptr;
    EXPECT_THROW(forward(plan, dims, f), Error);
    ASSERT_TRUE(untouched());
  }
  for (int i = 0; i < 9; ++i) {
    SCOPED_TRACE(testing::Message() << "backward tensor " << i << " null");
    BackwardTensors b = bwd;
    if (i == 0) b.q = nullptr;
    if (i == 1) b.k = nullptr;
    if (i == 2) b.v = nullptr;
    if (i == 3) b.out = nullptr;
    if (i == 4) b.dout = nullptr;
    if (i == 5) b.lse = nullptr;
    if (i == 6) b.dq = nullptr;
    if (i == 7) b.dk = nullptr;
    if (i == 8) b.dv = nullptr;
    EXPECT_THROW(backward(plan, dims, b), Error);
    ASSERT_TRUE(untouched());
  }
  // And the good call still works with the same buffers (so the throws were about the
  // arguments, not something else).
  EXPECT_NO_THROW(forward(plan, dims, fwd));
  EXPECT_FALSE(untouched());
}

}  // namespace
}  // namespace anchorctx::attention
