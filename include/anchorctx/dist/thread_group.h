// An in-process backend of the Communicator: n ranks that are n threads of this process, for
// tests and for running the multi-rank code paths (sequence and data parallel) without MPI.
//
// It obeys communicator.h's contract: sums in rank order 0..n-1 (bit-identical on every rank,
// independent of which thread arrives first), every collective, `split`. Differences a caller
// can see: `abort` throws dist::Aborted on the calling rank and makes every other rank of the
// world throw dist::Aborted from the collective it waits in (or its next one), instead of
// ending the process, so a test sees a failure as an exception on every thread, never a hang.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/dist/communicator.h"

namespace anchorctx::dist {

// What a rank of a thread group throws after an abort anywhere in its world.
class Aborted : public Error {
 public:
  using Error::Error;
};

// Traffic counted over the whole world (all its sub-groups), for measurements: the floats
// all_to_all moved between different ranks (a rank's block to itself is not traffic).
struct ThreadGroupTraffic {
  std::int64_t all_to_all_calls = 0;  // collective calls (one per call, not per rank)
  std::int64_t all_to_all_bytes = 0;  // bytes sent rank to another rank, summed over ranks
};

namespace detail {
struct ThreadWorld;  // thread_group.cpp: what the ranks of one world share
}  // namespace detail

class ThreadGroup {
 public:
  explicit ThreadGroup(int ranks);
  ~ThreadGroup();
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;

  int size() const { return static_cast<int>(ranks_.size()); }
  // Rank r's communicator: use it from one thread only.
  Communicator& rank(int r) { return *ranks_.at(static_cast<std::size_t>(r)); }

  ThreadGroupTraffic traffic() const;
  void reset_traffic();

  // Runs fn(rank's communicator) on `size()` threads (one rank each) and joins them. An
  // exception on one rank aborts the world (the others throw Aborted and stop); the first
  // exception that is not an Aborted (or, if none, the first) is rethrown here after the join.
  void run(const std::function<void(Communicator&)>& fn);

 private:
  std::shared_ptr<detail::ThreadWorld> world_;
  std::vector<std::unique_ptr<Communicator>> ranks_;
};

}  // namespace anchorctx::dist
