// Parallel layout (see parallel_layout.h): consecutive ranks share a window, so that on a
// multi-host run the sequence-parallel all-to-alls (every layer) stay inside a host when
// sp divides the ranks per host, and only the data-parallel reduction (once per step) crosses.
#include "anchorctx/dist/parallel_layout.h"

#include "anchorctx/core/error.h"

namespace anchorctx::dist {

ParallelLayout make_parallel_layout(int world_size, int rank, int sp_size) {
  require(world_size >= 1, "parallel layout: world size {} (must be at least 1)", world_size);
  require(rank >= 0 && rank < world_size, "parallel layout: rank {} outside a world of {}", rank,
          world_size);
  require(sp_size >= 1, "--sp {}: must be at least 1", sp_size);
  require(world_size % sp_size == 0,
          "--sp {}: the number of processes ({}) must be a multiple of it (data-parallel "
          "degree = processes / sp)",
          sp_size, world_size);
  return ParallelLayout{world_size, rank, sp_size};
}

ParallelGroups make_parallel_groups(Communicator& world, int sp_size) {
  ParallelGroups groups;
  groups.layout = make_parallel_layout(world.world_size(), world.rank(), sp_size);
  groups.sp = world.split(groups.layout.dp_rank(), groups.layout.sp_rank());
  groups.dp = world.split(groups.layout.sp_rank(), groups.layout.dp_rank());
  return groups;
}

}  // namespace anchorctx::dist
