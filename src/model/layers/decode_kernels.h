// The products of token-by-token decoding (model::LlamaInference), for one token or for several
// sequences stepped together. Decoding is bound by reading the weights (and the KV cache): each
// step reads every weight for a handful of rows, so these read each weight row once for the
// whole batch.
//
// Each output element is summed in one fixed order that depends on nothing but its own inputs:
// not the batch it is computed in, its place in it, the rows around it or the thread count. A
// sequence decoded alone or beside others therefore gets the same bits, which is what keeps an
// evaluation's answers independent of how its prompts were batched (eval/engine.h). AVX-512 or
// AVX2 where selected (core/isa.h), with fused multiply-adds in the same lanes and order, hence
// the same bits; plain loops otherwise (unfused: they agree with the others to rounding, not to
// the bit).
#pragma once

#include <cstdint>

namespace anchorctx::model::detail {

// out[b * ldo + r] = sum_c w[r * ldw + c] * x[b * ldx + c] (+ bias[r] when bias is not null),
// for r < rows, b < batch. The sum: sixteen lanes, lane j over the columns c = j (mod 16) in
// increasing order, the lanes added pairwise (j + j+8, then + j+4, + j+2, + j+1), then the bias.
// Threads split the rows when the work is large and the call is not already inside a parallel
// region; `parallel` false keeps it on the calling thread.
void batched_matvec(const float* w, std::int64_t ldw, const float* bias, std::int64_t rows,
                    std::int64_t cols, const float* x, std::int64_t ldx, std::int64_t batch,
                    float* out, std::int64_t ldo, bool parallel = true);
// The same with a weight of bf16 values given as their bits: each widened to float32 exactly, so
// the result has the bits of the float32 call on those values, from half the memory reads.
void batched_matvec(const std::uint16_t* w, std::int64_t ldw, const float* bias, std::int64_t rows,
                    std::int64_t cols, const float* x, std::int64_t ldx, std::int64_t batch,
                    float* out, std::int64_t ldo, bool parallel = true);

// out[h * ldo + d] = sum_t p[h * ldp + t] * v[t * ldv + d], for h < heads, d < dim: the
// probability-weighted sum of `length` value rows shared by `heads` heads (GQA), summed over t
// in increasing order. On the calling thread.
void weighted_rows_sum(const float* p, std::int64_t ldp, std::int64_t heads, const float* v,
                       std::int64_t ldv, std::int64_t length, std::int64_t dim, float* out,
                       std::int64_t ldo);

}  // namespace anchorctx::model::detail
