// The executable's operator new: the library's own (malloc, the new-handler loop, bad_alloc),
// which also records the size that failed for out_of_memory_message. Not under the sanitizers,
// whose own operator new reports the same failure with a stack.
#include "cli/out_of_memory.h"

#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "anchorctx/core/cpu_info.h"

namespace anchorctx::cli {
namespace {

std::atomic<std::size_t> g_failed_bytes{0};

std::string size_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 6) {
    bytes /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, units[u]);
}

// A /proc/self/status size in bytes ("VmHWM:", the peak resident memory; "VmPeak:", the peak
// address space, what ulimit -v bounds), 0 when unknown.
double status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(key, 0) == 0) return std::strtod(line.c_str() + key.size(), nullptr) * 1024.0;
  return 0.0;
}

}  // namespace

std::size_t failed_allocation_bytes() {
  return g_failed_bytes.load(std::memory_order_relaxed);
}

std::string out_of_memory_message() {
  std::string message = "out of memory";
  if (const std::size_t failed = failed_allocation_bytes(); failed > 0)
    message += ": an allocation of " + size_text(static_cast<double>(failed)) + " failed";
  std::vector<std::string> context;
  if (const double peak = status_bytes("VmHWM:"); peak > 0)
    context.push_back("the process's peak " + size_text(peak) + " resident, " +
                      size_text(status_bytes("VmPeak:")) + " of address space");
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    context.push_back("address-space limit (ulimit -v) " +
                      size_text(static_cast<double>(limit.rlim_cur)));
  if (const std::int64_t machine = core::physical_memory_bytes(); machine > 0)
    context.push_back("the machine " + size_text(static_cast<double>(machine)));
  if (!context.empty()) message += fmt::format(" ({})", fmt::join(context, "; "));
  return message;
}

}  // namespace anchorctx::cli

#if defined(__SANITIZE_ADDRESS__)
#define ANCHORCTX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ANCHORCTX_ASAN 1
#endif
#endif
#if !defined(ANCHORCTX_ASAN)
namespace {

[[noreturn]] void fail_allocation(std::size_t size) {
  anchorctx::cli::g_failed_bytes.store(size, std::memory_order_relaxed);
  throw std::bad_alloc();
}

}  // namespace

// Replaceable forms (the array and nothrow forms of libstdc++ call these).
void* operator new(std::size_t size) {
  for (;;) {
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    const std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) fail_allocation(size);
    handler();
  }
}

void* operator new(std::size_t size, std::align_val_t alignment) {
  const auto align = static_cast<std::size_t>(alignment);
  // aligned_alloc wants a multiple of the alignment; freed by free(), as libstdc++'s own.
  if (size > std::numeric_limits<std::size_t>::max() - align) fail_allocation(size);
  const std::size_t rounded = size == 0 ? align : (size + align - 1) / align * align;
  for (;;) {
    if (void* p = std::aligned_alloc(align, rounded)) return p;
    const std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) fail_allocation(size);
    handler();
  }
}
#endif
