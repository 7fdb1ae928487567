// The MPI backend of the Communicator (see communicator.h for the contract).
//
// Reproducible sums: MPI_Allreduce(MPI_SUM) adds in whatever order the library's algorithm picks
// (a tree, a ring, by message size and process count), so its float result may differ between
// ranks' positions and runs. Here every reduction is two exchanges: each rank sends block p of
// its values to rank p (MPI_Alltoallv), rank p adds the blocks it received in rank order
// 0, 1, ..., n-1, and the summed blocks are exchanged back (all-gather). Each element is therefore
// summed once, by one rank, in rank order: the same bits on every rank, in every run, for any
// network or thread count, and equal to a loop over the ranks' values in one process.
//
// Sizes: MPI counts and displacements are int. Every exchange is packed into contiguous buffers
// and runs in rounds of at most `max_message_` elements per peer (max_message_ * ranks fits an
// int), so any size works; one code path for all sizes, which the tests run with a tiny round.
//
// Failure: MPI_COMM_WORLD keeps MPI_ERRORS_ARE_FATAL, so an MPI error ends every rank; abort()
// calls MPI_Abort on the world, which Open MPI's launcher turns into a kill of every process.
#include "dist/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/core/error.h"

namespace anchorctx::dist {
namespace {

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<std::int64_t>() {
  return MPI_INT64_T;
}

// Offsets of consecutive blocks of `counts` (offsets[p] = sum of counts[0..p)).
std::vector<std::size_t> offsets_of(std::span<const std::size_t> counts) {
  std::vector<std::size_t> offsets(counts.size() + 1, 0);
  for (std::size_t p = 0; p < counts.size(); ++p)
    offsets[p + 1] = offsets[p] + counts[p];
  return offsets;
}

// `n` elements split into `parts` blocks as even as possible (the first n % parts one larger).
std::vector<std::size_t> even_counts(std::size_t n, int parts) {
  std::vector<std::size_t> counts(static_cast<std::size_t>(parts));
  for (int p = 0; p < parts; ++p)
    counts[static_cast<std::size_t>(p)] =
        n / static_cast<std::size_t>(parts) + (static_cast<std::size_t>(p) < n % parts ? 1 : 0);
  return counts;
}

class MpiCommunicator final : public Communicator {
 public:
  // Takes `comm` (freed on destruction unless it is MPI_COMM_WORLD); `owns_mpi`: finalise MPI
  // on destruction (the world's communicator).
  MpiCommunicator(MPI_Comm comm, std::size_t max_message, bool owns_mpi)
      : comm_(comm), owns_mpi_(owns_mpi), unwinding_at_creation_(std::uncaught_exceptions()) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
    // One round's packed buffer holds max_message_ elements from each rank: an int count.
    const std::size_t limit = static_cast<std::size_t>(INT_MAX) / static_cast<std::size_t>(size_);
    max_message_ = std::max<std::size_t>(1, std::min(max_message, limit));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    // Destroyed by an exception on its way out: the other ranks may be waiting in a
    // collective, and MPI_Comm_free (collective) and MPI_Finalize would wait for them in turn,
    // forever. A sub-group is left to MPI's end (run_or_abort above it still has the error to
    // print); the world, reached only when nothing caught the error on its way (a command not
    // run through run_or_abort), ends every rank instead of finalising.
    if (std::uncaught_exceptions() > unwinding_at_creation_ && size_ > 1) {
      if (!owns_mpi_) return;
      abort("an error ended this rank (its message was not caught before MPI's end)");
    }
    if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }

  void all_reduce_sum(std::span<float> values) override { all_reduce(values, Sum{}); }
  void all_reduce_sum(std::span<double> values) override { all_reduce(values, Sum{}); }
  void all_reduce_sum(std::span<std::int64_t> values) override { all_reduce(values, Sum{}); }
  void all_reduce_max(std::span<double> values) override { all_reduce(values, Max{}); }

  void broadcast(std::span<std::byte> bytes, int root) override {
    require(root >= 0 && root < size_, "communicator broadcast: root {} in a group of {}", root,
            size_);
    const auto chunk = static_cast<std::size_t>(INT_MAX);
    for (std::size_t begin = 0; begin < bytes.size(); begin += chunk) {
      const std::size_t n = std::min(chunk, bytes.size() - begin);
      MPI_Bcast(bytes.data() + begin, static_cast<int>(n), MPI_BYTE, root, comm_);
    }
  }

