// The MPI communicator under mpirun (run by CTest at 1, 2 and 4 ranks, tests/CMakeLists.txt):
// every sum equals the loop over the ranks' values in rank order bit for bit, on every rank;
// uneven and zero counts; exchanges larger than one round (the program's argument is the
// round size, kept small here); split groups and the parallel layout's sub-groups; broadcast
// from every root. Each rank can compute every rank's values (a hash of rank and index), so it
// checks its results alone. A failed check aborts the world with the check's text.
//
//   mpirun -np N mpi_collectives ROUND            the checks
//   mpirun -np N mpi_collectives ROUND throw R    rank R throws while the others wait
//   mpirun -np N mpi_collectives ROUND kill R     rank R is killed (SIGKILL) while they wait
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "anchorctx/dist/communicator.h"
#include "anchorctx/dist/parallel_layout.h"
#include "anchorctx/dist/world.h"
#include "dist/mpi_communicator.h"

namespace {

using anchorctx::dist::Communicator;

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb93e63a5344full;
  return x ^ (x >> 33);
}

// Values of wide magnitude and both signs, so that another summation order gives other bits.
template <class T>
T value(int rank, std::size_t i, std::uint64_t salt) {
  const std::uint64_t h =
      mix(salt * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(rank) * 1000003ull + i);
  if constexpr (std::is_same_v<T, std::int64_t>) {
    return static_cast<std::int64_t>(h >> 8) - (std::int64_t{1} << 54);
  } else {
    const double mantissa = static_cast<double>(h >> 11) / 9007199254740992.0;  // [0, 1)
    const int exponent = static_cast<int>((h >> 3) % 40) - 20;
    return static_cast<T>((h & 1 ? -1.0 : 1.0) * std::ldexp(1.0 + mantissa, exponent));
  }
}

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// The sum over `ranks` (in that order) of value(r, i).
template <class T>
T ordered_sum(const std::vector<int>& ranks, std::size_t i, std::uint64_t salt) {
  T acc = value<T>(ranks[0], i, salt);
  for (std::size_t k = 1; k < ranks.size(); ++k)
    acc += value<T>(ranks[k], i, salt);
  return acc;
}

const std::size_t kSizes[] = {0, 1, 2, 3, 5, 64, 65, 1000, 4099};

// `world_ranks[r]`: the world rank of group rank r (the values are the world rank's).
template <class T>
void check_all_reduce(Communicator& c, const std::vector<int>& world_ranks, int world_rank,
                      const char* type) {
  for (std::size_t n : kSizes) {
    const std::uint64_t salt = n * 31 + sizeof(T);
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i)
      v[i] = value<T>(world_rank, i, salt);
    c.all_reduce_sum(std::span<T>(v));
    for (std::size_t i = 0; i < n; ++i)
      check(same_bits(v[i], ordered_sum<T>(world_ranks, i, salt)),
            fmt::format("all_reduce_sum<{}> of {} on group rank {}: element {}", type, n, c.rank(),
                        i));
  }
}

std::vector<int> identity(int n) {
  std::vector<int> r(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    r[static_cast<std::size_t>(i)] = i;
  return r;
}

void check_max(Communicator& c) {
  const int n = c.world_size(), me = c.rank();
  std::vector<double> v(100);
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = value<double>(me, i, 5);
  if (me == n - 1) v[7] = std::nan("");
  c.all_reduce_max(std::span<double>(v));
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i == 7) {
      check(std::isnan(v[i]), "all_reduce_max: a NaN on one rank is NaN on all");
      continue;
    }
    double m = value<double>(0, i, 5);
    for (int r = 1; r < n; ++r)
      m = std::max(m, value<double>(r, i, 5));
    check(same_bits(v[i], m), fmt::format("all_reduce_max element {}", i));
  }
}

