// Replaces the global operator new and delete of the test executable with malloc and free plus
// a 16-byte header that records the size asked for, so live_new_bytes() is exact. The array and
// sized forms of libstdc++ forward to these two; the nothrow forms are replaced here as well,
// since AddressSanitizer's runtime defines its own nothrow new (blocks without our header, which
// our delete would then misread). The over-aligned forms keep their own allocator and are not
// counted (no buffer the tests measure uses them).
#include "support/allocation_counter.h"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace anchorctx::test {
namespace {

// A multiple of the alignment malloc gives, so the pointer handed out keeps it.
constexpr std::size_t kHeader = 16;
static_assert(kHeader >= sizeof(std::size_t) && kHeader % alignof(std::max_align_t) == 0);

std::atomic<std::int64_t> g_live_bytes{0};

}  // namespace

std::int64_t live_new_bytes() {
  return g_live_bytes.load(std::memory_order_relaxed);
}

}  // namespace anchorctx::test

void* operator new(std::size_t size) {
  void* block = std::malloc(size + anchorctx::test::kHeader);
  if (block == nullptr) throw std::bad_alloc();
  *static_cast<std::size_t*>(block) = size;
  anchorctx::test::g_live_bytes.fetch_add(static_cast<std::int64_t>(size),
                                          std::memory_order_relaxed);
  return static_cast<char*>(block) + anchorctx::test::kHeader;
}

void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  void* block = static_cast<char*>(p) - anchorctx::test::kHeader;
  anchorctx::test::g_live_bytes.fetch_sub(
      static_cast<std::int64_t>(*static_cast<std::size_t*>(block)), std::memory_order_relaxed);
  std::free(block);
}

void operator delete(void* p, std::size_t) noexcept {
  operator delete(p);
}

void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return operator new(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return operator new(size, std::nothrow);
}

void operator delete(void* p, const std::nothrow_t&) noexcept {
  operator delete(p);
}

void operator delete[](void* p, const std::nothrow_t&) noexcept {
  operator delete(p);
}

// The array forms too: under AddressSanitizer its runtime defines them, and a block from one
// family must never be freed by the other.
void* operator new[](std::size_t size) {
  return operator new(size);
}

void operator delete[](void* p) noexcept {
  operator delete(p);
}

void operator delete[](void* p, std::size_t) noexcept {
  operator delete(p);
}
