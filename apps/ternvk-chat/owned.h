// A move-only owner of one handle (Vulkan object, GLFW window, ...) and the call that destroys it,
// so every object the window creates is released in reverse order of creation, also when a
// constructor throws half-way.
#pragma once
#include <functional>
#include <utility>

namespace ternvk::chat {

template <class T>
class Owned {
 public:
  Owned() = default;
  Owned(T handle, std::function<void(T)> destroy) : handle_(handle), destroy_(std::move(destroy)) {}
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
  explicit operator bool() const { return handle_ != T{}; }
  void reset() {
    if (handle_ != T{} && destroy_) destroy_(handle_);
    handle_ = T{};
  }

 private:
  T handle_{};
  std::function<void(T)> destroy_;
};

}  // namespace ternvk::chat
