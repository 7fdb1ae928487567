// The communicator of a one-process run (see communicator.h): rank 0 of a world of 1, where the
// sum over ranks of a value is the value itself, so reductions and the barrier do nothing and the
// exchanges copy this rank's block to itself. Sizes are still checked, so a caller that would be
// wrong on many ranks is already wrong on one.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string_view>

#include "anchorctx/core/error.h"
#include "anchorctx/dist/communicator.h"

namespace anchorctx::dist {
namespace {

void require_one_count(std::span<const std::size_t> counts, std::size_t size, const char* what) {
  require(counts.size() == 1, "communicator {}: {} counts for a world of 1", what, counts.size());
  require(counts[0] == size, "communicator {}: count {} but {} values", what, counts[0], size);
}

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(std::span<float> /*values*/) override {}
  void all_reduce_sum(std::span<double> /*values*/) override {}
  void all_reduce_sum(std::span<std::int64_t> /*values*/) override {}
  void all_reduce_max(std::span<double> /*values*/) override {}
  void broadcast(std::span<std::byte> /*bytes*/, int root) override {
    require(root == 0, "communicator broadcast: root {} in a world of 1", root);
  }
  void all_to_all(std::span<const float> send, std::span<const std::size_t> send_counts,
                  std::span<float> recv, std::span<const std::size_t> recv_counts) override {
    require_one_count(send_counts, send.size(), "all_to_all send");
    require_one_count(recv_counts, recv.size(), "all_to_all recv");
    require(send.size() == recv.size(), "communicator all_to_all: sends {} but receives {}",
            send.size(), recv.size());
    std::copy(send.begin(), send.end(), recv.begin());
  }
  void all_gather(std::span<const float> mine, std::span<float> all,
                  std::span<const std::size_t> counts) override {
    require_one_count(counts, mine.size(), "all_gather");
    require(all.size() == mine.size(), "communicator all_gather: output {} for {} values",
            all.size(), mine.size());
    std::copy(mine.begin(), mine.end(), all.begin());
  }
  void reduce_scatter_sum(std::span<const float> values, std::span<float> mine,
                          std::span<const std::size_t> counts) override {
    require_one_count(counts, values.size(), "reduce_scatter_sum");
    require(mine.size() == values.size(), "communicator reduce_scatter_sum: output {} for {}",
            mine.size(), values.size());
    std::copy(values.begin(), values.end(), mine.begin());
  }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int /*color*/, int /*key*/) override {
    return std::make_unique<SingleProcessCommunicator>();
  }
  [[noreturn]] void abort(std::string_view reason) override {
    std::fprintf(stderr, "anchorctx: error: %.*s\n", static_cast<int>(reason.size()),
                 reason.data());
    std::exit(1);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

}  // namespace anchorctx::dist