  void all_to_all(std::span<const float> send, std::span<const std::size_t> send_counts,
                  std::span<float> recv, std::span<const std::size_t> recv_counts) override {
    check_counts(send_counts, send.size(), "all_to_all send");
    check_counts(recv_counts, recv.size(), "all_to_all recv");
    const std::vector<std::size_t> so = offsets_of(send_counts), ro = offsets_of(recv_counts);
    std::vector<std::span<const float>> out(static_cast<std::size_t>(size_));
    std::vector<std::span<float>> in(static_cast<std::size_t>(size_));
    for (std::size_t p = 0; p < out.size(); ++p) {
      out[p] = send.subspan(so[p], send_counts[p]);
      in[p] = recv.subspan(ro[p], recv_counts[p]);
    }
    // The peers' counts are not known here: the number of rounds is agreed on first.
    exchange(out, in, agreed_rounds(std::max(max_of(send_counts), max_of(recv_counts))));
  }

  void all_gather(std::span<const float> mine, std::span<float> all,
                  std::span<const std::size_t> counts) override {
    check_counts(counts, all.size(), "all_gather");
    require(mine.size() == counts[static_cast<std::size_t>(rank_)],
            "communicator all_gather: rank {} gives {} values, its count is {}", rank_, mine.size(),
            counts[static_cast<std::size_t>(rank_)]);
    const std::vector<std::size_t> o = offsets_of(counts);
    std::vector<std::span<const float>> out(static_cast<std::size_t>(size_), mine);
    std::vector<std::span<float>> in(static_cast<std::size_t>(size_));
    for (std::size_t p = 0; p < in.size(); ++p)
      in[p] = all.subspan(o[p], counts[p]);
    exchange(out, in, rounds_for(max_of(counts)));
  }

  void reduce_scatter_sum(std::span<const float> values, std::span<float> mine,
                          std::span<const std::size_t> counts) override {
    check_counts(counts, values.size(), "reduce_scatter_sum");
    require(mine.size() == counts[static_cast<std::size_t>(rank_)],
            "communicator reduce_scatter_sum: rank {} receives into {} values, its count is {}",
            rank_, mine.size(), counts[static_cast<std::size_t>(rank_)]);
    reduce_blocks<float>(values, mine, counts, Sum{});
  }

  void barrier() override { MPI_Barrier(comm_); }

  std::unique_ptr<Communicator> split(int color, int key) override {
    require(color >= 0, "communicator split: color {} must not be negative", color);
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_Comm_split(comm_, color, key, &sub);
    return std::make_unique<MpiCommunicator>(sub, max_message_, false);
  }

  [[noreturn]] void abort(std::string_view reason) override {
    std::fprintf(stderr, "anchorctx: error: rank %d: %.*s\n", world_rank_,
                 static_cast<int>(reason.size()), reason.data());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);  // MPI_Abort does not return; this keeps [[noreturn]] true if it did
  }

 private:
  struct Sum {
    template <class T>
    T operator()(T a, T b) const {
      return a + b;
    }
  };
  // NaN wins, as a non-finite value on one rank must be seen by all.
  struct Max {
    double operator()(double a, double b) const {
      if (std::isnan(a) || std::isnan(b)) return std::nan("");
      return std::max(a, b);
    }
  };

  static std::size_t max_of(std::span<const std::size_t> counts) {
    std::size_t m = 0;
    for (std::size_t c : counts)
      m = std::max(m, c);
    return m;
  }
  std::size_t rounds_for(std::size_t largest) const {
    return (largest + max_message_ - 1) / max_message_;
  }
  std::size_t agreed_rounds(std::size_t largest) {
    auto rounds = static_cast<std::uint64_t>(rounds_for(largest));
    MPI_Allreduce(MPI_IN_PLACE, &rounds, 1, MPI_UINT64_T, MPI_MAX, comm_);
    return static_cast<std::size_t>(rounds);
  }

  void check_counts(std::span<const std::size_t> counts, std::size_t total, const char* what) {
    require(counts.size() == static_cast<std::size_t>(size_),
            "communicator {}: {} counts for a group of {}", what, counts.size(), size_);
    std::size_t sum = 0;
    for (std::size_t c : counts)
      sum += c;
    require(sum == total, "communicator {}: counts sum to {} but the buffer holds {}", what, sum,
            total);
  }

