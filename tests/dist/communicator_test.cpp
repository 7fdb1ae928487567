// The single-process communicator: rank 0 of a world of 1, reductions leave the values (the sum
// over one rank) bit for bit, NaN and -0 included, and the barrier returns.
#include "anchorctx/dist/communicator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "anchorctx/core/error.h"

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

TEST(SingleProcessCommunicator, ExchangesCopyAndCheckCounts) {
  const std::unique_ptr<Communicator> comm = make_single_process_communicator();
  const std::vector<float> send = {1.0f, 2.0f, -0.0f};
  const std::vector<std::size_t> counts = {3};
  std::vector<float> out(3, std::numeric_limits<float>::quiet_NaN());
  comm->all_to_all(send, counts, out, counts);
  EXPECT_EQ(std::memcmp(out.data(), send.data(), sizeof(float) * 3), 0);
  std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
  comm->all_gather(send, out, counts);
  EXPECT_EQ(std::memcmp(out.data(), send.data(), sizeof(float) * 3), 0);
  std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
  comm->reduce_scatter_sum(send, out, counts);
  EXPECT_EQ(std::memcmp(out.data(), send.data(), sizeof(float) * 3), 0);

  const std::vector<std::size_t> wrong = {2};
  EXPECT_THROW(comm->all_to_all(send, wrong, out, counts), Error);
  const std::vector<std::size_t> two = {1, 2};
  EXPECT_THROW(comm->all_gather(send, out, two), Error);
  std::vector<std::byte> bytes(4);
  EXPECT_THROW(comm->broadcast(bytes, 1), Error);
  const std::unique_ptr<Communicator> sub = comm->split(0, 0);
  EXPECT_EQ(sub->world_size(), 1);
}

}  // namespace
}  // namespace anchorctx::dist
