// The speed calibration behind automatic splits is cached per physical device and driver
// version: a figure measured under one driver is not reused after a driver upgrade.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/gpu.h"
#include "runtime/engine/placement.h"

using namespace ternvk;
using namespace ternvk::test;
namespace fs = std::filesystem;

TEST_CASE("the calibration cache is keyed by device UUID and driver version") {
  ValidationGuard guard;
  const fs::path dir = fs::path(TERNVK_BINARY_DIR) / "test-tmp" / "calibration";
  fs::remove_all(dir);
  fs::create_directories(dir / "ternvk");
  REQUIRE(setenv("XDG_CACHE_HOME", dir.c_str(), 1) == 0);

  const DeviceInfo& info = device().info();
  const fs::path path = calibration_cache_path(info);
  CHECK(path.parent_path() == dir / "ternvk");
  char version[16];
  std::snprintf(version, sizeof version, "%08x", info.driver_version);
  CHECK(path.filename().string().find(version) != std::string::npos);
  DeviceInfo upgraded = info;
  upgraded.driver_version += 1;
  DeviceInfo other_device = info;
  other_device.device_uuid[3] ^= 0x5a;
  CHECK(calibration_cache_path(upgraded) != path);
  CHECK(calibration_cache_path(other_device) != path);
  CHECK(calibration_cache_path(other_device) != calibration_cache_path(upgraded));

  // A cached figure is what the device's calibration returns, without measuring...
  const double planted = 1234.5;  // six significant digits survive the text file
  std::ofstream(path) << planted << "\n";
  CHECK(calibrate_ternary_gemv(device()) == planted);
  // ...but the same device under another driver version measures again and keeps its own figure.
  Device after_upgrade(instance(), upgraded);
  const double measured = calibrate_ternary_gemv(after_upgrade);
  CHECK(measured > 0);
  CHECK(measured != planted);
  std::ifstream kept(calibration_cache_path(upgraded));
  double cached = 0;
  REQUIRE(bool(kept >> cached));
  CHECK(cached == doctest::Approx(measured).epsilon(1e-5));
  std::ifstream old(path);
  REQUIRE(bool(old >> cached));
  CHECK(cached == planted);

  unsetenv("XDG_CACHE_HOME");
  fs::remove_all(dir);
}
