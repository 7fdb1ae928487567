// The in-process communicator: every collective against values computed here, sums in rank
// order (the same bits whatever thread arrives first), uneven all-to-all counts, split into the
// parallel layout's groups, and failures (an exception or an abort on one rank) reaching every
// rank as an exception instead of a hang.
#include "anchorctx/dist/thread_group.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "anchorctx/dist/parallel_layout.h"

namespace anchorctx::dist {
namespace {

// Values whose float sum depends on the order: rank r holds 1e8 for r = 0 and small ones after.
float order_sensitive(int rank, int i) {
  return rank == 0 ? 1e8f : 3.0f + 0.25f * static_cast<float>(rank + i);
}

TEST(ThreadGroup, SumsAreInRankOrderAndIdenticalOnEveryRank) {
  for (const int n : {1, 2, 3, 4}) {
    ThreadGroup group(n);
    std::vector<std::vector<float>> got(static_cast<std::size_t>(n));
    // Ranks arrive in reverse order (higher ranks first) to show arrival order does not count.
    group.run([&](Communicator& c) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2 * (n - c.rank())));
      std::vector<float> v(5);
      for (int i = 0; i < 5; ++i)
        v[static_cast<std::size_t>(i)] = order_sensitive(c.rank(), i);
      c.all_reduce_sum(v);
      got[static_cast<std::size_t>(c.rank())] = v;
    });
    for (int i = 0; i < 5; ++i) {
      float expect = order_sensitive(0, i);
      for (int r = 1; r < n; ++r)
        expect += order_sensitive(r, i);
      for (int r = 0; r < n; ++r)
        EXPECT_EQ(std::memcmp(&got[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)],
                              &expect, sizeof(float)),
                  0)
            << "n " << n << " rank " << r << " element " << i;
    }
  }
}

TEST(ThreadGroup, DoubleIntAndMaxReductions) {
  ThreadGroup group(3);
  group.run([&](Communicator& c) {
    std::vector<double> d = {0.1 * (c.rank() + 1), -1.0};
    c.all_reduce_sum(d);
    EXPECT_EQ(d[0], (0.1 + 0.2) + 0.30000000000000004);
    EXPECT_EQ(d[1], -3.0);
    std::vector<std::int64_t> i = {c.rank() + 1ll, 1ll << 40};
    c.all_reduce_sum(i);
    EXPECT_EQ(i[0], 6);
    EXPECT_EQ(i[1], 3ll << 40);
    std::vector<double> m = {static_cast<double>(c.rank()), -static_cast<double>(c.rank())};
    c.all_reduce_max(m);
    EXPECT_EQ(m[0], 2.0);
    EXPECT_EQ(m[1], 0.0);
  });
}

TEST(ThreadGroup, AllToAllWithUnevenCountsDeliversEveryBlockInRankOrder) {
  const int n = 3;
  ThreadGroup group(n);
  // Rank r sends (r + 1) * (p + 1) - 1 floats to rank p (0 from rank 0 to rank 0), each float
  // encoding (from, to, index).
  const auto count = [](int from, int to) {
    return static_cast<std::size_t>((from + 1) * (to + 1) - 1);
  };
  const auto value = [](int from, int to, std::size_t i) {
    return static_cast<float>(from * 1000 + to * 100) + static_cast<float>(i);
  };
  group.run([&](Communicator& c) {
    const int r = c.rank();
    std::vector<std::size_t> send_counts, recv_counts;
    std::vector<float> send;
    for (int p = 0; p < n; ++p) {
      send_counts.push_back(count(r, p));
      recv_counts.push_back(count(p, r));
      for (std::size_t i = 0; i < count(r, p); ++i)
        send.push_back(value(r, p, i));
    }
    std::vector<float> recv(std::accumulate(recv_counts.begin(), recv_counts.end(), std::size_t{0}),
                            std::numeric_limits<float>::quiet_NaN());
    c.all_to_all(send, send_counts, recv, recv_counts);
    std::size_t at = 0;
    for (int p = 0; p < n; ++p)
      for (std::size_t i = 0; i < count(p, r); ++i)
        EXPECT_EQ(recv[at++], value(p, r, i)) << "rank " << r << " from " << p << " index " << i;
  });
  // Bytes between different ranks: every count except the diagonal.
  std::int64_t off_rank = 0;
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b)
      if (a != b) off_rank += static_cast<std::int64_t>(count(a, b) * sizeof(float));
  EXPECT_EQ(group.traffic().all_to_all_bytes, off_rank);
  EXPECT_EQ(group.traffic().all_to_all_calls, 1);
}

