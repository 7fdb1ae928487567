// Ulysses sequence parallelism (DeepSpeed-Ulysses): the S ranks of a sequence-parallel group
// share one window. Each holds a contiguous shard of its tokens for everything that works token
// by token (embedding, norms, projections, RoPE, MLP, LM head); around attention an all-to-all
// turns q, k, v from [shard tokens, all heads, D] into [window tokens, this rank's heads, D], the
// attention kernels run over the whole window (its block plan, document starts and anchor) for
// those heads, and the inverse all-to-all brings the output back to the token shard. The
// backward mirrors it.
//
// The numbers (plan_sequence_shards):
// - Token shards start at multiples of kGemmRowBlock (128), as evenly as that allows (uneven
//   when T is not a multiple of 128 S; a window under 128 S tokens leaves ranks without
//   tokens, which is allowed). Why: with thread-invariant GEMMs a shard's rows then meet the
//   very GEMM calls the whole window's rows do, so the forward is bit-identical to one process.
// - Query heads: contiguous ranges, the first Hq mod S ranks one more (any Hq, S).
// - Key/value heads: each rank takes the kv heads its query heads read. When Hkv divides by S
//   these are Hkv/S heads of its own; when S divides by Hkv each kv head is replicated on S/Hkv
//   ranks (as DeepSpeed does); other combinations are handled the same way, and where a rank's
//   query heads would not map onto its kv heads as the kernel's groups (Hq' a multiple of Hkv',
//   query head i reading kv head i / (Hq'/Hkv')), its kv heads are laid out once per query head.
//   A replicated kv head's gradient is the sum over the ranks holding it, in rank order.
#pragma once

#include <cstdint>
#include <vector>

#include "anchorctx/dist/communicator.h"

namespace anchorctx::model {

struct SequenceShards {
  int size = 1;  // S
  int rank = 0;  // this rank's place in the group (token-shard order)
  std::vector<std::int64_t>
      token_start;  // [S + 1]: rank r holds [token_start[r], token_start[r+1])
  std::vector<std::vector<int>> q_heads;   // per rank: the global query head of each local slot
  std::vector<std::vector<int>> kv_heads;  // per rank: the global kv head of each local kv slot

  std::int64_t begin() const { return token_start[static_cast<std::size_t>(rank)]; }
  std::int64_t end() const { return token_start[static_cast<std::size_t>(rank) + 1]; }
  std::int64_t tokens() const { return end() - begin(); }
  std::int64_t tokens_of(int r) const {
    return token_start[static_cast<std::size_t>(r) + 1] - token_start[static_cast<std::size_t>(r)];
  }
  int local_q_heads() const {
    return static_cast<int>(q_heads[static_cast<std::size_t>(rank)].size());
  }
  int local_kv_heads() const {
    return static_cast<int>(kv_heads[static_cast<std::size_t>(rank)].size());
  }
};

// Throws anchorctx::Error (naming the numbers) for size < 1, a rank outside it, or heads < 1
// or q_heads not a multiple of kv_heads.
SequenceShards plan_sequence_shards(std::int64_t window_tokens, int size, int rank, int q_heads,
                                    int kv_heads);

// Floats one rank sends to other ranks per layer in the forward (q, k, v to heads; the output
// back); the backward sends the same amount (d_o to heads; dq, dk, dv back). Summed over the
// group's ranks: what docs/DISTRIBUTED_SP.md's formula counts.
std::int64_t forward_exchange_floats(const SequenceShards& shards, std::int64_t head_dim);

// The exchanges of one group; scratch is kept between calls.
class UlyssesExchange {
 public:
  UlyssesExchange(dist::Communicator& group, SequenceShards shards, std::int64_t head_dim);
  const SequenceShards& shards() const { return shards_; }

  // shard [T_s, total_heads, D] -> full [T, |lists[rank]|, D]: every rank receives, for the
  // whole window, the heads `lists` gives it (lists: q_heads or kv_heads).
  void to_heads(const float* shard, int total_heads, const std::vector<std::vector<int>>& lists,
                float* full);
  // full [T, |lists[rank]|, D] -> shard [T_s, total_heads, D]. `sum`: a head held by several
  // ranks gets the sum of their values in rank order (kv gradients); else each head is held once.
  void to_tokens(const float* full, int total_heads, const std::vector<std::vector<int>>& lists,
                 bool sum, float* shard);

 private:
  dist::Communicator& group_;
  SequenceShards shards_;
  std::int64_t head_dim_;
  std::vector<float> send_, recv_;
  std::vector<std::size_t> send_counts_, recv_counts_;
};

}  // namespace anchorctx::model
