// Which windows a data-parallel replica reads: the one place data sharding lives.
//
// A step reads the next `global batch` = grad_accum x batch_windows x dp_size windows of one
// global order (epoch 0 the dataset's order, later epochs a seeded shuffle: Trainer's
// window_at), starting at the data cursor. Replica d takes the d-th contiguous slice of them,
// and within it micro-batch m the m-th run of batch_windows. So the windows of a step depend on
// the global batch only, not on how it is split: `mpirun -np 2 --grad-accum 1` reads, step by
// step, the windows one process reads with `--grad-accum 2` (replica d <-> micro-batch d), and a
// resume continues from the saved cursor.
#pragma once

#include <cstdint>

namespace anchorctx::train {

struct DataShard {
  std::int64_t batch_windows = 1;  // windows per micro-batch
  std::int64_t grad_accum = 1;     // micro-batches per step on each replica
  int dp_rank = 0;                 // this replica
  int dp_size = 1;                 // replicas

  // Windows every replica together reads per optimizer step.
  std::uint64_t global_batch() const {
    return static_cast<std::uint64_t>(batch_windows * grad_accum) *
           static_cast<std::uint64_t>(dp_size);
  }
  // The global ordinal (data cursor) of window `window` of micro-batch `micro` of this replica,
  // for a step whose first window is at `step_cursor`.
  std::uint64_t cursor(std::uint64_t step_cursor, std::int64_t micro, std::int64_t window) const {
    const auto per_replica = static_cast<std::uint64_t>(batch_windows * grad_accum);
    return step_cursor + static_cast<std::uint64_t>(dp_rank) * per_replica +
           static_cast<std::uint64_t>(micro * batch_windows + window);
  }
};

}  // namespace anchorctx::train
