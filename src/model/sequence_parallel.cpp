// Ulysses sequence parallelism: the shard and head plan, and the all-to-alls around attention
// (sequence_parallel.h).
#include "anchorctx/model/sequence_parallel.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"

namespace anchorctx::model {

namespace {

// The kv heads a rank with query heads [a, b) reads, laid out as the attention kernel's groups
// need them (sequence_parallel.h).
std::vector<int> kv_heads_for(int a, int b, int group) {
  if (a >= b) return {};
  const int first = a / group, last = (b - 1) / group;
  const int nq = b - a, nkv = last - first + 1;
  bool regular = nq % nkv == 0;
  for (int i = 0; regular && i < nq; ++i)
    regular = (a + i) / group - first == i / (nq / nkv);
  std::vector<int> heads;
  if (regular) {
    for (int h = first; h <= last; ++h)
      heads.push_back(h);
  } else {
    for (int i = 0; i < nq; ++i)
      heads.push_back((a + i) / group);  // one kv slot per query head
  }
  return heads;
}

}  // namespace

SequenceShards plan_sequence_shards(std::int64_t window_tokens, int size, int rank, int q_heads,
                                    int kv_heads) {
  require(size >= 1, "sequence parallel: group size {} (must be at least 1)", size);
  require(rank >= 0 && rank < size, "sequence parallel: rank {} outside a group of {}", rank, size);
  require(window_tokens >= 0, "sequence parallel: window of {} tokens", window_tokens);
  require(q_heads >= 1 && kv_heads >= 1 && q_heads % kv_heads == 0,
          "sequence parallel: {} query heads over {} kv heads (must be a multiple)", q_heads,
          kv_heads);
  SequenceShards s;
  s.size = size;
  s.rank = rank;
  // Whole row blocks per rank, as evenly as possible; the window's tail rides with the last.
  const std::int64_t blocks = (window_tokens + kGemmRowBlock - 1) / kGemmRowBlock;
  for (int r = 0; r <= size; ++r)
    s.token_start.push_back(std::min(window_tokens, blocks * r / size * kGemmRowBlock));
  s.token_start.back() = window_tokens;
  const int base = q_heads / size, extra = q_heads % size, group = q_heads / kv_heads;
  for (int r = 0; r < size; ++r) {
    const int a = r * base + std::min(r, extra), b = a + base + (r < extra ? 1 : 0);
    std::vector<int> q(static_cast<std::size_t>(b - a));
    std::iota(q.begin(), q.end(), a);
    s.q_heads.push_back(std::move(q));
    s.kv_heads.push_back(kv_heads_for(a, b, group));
  }
  return s;
}

std::int64_t forward_exchange_floats(const SequenceShards& s, std::int64_t head_dim) {
  std::int64_t floats = 0;
  for (int r = 0; r < s.size; ++r)
    for (int p = 0; p < s.size; ++p) {
      if (p == r) continue;
      const auto up = static_cast<std::size_t>(p);
      // q, k, v from r's tokens to p's heads; p's output heads back to r's tokens.
      floats += s.tokens_of(r) *
                static_cast<std::int64_t>(s.q_heads[up].size() + 2 * s.kv_heads[up].size() +
                                          s.q_heads[up].size()) *
                head_dim;
    }
  return floats;
}

UlyssesExchange::UlyssesExchange(dist::Communicator& group, SequenceShards shards,
                                 std::int64_t head_dim)
    : group_(group), shards_(std::move(shards)), head_dim_(head_dim) {
  require(group.world_size() == shards_.size && group.rank() == shards_.rank,
          "sequence parallel: shards planned for rank {} of {} but the group has rank {} of {}",
          shards_.rank, shards_.size, group.rank(), group.world_size());
  send_counts_.resize(static_cast<std::size_t>(shards_.size));
  recv_counts_.resize(static_cast<std::size_t>(shards_.size));
}

void UlyssesExchange::to_heads(const float* shard, int total_heads,
                               const std::vector<std::vector<int>>& lists, float* full) {
  const std::int64_t D = head_dim_, Ts = shards_.tokens();
  const std::size_t mine = lists[static_cast<std::size_t>(shards_.rank)].size();
  std::size_t send_total = 0, recv_total = 0;
  for (int p = 0; p < shards_.size; ++p) {
    const auto up = static_cast<std::size_t>(p);
    send_counts_[up] = static_cast<std::size_t>(Ts * D) * lists[up].size();
    recv_counts_[up] = static_cast<std::size_t>(shards_.tokens_of(p) * D) * mine;
    send_total += send_counts_[up];
    recv_total += recv_counts_[up];
  }
  send_.resize(send_total);
  // Pack: for each destination, its heads of every token of this shard, token-major.
  float* out = send_.data();
  for (int p = 0; p < shards_.size; ++p) {
    const std::vector<int>& heads = lists[static_cast<std::size_t>(p)];
    const std::int64_t nh = static_cast<std::int64_t>(heads.size());
#pragma omp parallel for schedule(static) if (Ts * nh * D > 65536)
    for (std::int64_t t = 0; t < Ts; ++t)
      for (std::int64_t j = 0; j < nh; ++j)
        std::memcpy(out + (t * nh + j) * D,
                    shard + (t * total_heads + heads[static_cast<std::size_t>(j)]) * D,
                    sizeof(float) * static_cast<std::size_t>(D));
    out += Ts * nh * D;
  }
  // Received in rank order = token order: the whole window for this rank's heads, in place.
  group_.all_to_all(send_, send_counts_, {full, recv_total}, recv_counts_);
}

void UlyssesExchange::to_tokens(const float* full, int total_heads,
                                const std::vector<std::vector<int>>& lists, bool sum,
                                float* shard) {
  const std::int64_t D = head_dim_, Ts = shards_.tokens();
  const std::size_t mine = lists[static_cast<std::size_t>(shards_.rank)].size();
  std::size_t send_total = 0, recv_total = 0;
  for (int p = 0; p < shards_.size; ++p) {
    const auto up = static_cast<std::size_t>(p);
    send_counts_[up] = static_cast<std::size_t>(shards_.tokens_of(p) * D) * mine;
    recv_counts_[up] = static_cast<std::size_t>(Ts * D) * lists[up].size();
    send_total += send_counts_[up];
    recv_total += recv_counts_[up];
  }
  recv_.resize(recv_total);
  // The window's rows are in rank order already: each destination's rows are one block.
  group_.all_to_all({full, send_total}, send_counts_, recv_, recv_counts_);
  if (sum) std::fill(shard, shard + Ts * total_heads * D, 0.0f);
  const float* in = recv_.data();
  for (int p = 0; p < shards_.size; ++p) {
    const std::vector<int>& heads = lists[static_cast<std::size_t>(p)];
    const std::int64_t nh = static_cast<std::int64_t>(heads.size());
#pragma omp parallel for schedule(static) if (Ts * nh * D > 65536)
    for (std::int64_t t = 0; t < Ts; ++t)
      for (std::int64_t j = 0; j < nh; ++j) {
        const float* src = in + (t * nh + j) * D;
        float* dst = shard + (t * total_heads + heads[static_cast<std::size_t>(j)]) * D;
        if (sum) {
          for (std::int64_t i = 0; i < D; ++i)
            dst[i] += src[i];
        } else {
          std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(D));
        }
      }
    in += Ts * nh * D;
  }
}

}  // namespace anchorctx::model
