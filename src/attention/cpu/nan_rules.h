// The NaN rules of kernels.h, applied after the kernels: they stage every non-finite input
// row as zeros (so that 0 * inf never carries a NaN past the mask) and record it in a flag
// array [heads][tokens]; these functions then write NaN into exactly the outputs those rows
// reach through the mask. Compiled once (no vector code); they return at once when no flag is
// set, so finite inputs pay only for the scan of the flags.
#pragma once

#include <cstdint>

#include "anchorctx/attention/kernels.h"

namespace anchorctx::attention::cpu {

// Whether any of the n flags is set.
bool any_flag(const std::uint8_t* flags, std::int64_t n);

// Per query row: NaN out and lse when its q row or a visible key's k or v row is flagged.
// q_bad [Hq][Tq], k_bad and v_bad [Hkv][Tk]. `st` has its strides resolved (kernels.cpp).
void poison_forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                    const ForwardStrides& st, const std::uint8_t* q_bad, const std::uint8_t* k_bad,
                    const std::uint8_t* v_bad);

// A query row is bad when its q, dout or out row is flagged, its lse is NaN or +inf, or a key
// it sees is flagged: its dq row and the dk, dv rows of every key it sees become NaN (a flagged
// key that no query sees keeps its zero gradients, as in PyTorch). q_bad, dout_bad, out_bad
// [Hq][Tq]; k_bad, v_bad [Hkv][Tk].
void poison_backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                     const BackwardStrides& st, const std::uint8_t* q_bad,
                     const std::uint8_t* dout_bad, const std::uint8_t* out_bad,
                     const std::uint8_t* k_bad, const std::uint8_t* v_bad);

}  // namespace anchorctx::attention::cpu
