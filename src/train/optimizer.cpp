// AdamW and gradient clipping (see optimizer.h).
//
// The update reproduces torch.optim.AdamW's single-tensor path (torch/optim/adam.py,
// _single_tensor_adam with decoupled_weight_decay) operation by operation. The Python scalars are
// doubles, and torch converts each to float32 where it meets a tensor:
//
//   param.mul_(1 - lr * wd)                         p = p * float(1 - lr*wd)
//   exp_avg.lerp_(grad, 1 - beta1)                  m = fma(w, g - m, m)         (w < 0.5)
//                                                   m = fma(w - 1, g - m, g)     (w >= 0.5)
//   exp_avg_sq.mul_(beta2)                          v = v * float(beta2)
//             .addcmul_(grad, grad, value=1-beta2)  v = fma(float(1 - beta2) * g, g, v)
//   bias_correction1 = 1 - beta1 ** step            (double; pow as Python's float ** float)
//   step_size = lr / bias_correction1
//   bias_correction2_sqrt = bias_correction2 ** 0.5
//   denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)  d = sqrt(v) / float(bc2_sqrt) + float(eps)
//   param.addcdiv_(exp_avg, denom, value=-step_size)  p = p + (float(-step_size) * m) / d
//
// The fused multiply-adds are those of torch's vectorised CPU kernels (lerp and addcmul on AVX2 and
// AVX-512 builds, tails included, checked element by element against torch 2.15). One difference
// is deliberate: torch's CPU build takes the square root from MKL's vsSqrt, which is not correctly
// rounded (measured here: one ulp off for about 18% of inputs, on vectors of 8 or more); we use
// the IEEE square root, as torch's own vector kernels would. tests/train/optimizer_test.cpp shows
// both: bit equality with torch whose sqrt is correctly rounded, and the bound against torch as
// shipped.
//
// The element loop exists three times: AVX-512 and AVX2+FMA intrinsics (functions with a target
// attribute, chosen at run time) and a portable scalar loop (std::fma: the C library's, exact).
// Intrinsics rather than auto-vectorisation: GCC does not vectorise std::sqrt without
// -fno-math-errno, which a function attribute or pragma does not give. Each element's arithmetic
// is independent and the same in every path, so the bits depend neither on threads nor on the
// CPU (the test runs every path).
#include "anchorctx/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "anchorctx/core/error.h"
#include "anchorctx/core/isa.h"

