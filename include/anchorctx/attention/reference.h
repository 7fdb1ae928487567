// Dense float64 attention: the plain definition, for checking the kernels. O(L^2) memory per
// sequence and head; never used on a hot path.
#pragma once

#include <span>

#include "anchorctx/attention/kernels.h"
#include "anchorctx/attention/layout.h"
#include "anchorctx/attention/mask.h"

namespace anchorctx::attention {

// Shapes as in kernels.h (queries [Tq], keys [Tk]), dense, all float64. `scale` 0 means
// 1/sqrt(head_dim).
void reference_forward(const AttentionLayout& layout, const Mask& mask, const AttentionDims& dims,
                       std::span<const double> q, std::span<const double> k,
                       std::span<const double> v, std::span<double> out, std::span<double> lse,
                       double scale = 0.0);

// Gradients of sum(out * dout) with respect to q, k and v.
void reference_backward(const AttentionLayout& layout, const Mask& mask, const AttentionDims& dims,
                        std::span<const double> q, std::span<const double> k,
                        std::span<const double> v, std::span<const double> dout,
                        std::span<double> dq, std::span<double> dk, std::span<double> dv,
                        double scale = 0.0);

// The scale on which a float kernel's rounding errors live, per element of out, dq, dk and dv:
// each output recomputed with every product replaced by the product of absolute values (|q||k|
// for a score, |dO||v| for dP, |dO||O| for rowsum(dO O), ...), each probability P_ij weighted by
// its own sensitivity 1 + |S|_ij + max_j |S|_ij (an error in a score moves P relatively), and
// dS = P (dP - rowsum(dO O)) taken as the sizes of its operands, not of the difference. A kernel
// working in precision eps is within a small multiple of eps * scale on every element, however
// much the true value cancels (a one-token document's dq is exactly 0, its kernel value is not).
// lse_scale ([heads_q, tokens] like lse): 1 + max_j |S|_ij, the size of the row's largest score.
void reference_error_scales(const AttentionLayout& layout, const Mask& mask,
                            const AttentionDims& dims, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            std::span<const double> dout, std::span<double> out_scale,
                            std::span<double> lse_scale, std::span<double> dq_scale,
                            std::span<double> dk_scale, std::span<double> dv_scale,
                            double scale = 0.0);

}  // namespace anchorctx::attention