TEST(ThreadGroup, MismatchedAllToAllCountsFailOnEveryRank) {
  ThreadGroup group(2);
  EXPECT_THROW(group.run([&](Communicator& c) {
    const std::vector<float> send = {1.0f, 2.0f};
    const std::vector<std::size_t> send_counts = {1, 1};
    // Rank 1 expects 2 floats from rank 0, which sends 1.
    const std::vector<std::size_t> recv_counts =
        c.rank() == 1 ? std::vector<std::size_t>{2, 1} : std::vector<std::size_t>{1, 1};
    std::vector<float> recv(c.rank() == 1 ? 3 : 2);
    c.all_to_all(send, send_counts, recv, recv_counts);
  }),
               Error);
}

TEST(ThreadGroup, GatherScatterAndBroadcast) {
  const int n = 3;
  ThreadGroup group(n);
  const std::vector<std::size_t> counts = {2, 0, 3};
  group.run([&](Communicator& c) {
    const int r = c.rank();
    std::vector<float> mine(counts[static_cast<std::size_t>(r)], static_cast<float>(r + 1));
    std::vector<float> all(5, std::numeric_limits<float>::quiet_NaN());
    c.all_gather(mine, all, counts);
    EXPECT_EQ(all, (std::vector<float>{1, 1, 3, 3, 3}));

    std::vector<float> values(5);
    for (std::size_t i = 0; i < 5; ++i)
      values[i] = static_cast<float>(r) + 0.5f * static_cast<float>(i);
    std::vector<float> block(counts[static_cast<std::size_t>(r)]);
    c.reduce_scatter_sum(values, block, counts);
    const std::size_t offset = r == 0 ? 0 : r == 1 ? 2 : 2;
    for (std::size_t i = 0; i < block.size(); ++i)
      EXPECT_EQ(block[i], 3.0f + 1.5f * static_cast<float>(offset + i));

    std::vector<std::byte> bytes(3, std::byte{static_cast<unsigned char>(r)});
    c.broadcast(bytes, 2);
    for (const std::byte b : bytes)
      EXPECT_EQ(b, std::byte{2});
  });
}

TEST(ThreadGroup, SplitMakesTheParallelLayoutsGroups) {
  const int n = 4;
  ThreadGroup group(n);
  group.run([&](Communicator& world) {
    ParallelGroups g = make_parallel_groups(world, 2);
    EXPECT_EQ(g.sp->world_size(), 2);
    EXPECT_EQ(g.dp->world_size(), 2);
    EXPECT_EQ(g.sp->rank(), world.rank() % 2);
    EXPECT_EQ(g.dp->rank(), world.rank() / 2);
    // Sum of world ranks over the sp group: {0,1} -> 1, {2,3} -> 5.
    std::vector<std::int64_t> v = {world.rank()};
    g.sp->all_reduce_sum(v);
    EXPECT_EQ(v[0], world.rank() < 2 ? 1 : 5);
    v = {world.rank()};
    g.dp->all_reduce_sum(v);
    EXPECT_EQ(v[0], world.rank() % 2 == 0 ? 2 : 4);
  });
}

TEST(ThreadGroup, AnExceptionOnOneRankStopsEveryRank) {
  ThreadGroup group(3);
  try {
    group.run([&](Communicator& c) {
      if (c.rank() == 1) throw Error("bad window on rank 1");
      std::vector<float> v(4, 1.0f);
      c.all_reduce_sum(v);  // would wait for rank 1 forever
      c.barrier();
    });
    FAIL() << "no exception";
  } catch (const Aborted&) {
    FAIL() << "the original error should be rethrown, not an Aborted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad window on rank 1"), std::string::npos) << e.what();
  }
}

TEST(ThreadGroup, AbortInASubGroupReachesTheWholeWorld) {
  ThreadGroup group(4);
  std::vector<int> aborted(4, 0);
  EXPECT_THROW(group.run([&](Communicator& world) {
    try {
      ParallelGroups g = make_parallel_groups(world, 2);
      if (world.rank() == 3) g.sp->abort("non-finite loss on rank 3");
      world.barrier();  // ranks 0-2 wait here; the abort must wake them
    } catch (const Aborted&) {
      aborted[static_cast<std::size_t>(world.rank())] = 1;
      throw;
    }
  }),
               Aborted);
  EXPECT_EQ(aborted, (std::vector<int>{1, 1, 1, 1}));
}

}  // namespace
}  // namespace anchorctx::dist
