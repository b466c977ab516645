// The profiler's reusable parts: per-shader and per-op aggregation on synthetic timings, the work a
// recorded pass states about itself, the Chrome trace (parsed back with nlohmann-json), the PNG encoder
// (signature, IHDR, CRCs, zlib stream). The bandwidth probe: test_bandwidth.cpp.
#include <doctest/doctest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "common/gpu.h"
#include "runtime/profiler/aggregate.h"
#include "runtime/profiler/chrome_trace.h"
#include "runtime/profiler/pipeline.h"
#include "runtime/profiler/png_chart.h"
#include "runtime/profiler/pass_record.h"

using namespace ternvk;
using namespace ternvk::profiler;

namespace {
uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
}
}  // namespace

TEST_CASE("kind_of groups shader variants; matrix_of names matmul labels") {
  CHECK(kind_of("fused_linear_dot_rope") == "fused_linear");
  CHECK(matrix_of("layer 12 gate|up") == "gate|up");
  CHECK(matrix_of("token embedding / output head") == "head");
  CHECK(matrix_of("layer 1 foo") == "");
  CHECK(kind_of("ternary_matmul_dot") == "ternary_matmul");
  CHECK(kind_of("ternary_matmul_swar") == "ternary_matmul");
  CHECK(kind_of("attention_flash_decode") == "attention");
  CHECK(kind_of("fp16_matmul_xscalar") == "fp16_matmul");
  CHECK(kind_of("rmsnorm_quant") == "rmsnorm_quant");
  CHECK(kind_of("rmsnorm_shared") == "rmsnorm");
  CHECK(kind_of("attention_split") == "attention");
  CHECK(kind_of("attention_combine") == "attention_combine");
  CHECK(kind_of("argmax_merge_shared") == "argmax_merge");
  CHECK(kind_of("rope_kv") == "rope");
  CHECK(kind_of("something_new") == "something_new");
}

TEST_CASE("aggregation: calls, totals, min/max, shares and each command's work") {
  Aggregator agg, by_op;
  const std::vector<TimedCommand> pass = {{"rmsnorm_quant", "rmsnorm_quant", 10, Work{200, 0}},
                                          {"ternary_matmul_dot", "qkv", 100, Work{2000, 400}},
                                          {"ternary_matmul_dot", "o", 50, Work{1000, 200}},
                                          {"mystery", "mystery", 40, std::nullopt}};
  for (int i = 0; i < 2; ++i) {
    agg.add_pass(pass);
    by_op.add_pass(pass, true);
  }
  CHECK(agg.passes() == 2);
  CHECK(agg.dispatches() == 8);
  CHECK(agg.total_us() == doctest::Approx(400));
  const auto rows = agg.rows();
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].label == "ternary_matmul_dot");  // largest total first
  CHECK(rows[0].kind == "ternary_matmul");
  CHECK(rows[0].calls == 4);
  CHECK(rows[0].total_us == doctest::Approx(300));
  CHECK(rows[0].mean_us() == doctest::Approx(75));
  CHECK(rows[0].min_us == doctest::Approx(50));
  CHECK(rows[0].max_us == doctest::Approx(100));
  CHECK(rows[0].share == doctest::Approx(0.75));
  CHECK(rows[0].work_known);
  CHECK(rows[0].bytes == doctest::Approx(6000));
  CHECK(rows[0].macs == doctest::Approx(1200));
  CHECK(rows[0].gb_per_s() == doctest::Approx(6000.0 / (300 * 1e3)));  // bytes / ns
  CHECK(rows[0].gmac_per_s() == doctest::Approx(1200.0 / (300 * 1e3)));
  CHECK(rows[1].label == "mystery");
  CHECK_FALSE(rows[1].work_known);
  CHECK(rows[2].label == "rmsnorm_quant");
  CHECK(rows[2].bytes == doctest::Approx(400));
  double shares = 0;
  for (const auto& r : rows) shares += r.share;
  CHECK(shares == doctest::Approx(1.0));
  // By op: the two matmuls are two rows, each with its own work.
  const auto ops = by_op.rows();
  REQUIRE(ops.size() == 4);
  CHECK(ops[0].label == "qkv");
  CHECK(ops[0].bytes == doctest::Approx(4000));
  CHECK(ops[1].label == "o");
  CHECK(ops[1].macs == doctest::Approx(400));
}

