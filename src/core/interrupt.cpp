// The first SIGINT/SIGTERM sets a flag; a later one gets the default action (see interrupt.h).
#include "anchorctx/core/interrupt.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace {

std::atomic<int> requested{0};
std::atomic<long long> requested_at_ns{0};
static_assert(std::atomic<int>::is_always_lock_free, "read and written in a signal handler");
static_assert(std::atomic<long long>::is_always_lock_free, "read and written in a signal handler");

// Signals this close to the first are the same request delivered twice: GNU timeout sends its
// SIGTERM to the child and then to the child's process group, and the second one stopped a
// pack at once, leaving its hidden temporary folder.
constexpr long long kSameRequestNs = 250'000'000;

long long monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe
  return static_cast<long long>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// Only async-signal-safe calls here: clock_gettime, write(2), signal and raise.
void on_signal(int sig) {
  const long long now = monotonic_ns();
  if (requested.load(std::memory_order_relaxed) == 0) {
    requested_at_ns.store(now, std::memory_order_relaxed);
    requested.store(sig, std::memory_order_relaxed);
    constexpr char kMessage[] =
        "\nanchorctx: stopping at the next safe point (signal again to stop at once)\n";
    [[maybe_unused]] const ssize_t n = write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    return;
  }
  if (now - requested_at_ns.load(std::memory_order_relaxed) < kSameRequestNs) return;
  // Asked again: the default action, delivered when this handler returns (sig is blocked here).
  signal(sig, SIG_DFL);
  raise(sig);
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
