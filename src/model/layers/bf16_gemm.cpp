// The native bf16 GEMM of the training layers: float32 operands (bf16 values in bf16 precision)
// rounded to bf16 bits, multiplied by oneDNN's matmul (brgemm kernels on AVX512_BF16:
// `vdpbf16ps`, float32 accumulation) into a float32 C. Without oneDNN only the emulated path
// exists and bf16_gemm refuses to run.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/cpu_info.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/isa.h"
#include "anchorctx/core/parallel.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"
#include "model/layers/gemm.h"

#ifdef ANCHORCTX_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <tuple>
#endif

namespace anchorctx::model {

bool native_bf16_available(std::string* why_not) {
  const auto no = [&](const char* reason) {
    if (why_not) *why_not = reason;
    return false;
  };
#ifndef ANCHORCTX_HAVE_DNNL
  return no("anchorctx was built without oneDNN (libdnnl-dev)");
#else
  if (core::selected_isa() < core::Isa::avx512)
    return no(core::best_cpu_isa() < core::Isa::avx512
                  ? "the CPU lacks AVX-512"
                  : "ANCHORCTX_ISA lowers the instruction set below avx512");
  if (!core::cpu_info().avx512_bf16) return no("the CPU lacks AVX512_BF16");
  return true;
#endif
}

Bf16Compute default_bf16_compute() {
  return native_bf16_available() ? Bf16Compute::native : Bf16Compute::emulated;
}

#ifdef ANCHORCTX_HAVE_DNNL
namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One matmul C [m, n] = A [m, k] B [k, n] (+ C), on packed bf16 A and B stored transposed or
// not, created for `threads` threads (1: the thread-invariant blocks; oneDNN sizes its work
// split by the thread count at creation).
struct Shape {
  std::int64_t m, n, k;
  bool ta, tb;
  std::int64_t lda, ldb, ldc;  // of the packed bf16 A, B and of C
  bool accumulate;
  int threads;
  auto operator<=>(const Shape&) const = default;
};

struct Matmul {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c;
  std::size_t scratch_bytes = 0;
};

Matmul create(const Shape& s) {
  using dnnl::memory;
  const memory::desc a({s.m, s.k}, memory::data_type::bf16,
                       s.ta ? memory::dims{1, s.lda} : memory::dims{s.lda, 1});
  const memory::desc b({s.k, s.n}, memory::data_type::bf16,
                       s.tb ? memory::dims{1, s.ldb} : memory::dims{s.ldb, 1});
  const memory::desc c({s.m, s.n}, memory::data_type::f32, memory::dims{s.ldc, 1});
  dnnl::primitive_attr attr;
  // Scratch memory is ours (per call), so blocks may run concurrently on several threads.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (s.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  const int threads = omp_get_max_threads();
  if (s.threads != threads) omp_set_num_threads(s.threads);
  struct Restore {
    int threads;
    bool on;
    ~Restore() {
      if (on) omp_set_num_threads(threads);
    }
  } restore{threads, s.threads != threads};
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, cpu_engine());
  return {dnnl::matmul(pd), a, b, c, pd.scratchpad_desc().get_size()};
}

// Primitive creation costs 1-60 ms; a training step reuses a handful of shapes.
const Matmul& cached(const Shape& s) {
  static std::mutex mutex;
  static std::map<Shape, std::unique_ptr<Matmul>> cache;
  const std::lock_guard lock(mutex);
  std::unique_ptr<Matmul>& slot = cache[s];
  if (!slot) slot = std::make_unique<Matmul>(create(s));
  return *slot;
}

void execute(const Matmul& mm, const std::uint16_t* a, const std::uint16_t* b, float* c) {
  thread_local dnnl::stream stream(cpu_engine());
  thread_local std::vector<std::uint8_t> scratch;
  scratch.resize(std::max<std::size_t>(mm.scratch_bytes, 1));
  using dnnl::memory;
  const memory::desc scratch_desc({static_cast<memory::dim>(mm.scratch_bytes)},
                                  memory::data_type::u8, memory::dims{1});
  mm.primitive.execute(
      stream, {{DNNL_ARG_SRC, memory(mm.a, cpu_engine(), const_cast<std::uint16_t*>(a))},
               {DNNL_ARG_WEIGHTS, memory(mm.b, cpu_engine(), const_cast<std::uint16_t*>(b))},
               {DNNL_ARG_DST, memory(mm.c, cpu_engine(), c)},
               {DNNL_ARG_SCRATCHPAD, memory(scratch_desc, cpu_engine(), scratch.data())}});
  stream.wait();
}

}  // namespace
#endif

