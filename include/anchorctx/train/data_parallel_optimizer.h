// The optimizer step of a data-parallel run: the gradients summed over the replicas (in rank
// order, through the communicator), clipped by the global norm, and AdamW, either replicated
// (every rank updates the whole buffer) or sharded as ZeRO-1 (--shard-optimizer: each rank
// holds the moments of one slice of the flat buffer, updates that slice, and the parameters are
// all-gathered).
//
// Exactness: the sharded step gives the replicated step's bits. The reduce-scatter sums each
// element in the same rank order as the all-reduce; the slices start at multiples of
// kGradientNormBlock, so the global norm is added up from the same block sums in the same
// order; AdamW's update of an element does not depend on the others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "anchorctx/dist/communicator.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/train/optimizer.h"

namespace anchorctx::train {

class DataParallelOptimizer {
 public:
  // `group`: the ranks whose gradients are summed (it must outlive this object).
  DataParallelOptimizer(const model::ParameterLayout& layout, AdamWOptions options,
                        dist::Communicator& group, bool shard);

  // Collective. Sums `grads` over the group and clips them by max_norm (<= 0: no clipping);
  // returns the global norm before clipping, the same on every rank (non-finite when any
  // gradient is; the caller then skips step()). Sharded, only this rank's slice of `grads` holds
  // the sum afterwards; the rest is left as it was.
  double reduce_and_clip(std::span<float> grads, double max_norm);

  // Collective when sharded. One AdamW update of `params` (the whole buffer, equal on every rank
  // before and after) from the gradients reduce_and_clip left.
  void step(std::span<float> params, std::span<const float> grads, double lr);

  std::int64_t steps() const { return adamw_->steps(); }
  bool sharded() const { return shard_; }
  // The bytes of optimizer state this rank holds (two float32 moments of its slice).
  std::size_t state_bytes() const { return 2 * sizeof(float) * (end_ - begin_); }

  // Collective when sharded: the whole buffer's moments, on every rank.
  void gather_state(std::vector<float>& exp_avg, std::vector<float>& exp_avg_sq);
  // The whole buffer's moments (a checkpoint's); each rank keeps its slice.
  void restore(std::int64_t steps, std::span<const float> exp_avg,
               std::span<const float> exp_avg_sq);

 private:
  std::size_t total_;
  dist::Communicator& group_;
  bool shard_;
  std::vector<std::size_t> counts_;  // elements per rank's slice (sharded), in rank order
  std::size_t begin_ = 0, end_ = 0;  // this rank's slice
  std::unique_ptr<AdamW> adamw_;
  std::vector<float> scratch_;  // the summed slice before it is copied back
};

}  // namespace anchorctx::train
