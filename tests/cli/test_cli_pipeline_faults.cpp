// `ternvk run --devices 0,0` (a model split over two logical devices) when one of them fails, with
// faults injected through TERNVK_FAULT (runtime/device/fault_injection.h): a lost device in the
// middle of decode, a failed allocation while loading, and a memory budget too small for a stage.
// Each must end with a non-zero exit (not a signal, not a hang) and a message naming the stage and
// the device, with no validation error.
//
// The tests must hold on any GPU, not just lavapipe: which submit a fault hits is derived from a run
// without the fault, never taken from lavapipe's counts. Each runs twice: as the device is, and with
// its memory made unmappable the way a discrete GPU's is (uploads and downloads through staging
// buffers, with submits of their own, also while loading).
#include <doctest/doctest.h>

#include <filesystem>

#include "cli/run_process.h"
#include "common/fault_spec.h"
#include "runtime/engine/engine.h"
#include "runtime/tokenizer/streaming_decoder.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

const std::string kTiny = (std::filesystem::path(TERNVK_SHARED_DIR) / "data/models/tiny-random-tq2_0.gguf").string();
const std::string kPrompt = "Once upon a time";
const std::string kRun = "run -m " + kTiny + " -p '" + kPrompt + "' --greedy --devices 0,0 --chain-layers off";

ProcessResult run_with_fault(const std::string& fault, const std::string& args) {
  return run_ternvk_with("TERNVK_FAULT='" + fault + "'", args);
}

void expect_failure(const ProcessResult& r, std::initializer_list<std::string> needles) {
  CAPTURE(r.err);
  CHECK(r.exit_code == 1);  // a ternvk::Error, not a crash (>= 128) or an unexpected exception (2)
  for (const auto& n : needles) CHECK(r.err.find(n) != std::string::npos);
  CHECK(r.err.find("validation error") == std::string::npos);
}

// What `kRun --split 1,1` does on the second stage's device (logical device 1), measured in this
// process with the engine and options that command uses (its defaults) and the same faults: its
// submit count once the model is loaded and as each token is handed out, and the text printed by
// then. On lavapipe nothing is submitted while loading; a discrete GPU uploads through staging.
struct SecondStageSubmits {
  uint64_t after_load = 0;
  std::vector<uint64_t> at_token;   // [k]: when token k + 1 is handed out (1: from the prefill)
  std::vector<std::string> output;  // [k]: the text printed once token k + 1 is
  std::string finished;             // all it prints, to the end
};

SecondStageSubmits measure_second_stage(const std::string& faults) {
  InstanceOptions io;
  io.faults = faults;
  Instance inst(io);
  EngineOptions o;
  o.devices = {0, 0};
  o.split = {1, 1};
  Engine engine(inst, kTiny, o);
  const Device& second = engine.stage(1).device();
  REQUIRE(second.ordinal() == 1);
  SecondStageSubmits s;
  s.after_load = second.submit_count();
  Tokenizer& tok = engine.tokenizer();
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy);
  StreamingDecoder decoder(tok);
  std::string printed = kPrompt;
  engine.generate(Engine::ids(tok.encode(kPrompt, tok.bos().has_value())), 24, sampler, [&](uint32_t id) {
    printed += decoder.feed(TokenId(id));
    s.at_token.push_back(second.submit_count());
    s.output.push_back(printed);
    return true;
  });
  s.finished = printed + decoder.flush() + "\n";
  CHECK(inst.validation_errors() == 0);
  return s;
}

}  // namespace

TEST_CASE("run --devices 0,0: a device lost in the middle of decode ends the run at once with the stage named") {
  // The same run without the fault generates to the end; it also leaves the devices' speeds in the
  // calibration cache, so that the measured and the faulted runs below both read them (or, if
  // it cannot be written, both measure them) and submit the same.
  auto ok = run_ternvk(kRun + " -n 24 --split 1,1");
  CAPTURE(ok.err);
  REQUIRE(ok.exit_code == 0);
  // The plan, printed before loading: device, layers, bytes, expected share of the time.
  CHECK(ok.err.find("plan: stage 1 on device 0") != std::string::npos);
  CHECK(ok.err.find("KiB KV cache, expected 50% of a token's time") != std::string::npos);
  for (const bool unmapped : {false, true}) {
    CAPTURE(unmapped);
    const SecondStageSubmits clean = measure_second_stage(fault_spec(unmapped, 2));
    REQUIRE(clean.at_token.size() >= 6);
    CHECK(clean.finished == ok.out);  // the measured run is the command's
    // Lost at the first submit of the step that makes the 5th token: 4 tokens are out by then.
    const uint64_t lose_at = clean.at_token[3] + 1;
    CAPTURE(clean.after_load);
    CAPTURE(lose_at);
    auto r = run_with_fault(fault_spec(unmapped, 2, {{1, "lose_device_at_submit=" + std::to_string(lose_at)}}),
                            kRun + " -n 24 --split 1,1");
    expect_failure(r, {"ternvk: error: stage 1 on device 0", "logical device 1", "VK_ERROR_DEVICE_LOST"});
    CHECK(r.out == clean.output[3]);  // what was generated before the loss was printed, and no more
    // At once: the error is the loss itself, not a wait that ran out of time on work never submitted.
    CHECK(r.err.find("did not finish") == std::string::npos);
  }
}

TEST_CASE("run --devices 0,0: a device that fails to allocate while loading names the stage") {
  for (const bool unmapped : {false, true}) {
    CAPTURE(unmapped);
    // Any device's stage makes more than 3 buffers and needs more than 50000 bytes.
    expect_failure(run_with_fault(fault_spec(unmapped, 2, {{0, "fail_allocation_at=3"}}), kRun + " -n 24 --split 1,1"),
                   {"stage 0 on device 0", "VK_ERROR_OUT_OF_DEVICE_MEMORY"});
    expect_failure(run_with_fault(fault_spec(unmapped, 2, {{1, "memory_budget=50000"}}), kRun + " -n 24 --split 1,1"),
                   {"stage 1 on device 0", "bytes short"});
  }
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
