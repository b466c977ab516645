// `ternvk run --devices 0,0` (a model split over two logical devices) when one of them fails, with
// faults injected through TERNVK_FAULT (runtime/device/fault_injection.h): a lost device in the
// middle of decode, a failed allocation while loading, and a memory budget too small for a stage.
// Each must end with a non-zero exit (not a signal, not a hang) and a message naming the stage and
// the device, with no validation error.
#include <doctest/doctest.h>

#include <filesystem>

#include "cli/run_process.h"

using namespace ternvk::test;

namespace {

const std::string kTiny = (std::filesystem::path(TERNVK_SHARED_DIR) / "data/models/tiny-random-tq2_0.gguf").string();
const std::string kRun = "run -m " + kTiny + " -p 'Once upon a time' --greedy --devices 0,0";

ProcessResult run_with_fault(const std::string& fault, const std::string& args) {
  return run_ternvk_with("TERNVK_FAULT='" + fault + "'", args);
}

void expect_failure(const ProcessResult& r, std::initializer_list<std::string> needles) {
  CAPTURE(r.err);
  CHECK(r.exit_code == 1);  // a ternvk::Error, not a crash (>= 128) or an unexpected exception (2)
  for (const auto& n : needles) CHECK(r.err.find(n) != std::string::npos);
  CHECK(r.err.find("validation error") == std::string::npos);
}

}  // namespace

TEST_CASE("run --devices 0,0: a device lost in the middle of decode ends the run at once with the stage named") {
  // The second stage's device: its 6th submit (the prompt is 1 prefill step, then decode steps).
  auto r = run_with_fault("device=1,lose_device_at_submit=6", kRun + " -n 24 --split 1,1");
  expect_failure(r, {"ternvk: error: stage 1 on device 0", "logical device 1", "VK_ERROR_DEVICE_LOST"});
  CHECK(r.out.rfind("Once upon a time", 0) == 0);  // what was generated before the loss was printed
  // At once: the error is the loss itself, not a wait that ran out of time on work never submitted.
  CHECK(r.err.find("did not finish") == std::string::npos);
  // The same run without the fault generates to the end.
  auto ok = run_ternvk(kRun + " -n 24 --split 1,1");
  CAPTURE(ok.err);
  CHECK(ok.exit_code == 0);
  // The plan, printed before loading: device, layers, bytes, expected share of the time.
  CHECK(ok.err.find("plan: stage 1 on device 0") != std::string::npos);
  CHECK(ok.err.find("KiB KV cache, expected 50% of a token's time") != std::string::npos);
  CHECK(ok.out.size() > r.out.size());
}

TEST_CASE("run --devices 0,0: a device that fails to allocate while loading names the stage") {
  expect_failure(run_with_fault("device=0,fail_allocation_at=3", kRun + " -n 24 --split 1,1"),
                 {"stage 0 on device 0", "VK_ERROR_OUT_OF_DEVICE_MEMORY"});
  expect_failure(run_with_fault("device=1,memory_budget=50000", kRun + " -n 24 --split 1,1"),
                 {"stage 1 on device 0", "bytes short"});
}

TEST_CASE("run --devices 0,0: an automatic split refuses a device too small for any stage") {
  // Measure the devices once without a budget (the speed calibration is cached), then plan with one.
  auto first = run_ternvk(kRun + " -n 1");
  CAPTURE(first.err);
  REQUIRE(first.exit_code == 0);
  expect_failure(run_with_fault("device=1,memory_budget=100000", kRun + " -n 4"),
                 {"stage 1 on device 0", "logical device 1", "cannot hold even one layer", "bytes missing"});
  expect_failure(run_with_fault("device=1,bogus=1", kRun + " -n 4"), {"TERNVK_FAULT", "unknown key 'bogus'"});
}
