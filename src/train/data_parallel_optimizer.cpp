// The data-parallel optimizer step (see data_parallel_optimizer.h).
#include "anchorctx/train/data_parallel_optimizer.h"

#include <algorithm>
#include <cmath>

#include "anchorctx/core/error.h"

namespace anchorctx::train {

DataParallelOptimizer::DataParallelOptimizer(const model::ParameterLayout& layout,
                                             AdamWOptions options, dist::Communicator& group,
                                             bool shard)
    : total_(layout.total()), group_(group), shard_(shard) {
  if (!shard_) {
    end_ = total_;
  } else {
    // Whole norm blocks per rank, as even as possible; the last slice ends at the buffer's end.
    const std::size_t blocks = (total_ + kGradientNormBlock - 1) / kGradientNormBlock;
    const auto ranks = static_cast<std::size_t>(group_.world_size());
    std::size_t block = 0;
    for (std::size_t r = 0; r < ranks; ++r) {
      const std::size_t take = blocks / ranks + (r < blocks % ranks ? 1 : 0);
      const std::size_t lo = std::min(total_, block * kGradientNormBlock);
      block += take;
      const std::size_t hi = std::min(total_, block * kGradientNormBlock);
      counts_.push_back(hi - lo);
      if (r == static_cast<std::size_t>(group_.rank())) {
        begin_ = lo;
        end_ = hi;
      }
    }
    scratch_.resize(end_ - begin_);
  }
  adamw_ = std::make_unique<AdamW>(layout, options, begin_, end_);
}

double DataParallelOptimizer::reduce_and_clip(std::span<float> grads, double max_norm) {
  require(grads.size() == total_, "data-parallel optimizer: {} gradients for a buffer of {}",
          grads.size(), total_);
  if (!shard_) {
    group_.all_reduce_sum(grads);
    return clip_gradients(grads, max_norm);
  }
  group_.reduce_scatter_sum(grads, scratch_, counts_);
  const std::span<float> mine = grads.subspan(begin_, end_ - begin_);
  std::copy(scratch_.begin(), scratch_.end(), mine.begin());
  // Every block's sum of squares at its place (zero elsewhere): the rank-order sum of one
  // non-zero term and zeros is that term exactly, so every rank gets every block's sum.
  const std::size_t blocks = (total_ + kGradientNormBlock - 1) / kGradientNormBlock;
  std::vector<double> sums(blocks, 0.0);
  const std::vector<double> own = gradient_block_sums(mine);
  std::copy(own.begin(), own.end(),
            sums.begin() + static_cast<std::ptrdiff_t>(begin_ / kGradientNormBlock));
  group_.all_reduce_sum(std::span<double>(sums));
  const double norm = gradient_norm_from_block_sums(sums);
  clip_gradients_with_norm(mine, norm, max_norm);
  return norm;
}

void DataParallelOptimizer::step(std::span<float> params, std::span<const float> grads, double lr) {
  require(params.size() == total_ && grads.size() == total_,
          "data-parallel optimizer: {} parameters and {} gradients for a buffer of {}",
          params.size(), grads.size(), total_);
  if (!shard_) {
    adamw_->step(params, grads, lr);
    return;
  }
  const std::size_t n = end_ - begin_;
  adamw_->step(params.subspan(begin_, n), grads.subspan(begin_, n), lr);
  std::copy_n(params.begin() + static_cast<std::ptrdiff_t>(begin_), n, scratch_.begin());
  group_.all_gather(scratch_, params, counts_);
}

void DataParallelOptimizer::gather_state(std::vector<float>& exp_avg,
                                         std::vector<float>& exp_avg_sq) {
  exp_avg.resize(total_);
  exp_avg_sq.resize(total_);
  if (!shard_) {
    std::copy(adamw_->exp_avg().begin(), adamw_->exp_avg().end(), exp_avg.begin());
    std::copy(adamw_->exp_avg_sq().begin(), adamw_->exp_avg_sq().end(), exp_avg_sq.begin());
    return;
  }
  group_.all_gather(adamw_->exp_avg(), exp_avg, counts_);
  group_.all_gather(adamw_->exp_avg_sq(), exp_avg_sq, counts_);
}

void DataParallelOptimizer::restore(std::int64_t steps, std::span<const float> exp_avg,
                                    std::span<const float> exp_avg_sq) {
  require(exp_avg.size() == total_ && exp_avg_sq.size() == total_,
          "optimizer state of {} and {} elements for a buffer of {}", exp_avg.size(),
          exp_avg_sq.size(), total_);
  const std::size_t n = end_ - begin_;
  adamw_->restore(steps, exp_avg.subspan(begin_, n), exp_avg_sq.subspan(begin_, n));
}

}  // namespace anchorctx::train