void check_reduce_scatter_and_gather(Communicator& c) {
  const int n = c.world_size(), me = c.rank();
  // Uneven counts, a zero among them when there are several ranks.
  for (int pattern = 0; pattern < 2; ++pattern) {
    std::vector<std::size_t> counts(static_cast<std::size_t>(n));
    std::size_t total = 0;
    for (int p = 0; p < n; ++p) {
      counts[static_cast<std::size_t>(p)] =
          pattern == 0 ? static_cast<std::size_t>((p * 37 + 5) % 100)
                       : (p == 1 ? 0 : static_cast<std::size_t>(300 + 11 * p));
      total += counts[static_cast<std::size_t>(p)];
    }
    std::size_t offset = 0;
    for (int p = 0; p < me; ++p)
      offset += counts[static_cast<std::size_t>(p)];
    const std::uint64_t salt = 100 + static_cast<std::uint64_t>(pattern);
    std::vector<float> values(total);
    for (std::size_t i = 0; i < total; ++i)
      values[i] = value<float>(me, i, salt);
    std::vector<float> mine(counts[static_cast<std::size_t>(me)], std::nanf(""));
    c.reduce_scatter_sum(values, mine, counts);
    for (std::size_t i = 0; i < mine.size(); ++i)
      check(same_bits(mine[i], ordered_sum<float>(identity(n), offset + i, salt)),
            fmt::format("reduce_scatter_sum pattern {} element {}", pattern, i));

    // all_gather: each rank gives its block; all see every block in rank order.
    std::vector<float> own(counts[static_cast<std::size_t>(me)]);
    for (std::size_t i = 0; i < own.size(); ++i)
      own[i] = value<float>(me, i, salt + 7);
    std::vector<float> all(total, std::nanf(""));
    c.all_gather(own, all, counts);
    std::size_t k = 0;
    for (int p = 0; p < n; ++p)
      for (std::size_t i = 0; i < counts[static_cast<std::size_t>(p)]; ++i, ++k)
        check(same_bits(all[k], value<float>(p, i, salt + 7)),
              fmt::format("all_gather pattern {}: block {} element {}", pattern, p, i));
  }
}

// Floats rank `from` sends rank `to`: uneven, some pairs none.
std::size_t pair_count(int from, int to) {
  return static_cast<std::size_t>((from * 3 + to * 5) % 7 == 0 ? 0
                                                               : 40 + (from * 13 + to * 29) % 90);
}

void check_all_to_all(Communicator& c) {
  const int n = c.world_size(), me = c.rank();
  std::vector<std::size_t> send_counts(static_cast<std::size_t>(n)), recv_counts(send_counts);
  std::vector<float> send;
  for (int p = 0; p < n; ++p) {
    send_counts[static_cast<std::size_t>(p)] = pair_count(me, p);
    recv_counts[static_cast<std::size_t>(p)] = pair_count(p, me);
    for (std::size_t i = 0; i < pair_count(me, p); ++i)
      send.push_back(value<float>(me, static_cast<std::size_t>(p) * 1000 + i, 200));
  }
  std::size_t total = 0;
  for (std::size_t r : recv_counts)
    total += r;
  std::vector<float> recv(total, std::nanf(""));
  c.all_to_all(send, send_counts, recv, recv_counts);
  std::size_t k = 0;
  for (int p = 0; p < n; ++p)
    for (std::size_t i = 0; i < pair_count(p, me); ++i, ++k)
      check(same_bits(recv[k], value<float>(p, static_cast<std::size_t>(me) * 1000 + i, 200)),
            fmt::format("all_to_all from rank {} element {}", p, i));
}