namespace anchorctx::train {
namespace {

// The float32 constants of one step, converted from doubles as torch converts Python scalars.
struct StepConstants {
  float keep;      // 1 - lr * weight_decay, for decayed elements (1 elsewhere, exact)
  float w1;        // lerp weight 1 - beta1
  bool w1_small;   // |w1| < 0.5 selects torch's first lerp formula
  float beta2;     // exp_avg_sq.mul_(beta2)
  float c2;        // addcmul value 1 - beta2
  float bc2_sqrt;  // sqrt(1 - beta2^t), the divisor
  float eps;       // added after the division
  float neg_step;  // -lr / (1 - beta1^t)
};

// An empty asm the optimizer cannot see through: the value is rounded to float32 before it is
// used. GCC contracts `a * b + c` into a fused multiply-add whenever the target has one
// (-ffp-contract=fast is its default for C++), and torch rounds the weight-decay product first.
inline void round_here(float& x) {
#if defined(__x86_64__) && defined(__GNUC__)
  asm("" : "+x"(x));
#else
  volatile float stored = x;  // elsewhere: a store and a load, slower but as opaque
  x = stored;
#endif
}

// Elements [begin, end) of the update, one at a time (the portable path and the vector tails).
void update_scalar(float* p, const float* g, float* m, float* v, const unsigned char* decay,
                   std::size_t begin, std::size_t end, const StepConstants& c) {
  const float w1m1 = c.w1 - 1.0f;
  for (std::size_t i = begin; i < end; ++i) {
    float pd = p[i] * (decay[i] ? c.keep : 1.0f);
    round_here(pd);
    const float gi = g[i];
    const float diff = gi - m[i];
    const float mi = c.w1_small ? std::fma(c.w1, diff, m[i]) : std::fma(w1m1, diff, gi);
    float vb = v[i] * c.beta2;
    round_here(vb);
    const float vi = std::fma(c.c2 * gi, gi, vb);
    const float denom = std::sqrt(vi) / c.bc2_sqrt + c.eps;
    p[i] = pd + (c.neg_step * mi) / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define ANCHORCTX_ADAMW_X86 1

// The same arithmetic, 16 lanes at a time. Every intrinsic is one IEEE operation on each lane,
// so a lane's bits equal update_scalar's. (The maskz_ forms with every lane set: GCC 12 warns
// about the plain forms' undefined source register, bug 105593.)
__attribute__((target("avx512f"))) void update_avx512(float* p, const float* g, float* m, float* v,
                                                      const unsigned char* decay, std::size_t begin,
                                                      std::size_t end, const StepConstants& c) {
  const __m512 keep = _mm512_set1_ps(c.keep), one = _mm512_set1_ps(1.0f);
  const __m512 w1 = _mm512_set1_ps(c.w1), w1m1 = _mm512_set1_ps(c.w1 - 1.0f);
  const __m512 beta2 = _mm512_set1_ps(c.beta2), c2 = _mm512_set1_ps(c.c2);
  const __m512 bc2 = _mm512_set1_ps(c.bc2_sqrt), eps = _mm512_set1_ps(c.eps);
  const __m512 neg_step = _mm512_set1_ps(c.neg_step);
  constexpr __mmask16 kAll = 0xFFFF;
  std::size_t i = begin;
  for (; i + 16 <= end; i += 16) {
    const __m512i d = _mm512_maskz_cvtepu8_epi32(
        kAll, _mm_loadu_si128(reinterpret_cast<const __m128i*>(decay + i)));
    const __m512 mul = _mm512_mask_blend_ps(_mm512_test_epi32_mask(d, d), one, keep);
    __m512 pd = _mm512_mul_ps(_mm512_loadu_ps(p + i), mul);
    asm("" : "+v"(pd));
    const __m512 gi = _mm512_loadu_ps(g + i), mo = _mm512_loadu_ps(m + i);
    const __m512 diff = _mm512_sub_ps(gi, mo);
    const __m512 mi = c.w1_small ? _mm512_fmadd_ps(w1, diff, mo) : _mm512_fmadd_ps(w1m1, diff, gi);
    __m512 vb = _mm512_mul_ps(_mm512_loadu_ps(v + i), beta2);
    asm("" : "+v"(vb));
    const __m512 vi = _mm512_fmadd_ps(_mm512_mul_ps(c2, gi), gi, vb);
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_maskz_sqrt_ps(kAll, vi), bc2), eps);
    const __m512 upd = _mm512_div_ps(_mm512_mul_ps(neg_step, mi), denom);
    _mm512_storeu_ps(p + i, _mm512_add_ps(pd, upd));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
  }
  update_scalar(p, g, m, v, decay, i, end, c);
}

// 8 lanes (AVX2 + FMA).
__attribute__((target("avx2,fma"))) void update_avx2(float* p, const float* g, float* m, float* v,
                                                     const unsigned char* decay, std::size_t begin,
                                                     std::size_t end, const StepConstants& c) {
  const __m256 keep = _mm256_set1_ps(c.keep), one = _mm256_set1_ps(1.0f);
  const __m256 w1 = _mm256_set1_ps(c.w1), w1m1 = _mm256_set1_ps(c.w1 - 1.0f);
  const __m256 beta2 = _mm256_set1_ps(c.beta2), c2 = _mm256_set1_ps(c.c2);
  const __m256 bc2 = _mm256_set1_ps(c.bc2_sqrt), eps = _mm256_set1_ps(c.eps);
  const __m256 neg_step = _mm256_set1_ps(c.neg_step);
  const __m256i zero = _mm256_setzero_si256();
  std::size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256i d =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(decay + i)));
    const __m256 mask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(d, zero));
    __m256 pd = _mm256_mul_ps(_mm256_loadu_ps(p + i), _mm256_blendv_ps(one, keep, mask));
    asm("" : "+x"(pd));
    const __m256 gi = _mm256_loadu_ps(g + i), mo = _mm256_loadu_ps(m + i);
    const __m256 diff = _mm256_sub_ps(gi, mo);
    const __m256 mi = c.w1_small ? _mm256_fmadd_ps(w1, diff, mo) : _mm256_fmadd_ps(w1m1, diff, gi);
    __m256 vb = _mm256_mul_ps(_mm256_loadu_ps(v + i), beta2);
    asm("" : "+x"(vb));
    const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(c2, gi), gi, vb);
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
    const __m256 upd = _mm256_div_ps(_mm256_mul_ps(neg_step, mi), denom);
    _mm256_storeu_ps(p + i, _mm256_add_ps(pd, upd));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
  }
  update_scalar(p, g, m, v, decay, i, end, c);
}
#endif

