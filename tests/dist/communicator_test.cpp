// The single-process communicator: rank 0 of a world of 1, reductions leave the values (the sum
// over one rank) bit for bit, NaN and -0 included, and the barrier returns.
#include "anchorctx/dist/communicator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace anchorctx::dist {
namespace {

TEST(SingleProcessCommunicator, RankZeroOfOneAndReductionsLeaveValues) {
  const std::unique_ptr<Communicator> comm = make_single_process_communicator();
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);

  std::vector<float> f = {1.5f, -0.0f, std::numeric_limits<float>::quiet_NaN(), 3e38f, 1e-45f};
  const std::vector<float> f0 = f;
  comm->all_reduce_sum(f);
  EXPECT_EQ(std::memcmp(f.data(), f0.data(), f.size() * sizeof(float)), 0);

  std::vector<double> d = {0.1, -2.5, std::numeric_limits<double>::infinity(), 12345.0};
  const std::vector<double> d0 = d;
  comm->all_reduce_sum(d);
  EXPECT_EQ(std::memcmp(d.data(), d0.data(), d.size() * sizeof(double)), 0);

  comm->all_reduce_sum(std::span<float>());  // empty: fine
  comm->barrier();
}

}  // namespace
}  // namespace anchorctx::dist
