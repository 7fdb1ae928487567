// Communicator: how ranks of a data-parallel run exchange gradients and agree on values.
//
// The trainer takes one and calls it in exactly one place per optimizer step (the gradient
// all-reduce, then the loss and token counts), so that a multi-process backend (MPI on CPUs,
// NCCL on GPUs; a later issue) slots in without touching the training loop. This issue ships the
// single-process communicator.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

namespace anchorctx::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place: every rank ends with the element-wise sum over ranks, bit-identical on all ranks.
  virtual void all_reduce_sum(std::span<float> values) = 0;
  virtual void all_reduce_sum(std::span<double> values) = 0;
  // Blocks until every rank arrives.
  virtual void barrier() = 0;
};

// The communicator of a run on one process: rank 0 of 1, reductions are no-ops.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace anchorctx::dist