using core::Isa;

using UpdateFn = void (*)(float*, const float*, float*, float*, const unsigned char*, std::size_t,
                          std::size_t, const StepConstants&);

UpdateFn update_function() {
  switch (core::selected_isa()) {
#ifdef ANCHORCTX_ADAMW_X86
    case Isa::avx512:
      return update_avx512;
    case Isa::avx2:
      return update_avx2;
#endif
    default:
      return update_scalar;
  }
}

// Blocks of this many elements are the unit of work: big enough to amortise the dispatch, and a
// fixed size so that gradient_norm's partial sums do not depend on the thread count.
constexpr std::size_t kBlock = kGradientNormBlock;

std::size_t block_count(std::size_t n) {
  return (n + kBlock - 1) / kBlock;
}

// Sum of squares of one block in double: eight interleaved partial sums (a fixed order the
// compiler may vectorise), then added in a fixed order.
double block_sum_squares(const float* x, std::size_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) {
      const double d = x[i + k];
      acc[k] += d * d;
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    const double d = x[i];
    acc[k] += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

AdamW::AdamW(const model::ParameterLayout& layout, AdamWOptions options)
    : AdamW(layout, options, 0, layout.total()) {}

AdamW::AdamW(const model::ParameterLayout& layout, AdamWOptions options, std::size_t begin,
             std::size_t end)
    : options_(options) {
  require(options.beta1 >= 0.0 && options.beta1 < 1.0, "AdamW: beta1 = {} is outside [0, 1)",
          options.beta1);
  require(options.beta2 >= 0.0 && options.beta2 < 1.0, "AdamW: beta2 = {} is outside [0, 1)",
          options.beta2);
  require(options.eps > 0.0, "AdamW: eps = {} must be positive", options.eps);
  require(options.weight_decay >= 0.0, "AdamW: weight_decay = {} must not be negative",
          options.weight_decay);
  const std::size_t total = layout.total();
  require(begin <= end && end <= total, "AdamW: slice [{}, {}) of a buffer of {}", begin, end,
          total);
  const std::size_t n = end - begin;
  decay_.assign(n, 0);
  for (const model::ParameterInfo& info : layout.params()) {
    require(info.offset + info.size <= total,
            "AdamW: parameter '{}' ends at {}, beyond the buffer ({})", info.name,
            info.offset + info.size, total);
    // The part of this parameter inside the slice.
    const std::size_t lo = std::max(begin, info.offset);
    const std::size_t hi = std::min(end, info.offset + info.size);
    if (info.decay && lo < hi)
      std::fill_n(decay_.begin() + static_cast<std::ptrdiff_t>(lo - begin), hi - lo, 1);
  }
  m_.assign(n, 0.0f);
  v_.assign(n, 0.0f);
}

void AdamW::step(std::span<float> params, std::span<const float> grads, double lr) {
  const std::size_t n = m_.size();
  require(params.size() == n, "AdamW::step: {} parameters, the optimizer holds {}", params.size(),
          n);
  require(grads.size() == n, "AdamW::step: {} gradients, the optimizer holds {}", grads.size(), n);
  require(std::isfinite(lr) && lr >= 0.0,
          "AdamW::step: learning rate {} is not a finite value >= 0", lr);
  ++step_;
  const auto t = static_cast<double>(step_);  // torch's step is a float tensor, read as a double
  const double beta1 = options_.beta1, beta2 = options_.beta2;
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  const double step_size = lr / bias_correction1;
  // Python's `x ** 0.5` is the C library's pow, which need not equal sqrt in the last bit.
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);
  StepConstants c{};
  c.keep = static_cast<float>(1.0 - lr * options_.weight_decay);
  c.w1 = static_cast<float>(1.0 - beta1);
  c.w1_small = std::fabs(c.w1) < 0.5f;
  c.beta2 = static_cast<float>(beta2);
  c.c2 = static_cast<float>(1.0 - beta2);
  c.bc2_sqrt = static_cast<float>(bias_correction2_sqrt);
  c.eps = static_cast<float>(options_.eps);
  c.neg_step = static_cast<float>(-step_size);

  float* p = params.data();
  const float* g = grads.data();
  float* m = m_.data();
  float* v = v_.data();
  const unsigned char* d = decay_.data();
  const auto blocks = static_cast<std::int64_t>(block_count(n));
  const UpdateFn update = update_function();
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::size_t begin = static_cast<std::size_t>(b) * kBlock;
    update(p, g, m, v, d, begin, std::min(n, begin + kBlock), c);
  }
}