  // Sends out[p] to rank p and receives in[p] from rank p (in[p].size() must equal what p sends
  // here), in `rounds` MPI_Alltoallv calls of at most max_message_ elements per peer, packed.
  template <class T>
  void exchange(std::span<const std::span<const T>> out, std::span<const std::span<T>> in,
                std::size_t rounds) {
    const auto n = static_cast<std::size_t>(size_);
    std::vector<int> scount(n), sdispl(n), rcount(n), rdispl(n);
    std::vector<T> sbuf, rbuf;
    for (std::size_t round = 0; round < rounds; ++round) {
      const std::size_t begin = round * max_message_;
      int stotal = 0, rtotal = 0;
      for (std::size_t p = 0; p < n; ++p) {
        const std::size_t s =
            out[p].size() > begin ? std::min(max_message_, out[p].size() - begin) : 0;
        const std::size_t r =
            in[p].size() > begin ? std::min(max_message_, in[p].size() - begin) : 0;
        scount[p] = static_cast<int>(s);
        rcount[p] = static_cast<int>(r);
        sdispl[p] = stotal;
        rdispl[p] = rtotal;
        stotal += scount[p];
        rtotal += rcount[p];
      }
      sbuf.resize(static_cast<std::size_t>(stotal));
      rbuf.resize(static_cast<std::size_t>(rtotal));
      // A peer with nothing left this round is skipped: its span may be empty with a null
      // data(), and null + begin is undefined even when nothing is copied.
      for (std::size_t p = 0; p < n; ++p)
        if (scount[p] > 0) std::copy_n(out[p].data() + begin, scount[p], sbuf.data() + sdispl[p]);
      MPI_Alltoallv(sbuf.data(), scount.data(), sdispl.data(), mpi_type<T>(), rbuf.data(),
                    rcount.data(), rdispl.data(), mpi_type<T>(), comm_);
      for (std::size_t p = 0; p < n; ++p)
        if (rcount[p] > 0) std::copy_n(rbuf.data() + rdispl[p], rcount[p], in[p].data() + begin);
    }
  }
  template <class T>
  void exchange(const std::vector<std::span<const T>>& out, const std::vector<std::span<T>>& in,
                std::size_t rounds) {
    exchange<T>(std::span<const std::span<const T>>(out), std::span<const std::span<T>>(in),
                rounds);
  }

  // Rank r receives block r of every rank's `values` and combines them in rank order into
  // `mine`: out = op(...op(op(v_0, v_1), v_2)..., v_{n-1}).
  template <class T, class Op>
  void reduce_blocks(std::span<const T> values, std::span<T> mine,
                     std::span<const std::size_t> counts, Op op) {
    const auto n = static_cast<std::size_t>(size_);
    const std::vector<std::size_t> o = offsets_of(counts);
    const std::size_t own = counts[static_cast<std::size_t>(rank_)];
    std::vector<T> received(own * n);
    std::vector<std::span<const T>> out(n);
    std::vector<std::span<T>> in(n);
    for (std::size_t p = 0; p < n; ++p) {
      out[p] = values.subspan(o[p], counts[p]);
      in[p] = std::span<T>(received).subspan(p * own, own);
    }
    exchange(out, in, rounds_for(max_of(counts)));
    std::copy_n(received.data(), own, mine.data());
    for (std::size_t p = 1; p < n; ++p) {
      const T* block = received.data() + p * own;
      for (std::size_t i = 0; i < own; ++i)
        mine[i] = op(mine[i], block[i]);
    }
  }

  // Reduce-scatter over even blocks, then every rank gathers the combined blocks.
  template <class T, class Op>
  void all_reduce(std::span<T> values, Op op) {
    if (size_ == 1) return;
    const std::vector<std::size_t> counts = even_counts(values.size(), size_);
    const std::vector<std::size_t> o = offsets_of(counts);
    const std::size_t own = counts[static_cast<std::size_t>(rank_)];
    std::vector<T> mine(own);
    reduce_blocks<T>(values, mine, counts, op);
    const auto n = static_cast<std::size_t>(size_);
    std::vector<std::span<const T>> out(n, std::span<const T>(mine));
    std::vector<std::span<T>> in(n);
    for (std::size_t p = 0; p < n; ++p)
      in[p] = values.subspan(o[p], counts[p]);
    exchange(out, in, rounds_for(max_of(counts)));
  }

  MPI_Comm comm_;
  bool owns_mpi_;
  int unwinding_at_creation_;  // std::uncaught_exceptions() when created
  int rank_ = 0, size_ = 1, world_rank_ = 0;
  std::size_t max_message_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world_communicator(std::size_t max_message_floats) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  require(!initialized, "MPI was initialised twice (the world communicator owns MPI_Init)");
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  // 2^26 floats (256 MiB) per peer and round by default: large messages, bounded packing buffers.
  const std::size_t max_message =
      max_message_floats > 0 ? max_message_floats : std::size_t{1} << 26;
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, max_message, true);
}

}  // namespace anchorctx::dist
