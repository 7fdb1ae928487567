// The order in which the backward pass sums dQ across threads. A query tile's dQ is a sum over
// the key tiles it sees, and float addition is not associative: for the same bits whatever the
// thread count, every contribution is added in one order, ascending key tiles (the order of
// BlockPlan::kv_tiles_of). Where threads share a head, the backward hands its key tiles out in
// ascending order (next_item), and each (query tile, query head) keeps a turn counter: before
// adding key tile j's contribution to those dQ rows a thread waits until every key tile before
// j in the query tile's list has added its own. The smallest key tile in progress never waits,
// so every wait ends; only the dQ product of a tile pair's five waits, the others run free.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "anchorctx/attention/block_plan.h"

namespace anchorctx::attention::cpu {

class DqTurns {
 public:
  DqTurns(const BlockPlan& plan, int heads)
      : plan_(plan), heads_(heads), next_(static_cast<std::size_t>(plan.num_q_tiles()) * heads) {}

  // The work items (key tiles, or key tiles x kv heads) in ascending order, one per call,
  // whichever thread asks: an item is taken only after every smaller one.
  std::int64_t next_item() { return handed_out_.fetch_add(1, std::memory_order_relaxed); }

  // Calls add() for key tile kv_tile's contribution to the dQ rows of (q_tile, head) once every
  // earlier key tile of q_tile has added its own; the next one waits for add() to return.
  template <typename Add>
  void in_turn(int q_tile, int head, int kv_tile, Add&& add) {
    std::atomic<int>& next = next_[static_cast<std::size_t>(q_tile) * heads_ + head];
    const int turn = turn_of(q_tile, kv_tile);
    // Spin, then yield the core: a wait lasts at most a few tile products, and a thread that
    // never sleeps cannot miss its wake-up. (std::atomic::wait of GCC 12 missed one here: a run
    // hung with both threads asleep until a debugger's attach woke them.)
    for (int spins = 0; next.load(std::memory_order_acquire) != turn; ++spins) {
      if (spins >= kSpinsBeforeYield) std::this_thread::yield();
    }
    add();
    next.store(turn + 1, std::memory_order_release);
  }

 private:
  static constexpr int kSpinsBeforeYield = 256;

  // kv_tile's position among the key tiles q_tile sees (the list ascends).
  int turn_of(int q_tile, int kv_tile) const {
    const auto keys = plan_.kv_tiles_of(q_tile);
    const auto at = std::lower_bound(keys.begin(), keys.end(), kv_tile,
                                     [](const TileRef& ref, int tile) { return ref.tile < tile; });
    return static_cast<int>(at - keys.begin());
  }

  const BlockPlan& plan_;
  int heads_;
  std::vector<std::atomic<int>> next_;
  std::atomic<std::int64_t> handed_out_{0};
};

}  // namespace anchorctx::attention::cpu
