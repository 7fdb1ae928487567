// Where a training step's time goes, by kind of operation: `anchorctx bench train --profile`.
//
// Each layer function opens an OpScope for its kind; the time between its construction and
// destruction, minus the time of scopes opened inside it (a GEMM inside linear_forward, the
// bf16 conversion inside a GEMM), is added to its kind, so the kinds add up to the profiled time
// without counting anything twice. The opening thread's CPU time is kept the same way: at one
// thread it is the op's work, little moved by other processes taking the CPU (on a shared
// machine wall times of two runs are hard to compare, CPU times at one thread less so). Off by
// default: a disabled scope reads one atomic flag. Scopes belong to the thread that opens them
// (the model's ops run on the calling thread and parallelise inside); totals are process-wide.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string_view>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::model {

enum class Op {
  embedding,           // lookup and its gradient
  rmsnorm,             // forward and backward
  gemm,                // the matrix products of linear layers and the LM head (sgemm or oneDNN)
  gemm_bf16_convert,   // native bf16: float32 operands converted to bf16 bits for oneDNN
  linear_other,        // bias copy and bias gradient
  rope,                // rotation forward and backward
  attention_forward,   // the block-sparse kernel (its output's bf16 rounding: elementwise)
  attention_backward,  // likewise
  swiglu,              // forward and backward
  elementwise,         // residual adds, bf16 rounding of activations and gradients
  lm_head_loss,        // cross-entropy around the LM-head GEMMs: softmax, loss, dlogits, copies
  weights_bf16,        // the bf16 copy of the weights made at the start of a bf16 forward
  count
};
inline constexpr core::EnumName<Op> kOpNames[] = {{Op::embedding, "embedding"},
                                                  {Op::rmsnorm, "rmsnorm"},
                                                  {Op::gemm, "gemm"},
                                                  {Op::gemm_bf16_convert, "gemm_bf16_convert"},
                                                  {Op::linear_other, "linear_other"},
                                                  {Op::rope, "rope"},
                                                  {Op::attention_forward, "attention_forward"},
                                                  {Op::attention_backward, "attention_backward"},
                                                  {Op::swiglu, "swiglu"},
                                                  {Op::elementwise, "elementwise"},
                                                  {Op::lm_head_loss, "lm_head_loss"},
                                                  {Op::weights_bf16, "weights_bf16"}};
constexpr std::span<const core::EnumName<Op>> enum_names(Op) {
  return kOpNames;
}
inline constexpr std::size_t kOpCount = static_cast<std::size_t>(Op::count);

// Turns recording on or off (process-wide) and, when turning it on, zeroes the totals.
void set_op_profile(bool on);
// Milliseconds per kind since the last set_op_profile(true): wall time, and CPU time of the
// threads that opened the scopes (not of OpenMP workers).
struct OpTimes {
  std::array<double, kOpCount> wall_ms{}, cpu_ms{};
};
OpTimes op_profile();

class OpScope {
 public:
  explicit OpScope(Op op);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  Op op_;
  bool on_;
  long long start_ns_ = 0, children_ns_ = 0, start_cpu_ns_ = 0, children_cpu_ns_ = 0;
  OpScope* parent_ = nullptr;
};

}  // namespace anchorctx::model
