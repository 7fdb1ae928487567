// The communicator of a one-process run (see communicator.h): rank 0 of a world of 1, where the
// sum over ranks of a value is the value itself, so reductions and the barrier do nothing.
#include <memory>
#include <span>

#include "anchorctx/dist/communicator.h"

namespace anchorctx::dist {
namespace {

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(std::span<float> /*values*/) override {}
  void all_reduce_sum(std::span<double> /*values*/) override {}
  void barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

}  // namespace anchorctx::dist
