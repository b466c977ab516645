// Helpers shared by the formats tests: paths of the shared data, error-message matchers, scratch dirs.
#pragma once
#include <doctest/doctest.h>

#include <filesystem>
#include <random>
#include <string>

#include "runtime/core/error.h"

namespace ternvk::test {

inline std::filesystem::path shared_path(const std::string& relative) {
  return std::filesystem::path(TERNVK_SHARED_DIR) / relative;
}

inline std::filesystem::path model_path(const std::string& name) {
  return shared_path("data/models/" + name);
}

// A fresh directory under the build tree, removed and recreated on each call.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(TERNVK_BINARY_DIR) / "test-scratch" / "formats" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Runs `fn`, requires it to throw ternvk::Error, and returns the message for further checks.
template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected ternvk::Error, got another exception: " << e.what());
    return {};
  }
  FAIL("expected ternvk::Error, nothing was thrown");
  return {};
}

// Requires `fn` to throw ternvk::Error whose message contains every one of `parts`.
template <typename Fn, typename... Parts>
void require_error(Fn&& fn, const Parts&... parts) {
  const std::string message = error_message(fn);
  INFO("error message: " << message);
  for (const std::string& part : {std::string(parts)...}) {
    CHECK_MESSAGE(message.find(part) != std::string::npos, "missing: " << part);
  }
}

}  // namespace ternvk::test