TEST_CASE("a recording states what it dispatched and the work of each command") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  Buffer a = dev.create_buffer(1024, MemoryKind::DeviceLocal, "a"), b = dev.create_buffer(1024, MemoryKind::DeviceLocal, "b");
  const Pipeline& fill = dev.pipeline("fill", {.constants = {{0, 64}}});
  struct {
    uint32_t count, value;
  } push{256, 7};
  Recording rec(dev, {.timestamps = true});
  rec.dispatch(fill, {a.range()}, push, 4, 1, 1, {"layer 2 qkv", DispatchWork{.bytes = 1024, .macs = 5}});
  rec.dispatch(fill, {b.range()}, push, 4);  // no note: named by its shader, work unknown
  rec.copy(a.range(0, 128), b.range(0, 128));
  rec.submit_and_wait();
  const auto& cmds = rec.commands();
  REQUIRE(cmds.size() == 3);
  CHECK(cmds[0].kind == RecordedCommand::Dispatch);
  CHECK(cmds[0].shader == "fill");
  CHECK(cmds[0].label == "layer 2 qkv");
  REQUIRE(cmds[0].work);
  CHECK(cmds[0].work->bytes == 1024);
  CHECK(cmds[1].label == "fill");
  CHECK_FALSE(cmds[1].work);
  CHECK(cmds[2].kind == RecordedCommand::Copy);
  CHECK(cmds[2].work->bytes == doctest::Approx(256));  // read + written
  const auto totals = pass_totals(rec, {});
  CHECK(totals.dispatches == 2);  // the copy is not a dispatch
  CHECK(totals.unknown == 1);
  CHECK(totals.work.bytes == doctest::Approx(1024 + 256));
  CHECK(totals.work.macs == doctest::Approx(5));
  const auto timed = timed_commands(rec, {});
  REQUIRE(timed.size() == 3);
  CHECK(timed[0].op == "qkv");  // matmul labels are named by matrix
  CHECK(timed[1].op == "fill");
  CHECK(timed[2].op == "copy");
  if (dev.info().timestamps) CHECK(rec.timings().size() == 3);
  // Per-key work (attention): bytes per live key (rows 0..7 of the sequence, read once), MACs per
  // attended key (tokens at positions 4, 5, 6 attend to 5, 6 and 7 keys).
  const ReplayKeys keys = one_sequence_keys(3, 4);
  CHECK(keys.live == 7);
  CHECK(keys.attended == 5 + 6 + 7);
  const DispatchWork per_key{.bytes = 10, .macs = 0, .bytes_per_key = 2, .macs_per_key = 3};
  CHECK(per_key.bytes_at(keys.live) == doctest::Approx(10 + 2 * 7));
  CHECK(per_key.macs_at(keys.attended) == doctest::Approx(3 * 18));
}

TEST_CASE("a recording timed per pass has one time for the whole pass") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  if (!dev.info().timestamps) return;
  Buffer a = dev.create_buffer(1024, MemoryKind::DeviceLocal, "a"), b = dev.create_buffer(1024, MemoryKind::DeviceLocal, "b");
  Recording rec(dev, {.timestamps = true, .whole_pass = true});
  rec.copy(a.range(), b.range());
  rec.copy(b.range(), a.range());
  rec.submit_and_wait();
  CHECK(rec.timestamp_mode() == TimestampMode::Pass);
  const auto t = rec.timings();
  REQUIRE(t.size() == 1);
  CHECK(t[0].label == "pass");
  CHECK(rec.pass_microseconds() == doctest::Approx(t[0].microseconds));
  CHECK(rec.commands().size() == 2);
  for (const auto& c : timed_commands(rec, {})) CHECK(c.microseconds == 0);  // no per-command times in this mode
}

TEST_CASE("chrome trace: valid JSON with named tracks and back-to-back GPU events") {
  ChromeTrace t;
  t.process_name(1, "GPU 0: \"llvmpipe\"\n");
  t.thread_name(1, 1, "compute queue");
  t.process_name(2, "host");
  t.complete(2, 1, "decode 0", "host", 5.0, 300.0);
  const std::vector<DispatchTiming> d = {{"rmsnorm_quant", 10.5}, {"ternary_matmul_dot", 100.25}, {"argmax", 3}};
  const double end = t.add_replay(1, 1, 100.0, d, "decode", "decode 0");
  CHECK(end == doctest::Approx(213.75));
  const auto j = nlohmann::json::parse(t.json());
  REQUIRE(j.contains("traceEvents"));
  const auto& ev = j["traceEvents"];
  REQUIRE(ev.size() == 7);
  int meta = 0, gpu = 0;
  double expect_ts = 100.0;
  for (const auto& e : ev) {
    if (e["ph"] == "M") {
      ++meta;
      CHECK(e["args"].contains("name"));
      continue;
    }
    CHECK(e["ph"] == "X");
    if (e["pid"] == 1) {
      CHECK(e["name"] == d[size_t(gpu)].label);
      CHECK(e["ts"].get<double>() == doctest::Approx(expect_ts));
      CHECK(e["dur"].get<double>() == doctest::Approx(d[size_t(gpu)].microseconds));
      CHECK(e["args"]["step"] == "decode 0");
      CHECK(e["tid"] == 1);
      expect_ts += d[size_t(gpu)].microseconds;
      ++gpu;
    }
  }
  CHECK(meta == 3);
  CHECK(gpu == 3);
  CHECK(ev[0]["args"]["name"] == "GPU 0: \"llvmpipe\"\n");  // escaping round-trips
}

