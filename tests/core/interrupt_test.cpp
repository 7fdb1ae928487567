// The interrupt handlers (core/interrupt.h), in child processes (death tests): the first
// SIGTERM is a request, the same one delivered twice at once is still one request, and a later
// one stops the process at once.
#include "anchorctx/core/interrupt.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

namespace anchorctx::core {
namespace {

TEST(InterruptDeathTest, ASignalDeliveredTwiceAtOnceIsOneRequest) {
  // GNU timeout sends its SIGTERM to the child and then to the child's process group: the
  // second one stopped a pack at once, leaving its hidden temporary folder.
  EXPECT_EXIT(
      {
        install_interrupt_handlers();
        raise(SIGTERM);
        raise(SIGTERM);
        std::exit(interrupt_signal() == SIGTERM ? 0 : 1);
      },
      testing::ExitedWithCode(0), "stopping at the next safe point");
}

TEST(InterruptDeathTest, ASignalAskedAgainStopsAtOnce) {
  EXPECT_EXIT(
      {
        install_interrupt_handlers();
        raise(SIGTERM);
        ::usleep(400'000);  // past the 250 ms of one request
        raise(SIGTERM);
        std::exit(0);
      },
      testing::KilledBySignal(SIGTERM), "stopping at the next safe point");
}

}  // namespace
}  // namespace anchorctx::core
