// A move-only owner of one handle (Vulkan object, GLFW window, ...) and the call that destroys it,
// so every object is released in reverse order of creation, also when a constructor throws
// half-way. Every Vulkan object ternvk creates is held by one from the moment it exists.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>

namespace ternvk {

namespace detail {
inline std::atomic<int64_t> owned_handles_alive{0};
}  // namespace detail

// Handles held by Owned objects right now, process-wide: tests check that a failure at any step
// of building something leaves the count where it was (nothing leaked).
inline int64_t owned_handles_alive() { return detail::owned_handles_alive.load(); }

template <class T>
class Owned {
 public:
  Owned() = default;
  Owned(T handle, std::function<void(T)> destroy) : handle_(handle), destroy_(std::move(destroy)) {
    if (handle_ != T{}) ++detail::owned_handles_alive;
  }
  ~Owned() { reset(); }
  Owned(Owned&& o) noexcept : handle_(std::exchange(o.handle_, T{})), destroy_(std::move(o.destroy_)) {}
  Owned& operator=(Owned&& o) noexcept {
    if (this != &o) {
      reset();
      handle_ = std::exchange(o.handle_, T{});
      destroy_ = std::move(o.destroy_);
    }
    return *this;
  }
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;

  T get() const { return handle_; }
  // For APIs that take an array of handles (vkFreeCommandBuffers, pSignalSemaphores, ...).
  const T* address() const { return &handle_; }
  explicit operator bool() const { return handle_ != T{}; }
  void reset() {
    if (handle_ != T{}) {
      if (destroy_) destroy_(handle_);
      --detail::owned_handles_alive;
    }
    handle_ = T{};
  }

 private:
  T handle_{};
  std::function<void(T)> destroy_;
};

}  // namespace ternvk