namespace detail {

void bf16_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::int64_t m, std::int64_t n,
               std::int64_t k, const float* a, std::int64_t lda, const std::uint16_t* a16,
               const float* b, std::int64_t ldb, const std::uint16_t* b16, float beta, float* c,
               std::int64_t ldc) {
  std::string why;
  if (!native_bf16_available(&why)) fail("--bf16-compute native is unavailable: {}", why);
  require(beta == 0.0f || beta == 1.0f, "bf16_gemm: beta {} is neither 0 nor 1", beta);
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (beta == 0.0f)
      for (std::int64_t i = 0; i < m; ++i)
        std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
#ifdef ANCHORCTX_HAVE_DNNL
  const OpScope scope(Op::gemm);
  const bool ta_ = ta != CblasNoTrans, tb_ = tb != CblasNoTrans;
  // The stored A is [k, m] when transposed, else [m, k]; B is [n, k] or [k, n]. An operand
  // without the caller's bits is converted into a packed copy (leading dimension = its columns).
  thread_local std::vector<std::uint16_t> a_packed, b_packed;
  const auto bits = [](const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                       std::vector<std::uint16_t>& packed) {
    const OpScope convert(Op::gemm_bf16_convert);
    packed.resize(static_cast<std::size_t>(rows * cols));
    float_to_bf16_rows(src, rows, cols, ld, packed.data(), cols);
    return packed.data();
  };
  const std::int64_t a_cols = ta_ ? m : k, b_cols = tb_ ? k : n;
  const std::uint16_t* const a_p = a16 ? a16 : bits(a, ta_ ? k : m, a_cols, lda, a_packed);
  const std::uint16_t* const b_p = b16 ? b16 : bits(b, tb_ ? n : k, b_cols, ldb, b_packed);
  const std::int64_t lda16 = a16 ? lda : a_cols, ldb16 = b16 ? ldb : b_cols;
  const bool accumulate = beta != 0.0f;

  if (!thread_invariant_gemms()) {
    execute(cached({m, n, k, ta_, tb_, lda16, ldb16, ldc, accumulate, omp_get_max_threads()}), a_p,
            b_p, c);
    return;
  }
  // Thread-invariant: as sgemm_fixed_blocks, C splits into shape-determined blocks of rows (or
  // columns), each computed by a single-threaded matmul, so which thread runs a block and how
  // many there are change no bit.
  const bool split_rows = m >= n;
  const std::int64_t dim = split_rows ? m : n;
  const std::int64_t block = std::max<std::int64_t>(128, ((dim + 255) / 256 + 15) / 16 * 16);
  const std::int64_t blocks = (dim + block - 1) / block;
  const auto shape = [&](std::int64_t len) {
    return split_rows ? Shape{len, n, k, ta_, tb_, lda16, ldb16, ldc, accumulate, 1}
                      : Shape{m, len, k, ta_, tb_, lda16, ldb16, ldc, accumulate, 1};
  };
  // Only a dimension of several blocks has full ones: a block wider than the whole dimension
  // (under 128) would describe an operand wider than its leading dimension, which oneDNN
  // refuses ("could not construct a memory descriptor using strides").
  const Matmul* const full = blocks > 1 ? &cached(shape(block)) : nullptr;
  const Matmul& last = cached(shape(dim - (blocks - 1) * block));
  const bool parallel =
      static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) > 65536.0;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (std::int64_t i = 0; i < blocks; ++i) {
    const std::int64_t p0 = i * block;
    const Matmul& mm = i + 1 == blocks ? last : *full;
    if (split_rows)
      execute(mm, ta_ ? a_p + p0 : a_p + p0 * lda16, b_p, c + p0 * ldc);
    else
      execute(mm, a_p, tb_ ? b_p + p0 * ldb16 : b_p + p0, c + p0);
  }
#else
  (void)ta, (void)tb, (void)a, (void)lda, (void)a16, (void)b, (void)ldb, (void)b16;
#endif
}

}  // namespace detail

double measure_bf16_gemm_gflops(int n, int threads, int repeat, double warm_up_ms) {
  require(n >= 1, "bf16 GEMM probe: size {} must be at least 1", n);
  require(repeat >= 1, "bf16 GEMM probe: repeat {} must be at least 1", repeat);
  if (!native_bf16_available()) return 0.0;
#ifdef ANCHORCTX_HAVE_DNNL
  const std::int64_t n64 = n;
  const std::size_t elems = static_cast<std::size_t>(n64 * n64);
  std::vector<std::uint16_t> a(elems), b(elems);
  std::vector<float> c(elems, 0.0f);
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : a)
    x = core::float_to_bf16_bits(dist(rng));
  for (auto& x : b)
    x = core::float_to_bf16_bits(dist(rng));
  const int previous = omp_get_max_threads();
  omp_set_num_threads(core::resolve_threads(threads));
  // Its own primitive (created for this thread count), not the layers' cache.
  const Matmul mm =
      create({n64, n64, n64, false, false, n64, n64, n64, false, omp_get_max_threads()});
  const auto run = [&] { execute(mm, a.data(), b.data(), c.data()); };
  core::warm_up(warm_up_ms, run);
  const std::vector<double> ms = core::time_runs_ms(repeat, run);
  omp_set_num_threads(previous);
  return 2.0 * static_cast<double>(n) * n * n / (core::median(ms) * 1e-3) * 1e-9;
#else
  (void)threads, (void)warm_up_ms;
  return 0.0;
#endif
}

}  // namespace anchorctx::model
