// Parallel layout: consecutive ranks form a sequence-parallel group, groups are replicas, and
// impossible arrangements are refused with the numbers named.
#include "anchorctx/dist/parallel_layout.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>

#include "anchorctx/core/error.h"

namespace anchorctx::dist {
namespace {

TEST(ParallelLayout, ConsecutiveRanksShareAWindowAndEveryPairIsOneRank) {
  for (const int sp : {1, 2, 4}) {
    std::set<std::pair<int, int>> seen;
    for (int rank = 0; rank < 8; ++rank) {
      const ParallelLayout layout = make_parallel_layout(8, rank, sp);
      EXPECT_EQ(layout.dp_size(), 8 / sp);
      EXPECT_EQ(layout.dp_rank() * sp + layout.sp_rank(), rank);
      EXPECT_TRUE(seen.insert({layout.dp_rank(), layout.sp_rank()}).second);
    }
  }
}

TEST(ParallelLayout, RefusesImpossibleNumbers) {
  try {
    make_parallel_layout(6, 0, 4);
    FAIL() << "6 ranks, sp 4 accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("--sp 4"), std::string::npos) << message;
    EXPECT_NE(message.find("(6)"), std::string::npos) << message;
  }
  EXPECT_THROW(make_parallel_layout(4, 4, 1), Error);
  EXPECT_THROW(make_parallel_layout(4, 0, 0), Error);
}

TEST(ParallelLayout, GroupsOfOneProcess) {
  const std::unique_ptr<Communicator> world = make_single_process_communicator();
  const ParallelGroups groups = make_parallel_groups(*world, 1);
  EXPECT_EQ(groups.sp->world_size(), 1);
  EXPECT_EQ(groups.dp->world_size(), 1);
  EXPECT_THROW(make_parallel_groups(*world, 2), Error);
}

}  // namespace
}  // namespace anchorctx::dist
