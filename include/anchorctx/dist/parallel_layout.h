// How the ranks of a run are arranged: `sp` consecutive ranks form one sequence-parallel group
// (they share one window, each holding a shard of its tokens), and the groups are the
// data-parallel replicas (each reads different windows). Rank arithmetic lives here only: the
// trainer and the data sharding ask the layout, never compute ranks themselves.
#pragma once

#include <memory>

#include "anchorctx/dist/communicator.h"

namespace anchorctx::dist {

struct ParallelLayout {
  int world_size = 1;
  int rank = 0;
  int sp_size = 1;  // ranks per sequence-parallel group

  int sp_rank() const { return rank % sp_size; }
  int dp_size() const { return world_size / sp_size; }
  int dp_rank() const { return rank / sp_size; }
};

// Checks the numbers (world divisible by sp, rank in range) and names them in the error.
ParallelLayout make_parallel_layout(int world_size, int rank, int sp_size);

// The layout of `world` with its two sub-groups: `sp` (the ranks sharing this rank's window, in
// token-shard order) and `dp` (the ranks holding the same shard of other windows, in replica
// order). Collective over `world`.
struct ParallelGroups {
  ParallelLayout layout;
  std::unique_ptr<Communicator> sp;
  std::unique_ptr<Communicator> dp;
};
ParallelGroups make_parallel_groups(Communicator& world, int sp_size);

}  // namespace anchorctx::dist
