// Dense float64 attention: the plain definition, for checking the kernels. O(L^2) memory per
// sequence and head; never used on a hot path.
#pragma once

#include <span>

#include "anchorctx/attention/kernels.h"
#include "anchorctx/attention/layout.h"
#include "anchorctx/attention/mask.h"

namespace anchorctx::attention {

// Shapes as in kernels.h, all float64. `scale` 0 means 1/sqrt(head_dim).
void reference_forward(const AttentionLayout& layout, MaskKind mask, const AttentionDims& dims,
                       std::span<const double> q, std::span<const double> k,
                       std::span<const double> v, std::span<double> out, std::span<double> lse,
                       double scale = 0.0);

// Gradients of sum(out * dout) with respect to q, k and v.
void reference_backward(const AttentionLayout& layout, MaskKind mask, const AttentionDims& dims,
                        std::span<const double> q, std::span<const double> k,
                        std::span<const double> v, std::span<const double> dout,
                        std::span<double> dq, std::span<double> dk, std::span<double> dv,
                        double scale = 0.0);

}  // namespace anchorctx::attention
