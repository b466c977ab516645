// Host memory used by the code under test: operator new is replaced in every test binary (by
// heap_limit.cpp) with one that counts, while a HeapLimit is alive, the bytes it hands out, and
// refuses (std::bad_alloc) to go past a limit, so a test can show that hostile input is refused
// with bounded memory instead of exhausting the machine.
#pragma once
#include <cstddef>

namespace ternvk::test {

class HeapLimit {
 public:
  // At most `limit_bytes` more than are live now may be live at once until destruction.
  explicit HeapLimit(size_t limit_bytes);
  ~HeapLimit();
  HeapLimit(const HeapLimit&) = delete;
  HeapLimit& operator=(const HeapLimit&) = delete;
  // The most bytes that were live at once, beyond those live at construction.
  size_t peak() const;
};

}  // namespace ternvk::test
