#include "common/heap_limit.h"

#include <malloc.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace {

std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_live{0};  // net bytes allocated while counting (frees of older blocks count too)
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_limit{INT64_MAX};

void* counted_alloc(size_t size) {
  void* p = std::malloc(size ? size : 1);
  if (p == nullptr) throw std::bad_alloc();
  if (g_counting.load(std::memory_order_relaxed)) {
    const int64_t bytes = int64_t(malloc_usable_size(p));
    const int64_t live = g_live.fetch_add(bytes) + bytes;
    if (live > g_limit.load()) {
      g_live.fetch_sub(bytes);
      std::free(p);
      throw std::bad_alloc();
    }
    int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
  }
  return p;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  if (g_counting.load(std::memory_order_relaxed)) g_live.fetch_sub(int64_t(malloc_usable_size(p)));
  std::free(p);
}

}  // namespace

// libstdc++'s array, nothrow and sized forms call these two; its aligned forms use their own
// aligned_alloc/free pair and are simply not counted.
void* operator new(size_t size) { return counted_alloc(size); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }

namespace ternvk::test {

HeapLimit::HeapLimit(size_t limit_bytes) {
  g_live = 0;
  g_peak = 0;
  g_limit = int64_t(limit_bytes);
  g_counting = true;
}

HeapLimit::~HeapLimit() {
  g_counting = false;
  g_limit = INT64_MAX;
}

size_t HeapLimit::peak() const { return size_t(g_peak.load()); }

}  // namespace ternvk::test