TEST_CASE("chrome trace: a pipeline step puts each stage on its device's track and the hand-over between them") {
  using Clock = std::chrono::steady_clock;
  using us = std::chrono::microseconds;
  const Clock::time_point t0 = Clock::now();
  // Stage 0 is submitted at 100 us and waited for until 600; stage 1 is submitted at 650 (a 50 us
  // hand-over) and done at 1000; stage 2 is submitted at 1030.
  const std::vector<QueueEvent> q0 = {{QueueEvent::Submit, t0 + us(100), t0 + us(110)},
                                      {QueueEvent::Wait, t0 + us(110), t0 + us(600)}};
  // Stage 1's device also ran a staging upload (the hand-over on a discrete GPU) before its pass.
  const std::vector<QueueEvent> q1 = {{QueueEvent::Submit, t0 + us(610), t0 + us(612), true},
                                      {QueueEvent::Wait, t0 + us(612), t0 + us(640), true},
                                      {QueueEvent::Submit, t0 + us(650), t0 + us(655)},
                                      {QueueEvent::Wait, t0 + us(655), t0 + us(1000)}};
  const std::vector<QueueEvent> q2 = {{QueueEvent::Submit, t0 + us(1030), t0 + us(1031)},
                                      {QueueEvent::Wait, t0 + us(1031), t0 + us(1200)}};
  const std::vector<DispatchTiming> d0 = {{"embedding", 20}, {"ternary_matmul_dot", 300}};
  const std::vector<DispatchTiming> d1 = {{"ternary_matmul_dot", 250}};
  const std::vector<DispatchTiming> d2 = {{"argmax", 100}};
  const std::vector<ChromeTrace::StageStep> stages = {{1, q0, d0, {}}, {2, q1, d1, {}}, {3, q2, d2, {}}};
  ChromeTrace t;
  const auto handovers = t.add_pipeline_step(stages, t0, "decode", "decode 0", 4, 2);
  REQUIRE(handovers.size() == 2);
  CHECK(handovers[0] == doctest::Approx(50));
  CHECK(handovers[1] == doctest::Approx(30));
  const auto j = nlohmann::json::parse(t.json());
  std::map<int, double> first_gpu_ts;
  int handover_events = 0, host_calls = 0;
  for (const auto& e : j["traceEvents"]) {
    const int pid = e["pid"], tid = e["tid"];
    if (e["cat"] == "handover") {
      CHECK(pid == 4);
      CHECK(tid == 2);
      CHECK(e["args"]["step"] == "decode 0");
      const double ts = e["ts"], dur = e["dur"];
      if (handover_events == 0) {
        CHECK(e["name"] == "hand-over 0 -> 1");
        CHECK(ts == doctest::Approx(600));
        CHECK(dur == doctest::Approx(50));
      } else {
        CHECK(e["name"] == "hand-over 1 -> 2");
        CHECK(ts == doctest::Approx(1000));
        CHECK(dur == doctest::Approx(30));
      }
      ++handover_events;
    } else if (tid == 1 && !first_gpu_ts.count(pid)) {
      first_gpu_ts[pid] = e["ts"];
      CHECK(e["cat"] == "decode");
    } else if (tid == 2) {
      const std::string name = e["name"];
      CHECK((name == "submit" || name == "wait" || name == "transfer submit" || name == "transfer wait"));
      ++host_calls;
    }
  }
  CHECK(handover_events == 2);
  CHECK(host_calls == 8);
  CHECK(first_gpu_ts[1] == doctest::Approx(100));  // each stage's GPU work starts at its submit
  CHECK(first_gpu_ts[2] == doctest::Approx(650));
  CHECK(first_gpu_ts[3] == doctest::Approx(1030));

  // Logs that do not pair up (two submits of a stage in one step) are an error, not a wrong figure.
  const std::vector<QueueEvent> twice = {q1[2], q1[3], q1[2], q1[3]};
  CHECK_THROWS_WITH_AS(handover_microseconds(q0, twice), doctest::Contains("submitted 2 times"), Error);
  const auto s = summarize(std::vector<double>{10, 30, 20});
  CHECK(s.steps == 3);
  CHECK(s.mean_us == doctest::Approx(20));
  CHECK(s.median_us == doctest::Approx(20));
  CHECK(summarize(std::vector<double>{1, 2, 3, 100}).median_us == doctest::Approx(2.5));
  CHECK(s.min_us == 10);
  CHECK(s.max_us == 30);
}

