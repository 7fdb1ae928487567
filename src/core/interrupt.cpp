// The first SIGINT/SIGTERM sets a flag; the second gets the default action (see interrupt.h).
#include "anchorctx/core/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace {

std::atomic<int> requested{0};
static_assert(std::atomic<int>::is_always_lock_free, "read and written in a signal handler");

void on_signal(int sig) {
  requested.store(sig, std::memory_order_relaxed);
  // Only async-signal-safe calls here: restore the default action and say so with write(2).
  signal(sig, SIG_DFL);
  constexpr char kMessage[] =
      "\nanchorctx: stopping at the next safe point (signal again to stop at once)\n";
  [[maybe_unused]] const ssize_t n = write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (const int sig : {SIGINT, SIGTERM}) {
    // A signal ignored by the parent (`nohup`, a shell's background job) stays ignored.
    struct sigaction old;
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaction(sig, &action, nullptr);
  }
}

int interrupt_signal() {
  return requested.load(std::memory_order_relaxed);
}

std::string signal_name(int sig) {
  if (sig == SIGINT) return "SIGINT";
  if (sig == SIGTERM) return "SIGTERM";
  return fmt::format("signal {}", sig);
}

void throw_if_interrupted(std::string_view where) {
  const int sig = interrupt_signal();
  if (sig != 0) fail("interrupted ({}) {}", signal_name(sig), where);
}

}  // namespace anchorctx::core
