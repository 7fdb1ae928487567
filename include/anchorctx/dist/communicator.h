// Communicator: how the ranks of a multi-process run exchange tensors and agree on values.
//
// The trainer and the model call only this interface, so that the MPI backend (CPUs, many hosts)
// and a later NCCL backend (GPUs) slot in without touching the training loop or the layers.
//
// Contract shared by every backend:
// - Collective: every rank of the group calls the same operation, in the same order, with the
//   same sizes (counts are given per rank where ranks differ).
// - Reproducible: a sum over ranks is computed in rank order 0, 1, ..., n-1, never in the order
//   messages happen to arrive, so results are bit-identical on every rank, run to run and for any
//   thread count or network.
// - Failure: a backend error, or a rank that stops, ends every rank of the world with an error
//   (no hang); `abort` is how a rank that failed on its own (bad data, non-finite loss) says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace anchorctx::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // In place: every rank ends with the element-wise sum over ranks, bit-identical on all ranks.
  virtual void all_reduce_sum(std::span<float> values) = 0;
  virtual void all_reduce_sum(std::span<double> values) = 0;
  virtual void all_reduce_sum(std::span<std::int64_t> values) = 0;
  // In place: every rank ends with the element-wise maximum over ranks.
  virtual void all_reduce_max(std::span<double> values) = 0;

  // `values` on every rank ends equal to `root`'s.
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;

  // Rank r sends send[send_offset(r, p), + send_counts[p]) to each rank p and receives
  // recv_counts[p] floats from each p, stored in rank order in `recv`. Counts may differ per pair
  // (uneven shards); send.size() and recv.size() must equal the sums of the counts.
  virtual void all_to_all(std::span<const float> send, std::span<const std::size_t> send_counts,
                          std::span<float> recv, std::span<const std::size_t> recv_counts) = 0;

  // Every rank contributes `mine` (counts[rank()] floats); every rank receives all contributions
  // concatenated in rank order (`all.size()` = sum of counts).
  virtual void all_gather(std::span<const float> mine, std::span<float> all,
                          std::span<const std::size_t> counts) = 0;

  // `values` (sum of counts floats, the same layout on every rank) is summed over ranks in rank
  // order; rank r receives its block r (counts[r] floats) in `mine`.
  virtual void reduce_scatter_sum(std::span<const float> values, std::span<float> mine,
                                  std::span<const std::size_t> counts) = 0;

  // Blocks until every rank arrives.
  virtual void barrier() = 0;

  // A sub-group: ranks calling with the same `color` form one communicator, ordered by `key`
  // (ties by rank). Collective over this communicator. Used for the data-parallel and the
  // sequence-parallel dimensions.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Ends every rank of the world (not just this group) after printing `reason` on this rank's
  // stderr; never returns.
  [[noreturn]] virtual void abort(std::string_view reason) = 0;
};

// The communicator of a run on one process: rank 0 of 1, reductions are no-ops, exchanges copy.
std::unique_ptr<Communicator> make_single_process_communicator();

}  // namespace anchorctx::dist
