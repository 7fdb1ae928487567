// The element-wise loops of the training layers (the LM head's softmax, SwiGLU, bf16 rounding,
// residual adds), sixteen floats at a time on AVX-512 where it is selected (core/isa.h), scalar
// otherwise. The vector exp is Cephes' expf polynomial (within 2 float32 ulps of std::exp over the
// whole range; tests/model/vector_math_test.cpp); NaN stays NaN, -inf gives 0. Results do not
// depend on the thread count: each call is one row or one element range, summed in a fixed order.
#pragma once

#include <cstdint>

namespace anchorctx::model::detail {

// The largest of x[0, n) (n >= 1); NaNs are skipped unless all are NaN.
float max_of(const float* x, std::int64_t n);

// Sum over i of exp(x[i] - shift), in double (per-lane partial sums added in a fixed order).
// out, when not null, receives each exp(x[i] - shift) (out may be x).
double exp_shifted_sum(const float* x, std::int64_t n, float shift, float* out);

// SwiGLU forward: h[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)); with round_bf16,
// silu and the product each rounded to bf16 (transformers' bf16 order).
void swiglu_forward_range(const float* gate, const float* up, std::int64_t n, bool round_bf16,
                          float* h);

// SwiGLU backward: dup = dh * silu(g), dgate = dh * up * s * (1 + g (1 - s)) with s = sigmoid(g).
void swiglu_backward_range(const float* gate, const float* up, const float* dh, std::int64_t n,
                           float* dgate, float* dup);

// p[i] = core::round_to_bf16(p[i]) (round to nearest even, NaN to the canonical quiet NaN).
void round_bf16_range(float* p, std::int64_t n);

// out[i] = a[i] + b[i], rounded to bf16 when asked (out may be a or b).
void add_range(const float* a, const float* b, std::int64_t n, bool round_bf16, float* out);

}  // namespace anchorctx::model::detail