TEST_CASE("device queue log: every submit and wait while recording, nothing after") {
  test::ValidationGuard guard;
  Device dev(test::instance(), test::device().info());
  Buffer b = dev.create_buffer(4096, MemoryKind::DeviceLocal, "filled");
  Recording rec(dev);
  rec.fill(b.range(), 1);
  rec.submit_and_wait();  // not recorded
  dev.record_queue_events(true);
  rec.submit_and_wait();
  rec.submit_and_wait();
  const auto events = dev.take_queue_events();
  REQUIRE(events.size() == 4);
  for (size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].kind == (i % 2 ? QueueEvent::Wait : QueueEvent::Submit));
    CHECK(events[i].end >= events[i].begin);
    if (i) CHECK(events[i].begin >= events[i - 1].end);
  }
  CHECK(dev.take_queue_events().empty());
  dev.run_now([](VkCommandBuffer) {});  // a staging transfer is marked as one
  const auto transfer = dev.take_queue_events();
  REQUIRE(transfer.size() == 2);
  CHECK(transfer[0].transfer);
  CHECK(transfer[1].transfer);
  for (const auto& e : events) CHECK_FALSE(e.transfer);
  dev.record_queue_events(false);
  rec.submit_and_wait();
  CHECK(dev.take_queue_events().empty());
}

TEST_CASE("png: signature, IHDR, chunk CRCs and a zlib stream of stored blocks") {
  CHECK(crc32(reinterpret_cast<const uint8_t*>("123456789"), 9) == 0xCBF43926u);  // the standard check value
  CHECK(adler32(reinterpret_cast<const uint8_t*>("Wikipedia"), 9) == 0x11E60398u);
  const Image img = bar_chart("decode: us per token", "llvmpipe", {{"ternary_matmul_dot", 300, "300.0 us"},
                                                                    {"attention", 20, "20.0 us"},
                                                                    {"ARGMAX", 2, "2.0 us"}});
  CHECK(img.width > 100);
  CHECK(img.height > 50);
  const auto png = encode_png(img);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  REQUIRE(png.size() > 8 + 25);
  CHECK(std::equal(sig, sig + 8, png.begin()));
  // Walk the chunks, checking each CRC; IHDR first, IEND last.
  size_t at = 8;
  std::vector<std::string> types;
  std::vector<uint8_t> idat;
  while (at + 12 <= png.size()) {
    const uint32_t len = be32(png, at);
    const std::string type(png.begin() + long(at + 4), png.begin() + long(at + 8));
    REQUIRE(at + 12 + len <= png.size());
    CHECK(be32(png, at + 8 + len) == crc32(png.data() + at + 4, len + 4));
    if (type == "IHDR") {
      CHECK(len == 13);
      CHECK(be32(png, at + 8) == uint32_t(img.width));
      CHECK(be32(png, at + 12) == uint32_t(img.height));
      CHECK(png[at + 16] == 8);  // bit depth
      CHECK(png[at + 17] == 2);  // RGB
    }
    if (type == "IDAT") idat.insert(idat.end(), png.begin() + long(at + 8), png.begin() + long(at + 8 + len));
    types.push_back(type);
    at += 12 + len;
  }
  CHECK(at == png.size());
  REQUIRE(types.size() == 3);
  CHECK(types.front() == "IHDR");
  CHECK(types.back() == "IEND");
  // Inflate the stored blocks and compare with the scanlines.
  REQUIRE(idat.size() > 6);
  CHECK((idat[0] * 256 + idat[1]) % 31 == 0);
  std::vector<uint8_t> raw;
  size_t p = 2;
  bool final_block = false;
  while (!final_block) {
    final_block = idat[p] & 1;
    CHECK((idat[p] >> 1) == 0);  // stored
    const uint16_t n = uint16_t(idat[p + 1] | idat[p + 2] << 8), nn = uint16_t(idat[p + 3] | idat[p + 4] << 8);
    CHECK(uint16_t(~n) == nn);
    raw.insert(raw.end(), idat.begin() + long(p + 5), idat.begin() + long(p + 5 + n));
    p += 5 + n;
  }
  REQUIRE(raw.size() == size_t(img.height) * (size_t(img.width) * 3 + 1));
  CHECK(be32(idat, p) == adler32(raw.data(), raw.size()));
  CHECK(raw[0] == 0);
  CHECK(std::equal(img.rgb.begin(), img.rgb.begin() + img.width * 3, raw.begin() + 1));
}