void AdamW::restore(std::int64_t steps, std::span<const float> exp_avg,
                    std::span<const float> exp_avg_sq) {
  // step() counts on from here: INT64_MAX would overflow at the next one (load_checkpoint
  // bounds the count far lower; this keeps any other caller from the undefined behaviour).
  require(steps >= 0 && steps < std::numeric_limits<std::int64_t>::max(),
          "AdamW::restore: step count {} is outside [0, INT64_MAX)", steps);
  require(exp_avg.size() == m_.size(), "AdamW::restore: exp_avg has {} elements, expected {}",
          exp_avg.size(), m_.size());
  require(exp_avg_sq.size() == v_.size(), "AdamW::restore: exp_avg_sq has {} elements, expected {}",
          exp_avg_sq.size(), v_.size());
  std::copy(exp_avg.begin(), exp_avg.end(), m_.begin());
  std::copy(exp_avg_sq.begin(), exp_avg_sq.end(), v_.begin());
  step_ = steps;
}

std::vector<double> gradient_block_sums(std::span<const float> grads) {
  const std::size_t n = grads.size();
  const std::size_t blocks = block_count(n);
  std::vector<double> partial(blocks);
  const float* x = grads.data();
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < static_cast<std::int64_t>(blocks); ++b) {
    const std::size_t begin = static_cast<std::size_t>(b) * kBlock;
    partial[static_cast<std::size_t>(b)] =
        block_sum_squares(x + begin, std::min(kBlock, n - begin));
  }
  return partial;
}

double gradient_norm_from_block_sums(std::span<const double> block_sums) {
  double sum = 0.0;
  for (const double s : block_sums)
    sum += s;
  return std::sqrt(sum);
}

double gradient_norm(std::span<const float> grads) {
  return gradient_norm_from_block_sums(gradient_block_sums(grads));
}

double clip_gradients(std::span<float> grads, double max_norm) {
  const double norm = gradient_norm(grads);
  clip_gradients_with_norm(grads, norm, max_norm);
  return norm;
}

void clip_gradients_with_norm(std::span<float> grads, double norm, double max_norm) {
  if (!(max_norm > 0.0) || !std::isfinite(norm)) return;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return;
  const auto scale = static_cast<float>(coef);
  float* x = grads.data();
  const auto n = static_cast<std::int64_t>(grads.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i)
    x[i] *= scale;
}

}  // namespace anchorctx::train
