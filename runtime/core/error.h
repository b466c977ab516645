// One error type for the whole runtime: a message a user can act on (what, where, expected vs found).
#pragma once
#include <stdexcept>
#include <string>

namespace ternvk {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Thrown when a device heap cannot hold what was asked; callers may catch it to try a smaller plan.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

}  // namespace ternvk
