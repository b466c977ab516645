// One error type for the whole runtime: a message a user can act on (what, where, expected vs found).
#pragma once
#include <exception>
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

// Thrown when a device reports VK_ERROR_DEVICE_LOST (driver reset, hang, unplugged eGPU). The
// device is unusable from then on: the caller must stop using it, not retry.
class DeviceLostError : public Error {
 public:
  using Error::Error;
};

// Rethrows the exception being handled with `prefix` before its message, keeping its ternvk type
// (DeviceLostError, OutOfMemoryError, Error), so callers that add context (which stage, which
// device) do not turn a lost device into a plain Error. Call only inside a catch block.
[[noreturn]] inline void rethrow_with_context(const std::string& prefix) {
  try {
    throw;
  } catch (const DeviceLostError& e) {
    throw DeviceLostError(prefix + e.what());
  } catch (const OutOfMemoryError& e) {
    throw OutOfMemoryError(prefix + e.what());
  } catch (const Error& e) {
    throw Error(prefix + e.what());
  }
}

}  // namespace ternvk