void check_broadcast(Communicator& c) {
  for (int root = 0; root < c.world_size(); ++root) {
    std::vector<std::byte> bytes(1001, std::byte{0});
    if (c.rank() == root)
      for (std::size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = static_cast<std::byte>(mix(i + static_cast<std::size_t>(root)) & 0xff);
    c.broadcast(bytes, root);
    for (std::size_t i = 0; i < bytes.size(); ++i)
      check(bytes[i] == static_cast<std::byte>(mix(i + static_cast<std::size_t>(root)) & 0xff),
            fmt::format("broadcast from root {} byte {}", root, i));
  }
}

void check_split(Communicator& world) {
  const int n = world.world_size(), me = world.rank();
  // Even and odd ranks, ordered by descending world rank (the key), so group order != world order.
  std::unique_ptr<Communicator> sub = world.split(me % 2, -me);
  std::vector<int> members;
  for (int r = n - 1; r >= 0; --r)
    if (r % 2 == me % 2) members.push_back(r);
  check(sub->world_size() == static_cast<int>(members.size()), "split: group size");
  check(members[static_cast<std::size_t>(sub->rank())] == me, "split: rank ordered by key");
  check_all_reduce<float>(*sub, members, me, "float, split group");

  for (int sp = 1; sp <= n; ++sp) {
    if (n % sp != 0) continue;
    anchorctx::dist::ParallelGroups g = anchorctx::dist::make_parallel_groups(world, sp);
    check(g.sp->world_size() == sp && g.dp->world_size() == n / sp, "parallel groups: sizes");
    check(g.sp->rank() == g.layout.sp_rank() && g.dp->rank() == g.layout.dp_rank(),
          "parallel groups: ranks");
    std::vector<int> dp_members, sp_members;
    for (int d = 0; d < n / sp; ++d)
      dp_members.push_back(d * sp + g.layout.sp_rank());
    for (int s = 0; s < sp; ++s)
      sp_members.push_back(g.layout.dp_rank() * sp + s);
    check_all_reduce<float>(*g.dp, dp_members, me, "float, dp group");
    check_all_reduce<float>(*g.sp, sp_members, me, "float, sp group");
  }
}

void check_refusals(Communicator& c) {
  const int n = c.world_size();
  std::vector<float> a(3), b(3);
  std::vector<std::size_t> wrong(static_cast<std::size_t>(n) + 1, 0);
  bool refused = false;
  try {
    c.all_gather(a, b, wrong);
  } catch (const std::exception& e) {
    refused = std::string(e.what()).find("counts for a group of") != std::string::npos;
  }
  check(refused, "all_gather with one count too many is refused, naming the group size");
}

void run_checks(Communicator& world) {
  const std::vector<int> all = identity(world.world_size());
  check_all_reduce<float>(world, all, world.rank(), "float");
  check_all_reduce<double>(world, all, world.rank(), "double");
  check_all_reduce<std::int64_t>(world, all, world.rank(), "int64");
  check_max(world);
  check_reduce_scatter_and_gather(world);
  check_all_to_all(world);
  check_broadcast(world);
  check_split(world);
  check_refusals(world);
  world.barrier();
}

// A rank that fails while the others wait in a collective: `victim` throws (or is killed) after
// one all-reduce, the others wait in the next.
void fail_in_a_collective(Communicator& world, const std::string& how, int victim) {
  std::vector<float> v(10, 1.0f);
  world.all_reduce_sum(std::span<float>(v));
  if (world.rank() == victim) {
    if (how == "kill") std::raise(SIGKILL);
    throw std::runtime_error("failing on purpose (test)");
  }
  world.all_reduce_sum(std::span<float>(v));  // the others wait here
  world.barrier();
  std::fprintf(stderr, "mpi_collectives: rank %d passed a collective a failed rank never joined\n",
               world.rank());
  std::exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: mpi_collectives ROUND [throw|kill|unwind RANK]\n");
    return 2;
  }
  const auto round = static_cast<std::size_t>(std::strtoull(argv[1], nullptr, 10));
  if (argc >= 4 && std::string(argv[2]) == "unwind") {
    // The error unwinds past the world communicator, caught only above it (as main catches a
    // command's error): its destructor must end every rank, not wait in MPI_Finalize for ranks
    // that wait in a collective.
    try {
      std::unique_ptr<Communicator> world = anchorctx::dist::make_mpi_world_communicator(round);
      fail_in_a_collective(*world, "throw", std::atoi(argv[3]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mpi_collectives: caught after the communicator's end: %s\n", e.what());
      return 1;
    }
  }
  std::unique_ptr<Communicator> world = anchorctx::dist::make_mpi_world_communicator(round);
  // What every multi-rank command runs its work in (dist/world.h).
  anchorctx::dist::run_or_abort(*world, [&] {
    if (argc >= 4)
      fail_in_a_collective(*world, argv[2], std::atoi(argv[3]));
    else
      run_checks(*world);
  });
  if (world->rank() == 0)
    std::printf("mpi_collectives: %d ranks, round %zu: all checks passed\n", world->world_size(),
                round);
  world.reset();  // MPI_Finalize
  return 0;
}
