#include "anchorctx/model/op_profile.h"

#include <time.h>

#include <atomic>

namespace anchorctx::model {

namespace {
std::atomic<bool> g_on{false};
std::array<std::atomic<long long>, kOpCount> g_wall_ns{}, g_cpu_ns{};
thread_local OpScope* t_current = nullptr;

long long clock_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}
}  // namespace

void set_op_profile(bool on) {
  if (on)
    for (std::size_t i = 0; i < kOpCount; ++i)
      g_wall_ns[i] = g_cpu_ns[i] = 0;
  g_on = on;
}

OpTimes op_profile() {
  OpTimes times;
  for (std::size_t i = 0; i < kOpCount; ++i) {
    times.wall_ms[i] = static_cast<double>(g_wall_ns[i].load()) * 1e-6;
    times.cpu_ms[i] = static_cast<double>(g_cpu_ns[i].load()) * 1e-6;
  }
  return times;
}

OpScope::OpScope(Op op) : op_(op), on_(g_on.load(std::memory_order_relaxed)) {
  if (!on_) return;
  parent_ = t_current;
  t_current = this;
  start_ns_ = clock_ns(CLOCK_MONOTONIC);
  start_cpu_ns_ = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

OpScope::~OpScope() {
  if (!on_) return;
  const long long cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - start_cpu_ns_;
  const long long wall = clock_ns(CLOCK_MONOTONIC) - start_ns_;
  const auto i = static_cast<std::size_t>(op_);
  g_wall_ns[i] += wall - children_ns_;
  g_cpu_ns[i] += cpu - children_cpu_ns_;
  if (parent_) {
    parent_->children_ns_ += wall;
    parent_->children_cpu_ns_ += cpu;
  }
  t_current = parent_;
}

}  // namespace anchorctx::model
