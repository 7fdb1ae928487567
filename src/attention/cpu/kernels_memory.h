// The kernels' large arrays: 64-byte aligned, kept per calling thread between calls
// (CallScratch), and per-thread workspaces carved out of one allocation.
//
// Part of kernels_impl.h: included inside its anonymous namespace, once per instruction set,
// after the parts above it there; no includes of its own.
#pragma once

// Arrays on 64-byte boundaries, so that no vector or tile load of a staged operand splits a
// cache line: new[] of a large block returns glibc's mmap'd chunk 16 bytes past a page, which
// made every 64-byte load of the staged tiles touch two lines.
struct FreeAligned {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
using AlignedArray = std::unique_ptr<T[], FreeAligned>;
// Uninitialised unless `zeroed` (the staging writes every element; per-thread tiles may not).
template <typename T>
AlignedArray<T> make_aligned_array(std::size_t n, bool zeroed = false) {
  const std::size_t bytes = (std::max<std::size_t>(n, 1) * sizeof(T) + 63) / 64 * 64;
  AlignedArray<T> array(static_cast<T*>(std::aligned_alloc(64, bytes)));
  if (array == nullptr) throw std::bad_alloc();
  if (zeroed) std::memset(array.get(), 0, bytes);
  return array;
}

// The large arrays of a kernel call (staged inputs, the dQ accumulator: O(T x H x D) each), kept
// by the calling thread for its next call. Fresh arrays cost a page fault and the kernel's zeroing
// per 4 KiB on every call: 90,000 faults per forward + backward at T = 16384, H = 8, D = 128, and
// clear_page alone 5% of that call's samples (perf). A thread keeps the largest arrays it used
// (a training step's peak memory is unchanged: it held them during the call anyway).
class CallScratch {
 public:
  // Each call numbers its own arrays from 0 (a forward's slot 0 is a backward's slot 0 too).
  static constexpr int kSlots = 10;
  // Slot `slot` as at least n T's, 64-byte aligned, contents undefined; valid until the slot
  // is reserved larger. The kernels reserve every slot before their parallel region, so a
  // failed allocation is an exception for the caller, not a throw inside OpenMP.
  template <typename T>
  T* reserve(int slot, std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes > sizes_[slot]) {
      arrays_[slot].reset();  // first: the old and the new array never live at once
      arrays_[slot] = make_aligned_array<std::byte>(bytes);
      sizes_[slot] = bytes;
    }
    return reinterpret_cast<T*>(arrays_[slot].get());
  }

 private:
  AlignedArray<std::byte> arrays_[kSlots];
  std::size_t sizes_[kSlots] = {};
};

CallScratch& call_scratch() {
  thread_local CallScratch scratch;
  return scratch;
}

// Float buffers carved out of one 64-byte aligned allocation per thread.
class Workspace {
 public:
  explicit Workspace(std::initializer_list<std::size_t> sizes) {
    std::size_t total = 0;
    for (std::size_t n : sizes)
      total += (n + 15) / 16 * 16;
    data_ = make_aligned_array<float>(total, true);
    std::size_t offset = 0;
    for (std::size_t n : sizes) {
      parts_.push_back(data_.get() + offset);
      offset += (n + 15) / 16 * 16;
    }
  }
  float* operator[](std::size_t i) const { return parts_[i]; }

 private:
  AlignedArray<float> data_;
  std::vector<float*> parts_;
};

// One T per thread of a parallel region of `threads` threads, all built before the region and
// each taken inside it by its thread (mine()). Why before: an exception cannot leave an OpenMP
// region (the process ends in std::terminate), and a thread's workspaces grow with the caller's
// tile size and query heads per kv head, so their allocation must fail where the caller can
// catch it. A deque, so that building never moves a built T.
template <typename T>
class PerThread {
 public:
  template <typename... Args>
  explicit PerThread(int threads, const Args&... args) {
    for (int i = 0; i < threads; ++i)
      items_.emplace_back(args...);
  }
  // Inside the region: this thread's T (num_threads(threads) numbers them below `threads`).
  T& mine() { return items_[static_cast<std::size_t>(omp_get_thread_num())]; }

 private:
  std::deque<T> items_;
};
