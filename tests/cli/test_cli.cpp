// The `ternvk` command line as a user meets it: it generates, and every bad input gets a clear
// message and a non-zero exit, never a crash (exit codes >= 128 are signals) or a validation error.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/run_process.h"

using namespace ternvk::test;
namespace fs = std::filesystem;

namespace {

const fs::path kShared = TERNVK_SHARED_DIR;
const std::string kTiny = (kShared / "data/models/tiny-random-tq2_0.gguf").string();

fs::path scratch(const std::string& name) {
  auto dir = fs::path(TERNVK_BINARY_DIR) / "test-tmp" / "cli";
  fs::create_directories(dir);
  return dir / name;
}

void expect_clean_failure(const ProcessResult& r, const std::string& needle) {
  CAPTURE(r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code < 128);
  CHECK(r.err.find(needle) != std::string::npos);
  CHECK(r.err.find("validation error") == std::string::npos);
}

void write_prefix(const fs::path& from, const fs::path& to, size_t bytes) {
  std::ifstream in(from, std::ios::binary);
  std::string data(bytes, '\0');
  in.read(data.data(), std::streamsize(bytes));
  std::ofstream(to, std::ios::binary).write(data.data(), std::streamsize(in.gcount()));
}

}  // namespace

TEST_CASE("run generates from a model, streams text and reports speed and memory") {
  auto r = run_ternvk("run -m " + kTiny + " -p 'Once upon a time' -n 8 --greedy");
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("Once upon a time", 0) == 0);
  CHECK(r.out.size() > std::string("Once upon a time").size());
  CHECK(r.err.find("tokens/s") != std::string::npos);
  CHECK(r.err.find("peak GPU memory") != std::string::npos);
  CHECK(r.err.find("validation error") == std::string::npos);
}

TEST_CASE("greedy runs are deterministic and sampling with a seed repeats") {
  auto a = run_ternvk("run -m " + kTiny + " -p 'The' -n 12 --temp 0.9 --top-k 20 -s 42 --no-stats");
  auto b = run_ternvk("run -m " + kTiny + " -p 'The' -n 12 --temp 0.9 --top-k 20 -s 42 --no-stats");
  CHECK(a.exit_code == 0);
  CHECK(a.out == b.out);
}

TEST_CASE("devices, info and tokenize describe what they find") {
  auto d = run_ternvk("devices");
  CHECK(d.exit_code == 0);
  CHECK(d.out.find("default device") != std::string::npos);
  // The matrix units' self-checks: a line per unit a device has, or that it has none.
  auto c = run_ternvk("devices --check-matrix-units");
  CAPTURE(c.out);
  CHECK(c.exit_code == 0);
  const bool units = d.out.find("int8 matrix units no") == std::string::npos ||
                     d.out.find("fp16 matrix units no") == std::string::npos;
  CHECK(c.out.find(units ? "matrix units: self-check " : "no matrix units ternvk can use") != std::string::npos);
  auto i = run_ternvk("info -m " + kTiny);
  CHECK(i.exit_code == 0);
  CHECK(i.out.find("bitnet") != std::string::npos);
  CHECK(i.out.find("TQ2_0") != std::string::npos);
  CHECK(i.out.find("32000 tokens") != std::string::npos);
  auto t = run_ternvk("tokenize -m " + kTiny + " -p 'Hello world' --ids");
  CHECK(t.exit_code == 0);
  CHECK(t.out == "1 15043 3186\n");  // LLaMA-2 SentencePiece ids, with BOS
}

TEST_CASE("chat answers on stdin and ends at end of input") {
  auto r = run_ternvk("chat -m " + kTiny + " -n 6 --greedy", "Hello there\nHow are you?\n");
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("> ") != std::string::npos);
  CHECK(r.err.find("validation error") == std::string::npos);
}

TEST_CASE("chat works on the shipped model (a BitNet arch whose vocabulary has no 2B4T control tokens)") {
  auto r = run_ternvk("chat -n 8 --greedy", "To be or not to be\n");
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("plain template") != std::string::npos);
  CHECK(r.out.size() > 4);
  CHECK(r.err.find("validation error") == std::string::npos);
}

TEST_CASE("Ctrl-C in chat stops the answer, not the program") {
  // A long answer is interrupted once it is streaming (whatever the machine's speed: the signal is
  // sent when 200 bytes of output have appeared); the chat then reads the next line (end of input
  // here) and exits normally.
  const auto script = scratch("interrupt-when-streaming.sh");
  std::ofstream(script) << "exec 3<&0\n"
                           "out=$(mktemp)\n"
                           "\"$@\" <&3 >\"$out\" &\n"
                           "pid=$!\n"
                           "i=0\n"
                           "while [ \"$(wc -c <\"$out\")\" -lt 200 ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n"
                           "kill -INT $pid\n"
                           "wait $pid\n"
                           "rc=$?\n"
                           "cat \"$out\"\n"
                           "rm -f \"$out\"\n"
                           "exit $rc\n";
  auto r = run_ternvk_with("sh " + script.string(), "chat -m " + kTiny + " -n 100000 --greedy", "Tell me a long story\n");
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("[stopped]") != std::string::npos);
}

TEST_CASE("bad model files are named with what is wrong") {
  expect_clean_failure(run_ternvk("run -m /nonexistent/model.gguf -p hi"), "/nonexistent/model.gguf");
  const auto truncated = scratch("truncated.gguf");
  for (size_t bytes : {size_t(3), size_t(100), size_t(5000), size_t(300000)}) {
    CAPTURE(bytes);
    write_prefix(kTiny, truncated, bytes);
    expect_clean_failure(run_ternvk("run -m " + truncated.string() + " -p hi"), "truncated.gguf");
  }
  const auto magic = scratch("magic.gguf");
  std::ofstream(magic, std::ios::binary) << "GGML not a gguf file at all";
  expect_clean_failure(run_ternvk("info -m " + magic.string()), "magic.gguf");
  const auto empty_dir = scratch("empty-folder");
  fs::create_directories(empty_dir);
  expect_clean_failure(run_ternvk("run -m " + empty_dir.string() + " -p hi"), "empty-folder");
}

TEST_CASE("bad prompts and flags get clear errors") {
  expect_clean_failure(run_ternvk("run -m " + kTiny + " -p ''"), "prompt is empty");
  expect_clean_failure(run_ternvk("run -m " + kTiny + " -c 8 -p 'one two three four five six seven eight nine ten'"),
                       "context");
  expect_clean_failure(run_ternvk("run -m " + kTiny + " -p \"$(printf 'bad \\377\\376 utf8')\""), "UTF-8");
  expect_clean_failure(run_ternvk("run -m " + kTiny + " --device 99 -p hi"), "device 99 does not exist");
  expect_clean_failure(run_ternvk("run -m " + kTiny + " --top-p 0 -p hi"), "--top-p");
  expect_clean_failure(run_ternvk("run -m " + kTiny + " -c 100000000 -p hi"), "");
  auto unknown = run_ternvk("run --no-such-flag");
  CHECK(unknown.exit_code != 0);
  CHECK(unknown.exit_code < 128);
  auto none = run_ternvk("");
  CHECK(none.exit_code != 0);
}

TEST_CASE("bench reports pp and tg for ternary and FP16, and a pipeline beside its one-device run") {
  auto r = run_ternvk("bench -p 8 -n 4 -r 2 --both -o json --devices 0,0");
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  const auto rows = nlohmann::json::parse(r.out);
  REQUIRE(rows.size() == 8);  // {ternary, fp16} x {one device, two stages} x {pp8, tg4}
  int pipelined = 0;
  for (const auto& row : rows) {
    CAPTURE(row.dump());
    CHECK(row["samples_ts"].size() == 2);
    CHECK(row["avg_ts"].get<double>() > 0);
    CHECK(row["peak_bytes"].get<uint64_t>() >= row["weight_bytes"].get<uint64_t>());
    const bool staged = row.contains("stages") && row["stages"].get<int>() == 2;
    pipelined += staged;
    if (staged && row["test"] == "tg4") CHECK(row["handover_us_per_token"].size() == 1);  // one boundary
  }
  CHECK(pipelined == 4);
  auto md = run_ternvk("bench -p 8 -n 0 -r 1 --both");
  CHECK(md.exit_code == 0);
  CHECK(md.out.find("| pp8 |") != std::string::npos);
  CHECK(md.out.find("speed ternary/FP16") != std::string::npos);
  expect_clean_failure(run_ternvk("bench -p 8 -n 0 -r 1 --devices 0,0 --split 1,1,1"), "--split names 3 stages");
}

TEST_CASE("bench --gemm-units runs the prefill GEMM's units side by side, and refuses units the device lacks") {
  // The label and the pairing are what this checks on any device (lavapipe's prefill keeps the GEMV).
  const auto devices = run_ternvk("devices");
  REQUIRE(devices.exit_code == 0);
  // The default device's own entry (a host may list several devices).
  const size_t named = devices.out.find("default device: ");
  REQUIRE(named != std::string::npos);
  const std::string index = devices.out.substr(named + 16, devices.out.find(']', named) - named - 15);  // "[N]"
  const size_t entry = devices.out.find(index + " ");
  REQUIRE(entry < named);
  const std::string own = devices.out.substr(entry, devices.out.find("\n[", entry + 1) - entry);
  const bool int8_units = own.find("int8 matrix units no") == std::string::npos;
  const bool fp16_units = own.find("fp16 matrix units no") == std::string::npos;
  auto r = run_ternvk("bench -p 8 -n 0 -r 1 --both --gemm-units auto,vector -o json");
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  const auto rows = nlohmann::json::parse(r.out);
  REQUIRE(rows.size() == 4);  // {auto, vector} x {ternary, fp16} x {pp8}
  int vector = 0;
  for (const auto& row : rows) {
    const bool vector_row = row["plan"].get<std::string>().find("(vector GEMM)") != std::string::npos;
    vector += vector_row;
    // Shader cores when asked for, or where the device has no matrix units for that variant.
    const bool units = row["variant"] == "fp16" ? fp16_units : int8_units;
    if (vector_row || !units) CHECK(row["prefill_gemm"] == "shader cores");
  }
  CHECK(vector == 2);  // both variants of the vector pair carry the label, so their ratio row pairs
  auto md = run_ternvk("bench -p 8 -n 0 -r 1 --both --gemm-units vector");
  CHECK(md.exit_code == 0);
  CHECK(md.out.find("(vector GEMM) | Vulkan") != std::string::npos);  // the ratio row
  CHECK(md.out.find("not like for like") == std::string::npos);      // both on the shader cores
  if (int8_units) {
    MESSAGE("the default device has int8 matrix units: the refusal is not checked here");
    return;
  }
  expect_clean_failure(run_ternvk("bench -p 8 -n 0 -r 1 --gemm-units matrix"), "cooperative matrices");
}

TEST_CASE("--head int8: run generates, bench pairs ternary and FP16 per head, perplexity stays close") {
  auto r = run_ternvk("run -m " + kTiny + " -p 'Once upon a time' -n 6 --greedy --head int8");
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("Once upon a time", 0) == 0);
  auto b = run_ternvk("bench -p 8 -n 2 -r 1 --both --head f16,int8 -o json");
  CAPTURE(b.err);
  REQUIRE(b.exit_code == 0);
  const auto rows = nlohmann::json::parse(b.out);
  REQUIRE(rows.size() == 8);  // {f16, int8} x {ternary, fp16} x {pp8, tg2}
  std::map<std::string, uint64_t> weights;  // per head, ternary variant
  for (const auto& row : rows) {
    CHECK(row["avg_ts"].get<double>() > 0);
    if (row["variant"] == "ternary") weights[row["head"].get<std::string>()] = row["weight_bytes"].get<uint64_t>();
  }
  REQUIRE(weights.size() == 2);
  CHECK(weights["int8"] < weights["f16"]);  // the head's bytes about halve
  auto md = run_ternvk("bench -p 0 -n 2 -r 1 --both --head int8");
  CHECK(md.exit_code == 0);
  CHECK(md.out.find("| int8 | cpu | Vulkan") != std::string::npos);  // the ratio row names its head and plan
  // The shipped model's quick perplexity (first 4 windows of its validation slice) with either head.
  std::ifstream in(fs::path(TERNVK_SOURCE_DIR) / "tests/fixtures/ternvk-shakespeare.json");
  const auto v = nlohmann::json::parse(in)["validation"];
  const std::string corpus = (kShared / "data/corpus/tinyshakespeare.txt").string();
  double ppl[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    auto p = run_ternvk("perplexity -f " + corpus + " --byte-offset " + std::to_string(v["byte_offset"].get<long>()) +
                        " --byte-length 4000 --window " + std::to_string(v["chunk_tokens"].get<int>()) +
                        (i ? " --head int8" : " --head f16"));
    CAPTURE(p.err);
    REQUIRE(p.exit_code == 0);
    ppl[i] = std::stod(p.out.substr(p.out.find("perplexity: ") + 12));
  }
  CAPTURE(ppl[0]);
  CAPTURE(ppl[1]);
  CHECK(ppl[0] != ppl[1]);                               // the head really changed
  CHECK(std::abs(ppl[1] - ppl[0]) / ppl[0] < 0.005);     // and the model did not
  expect_clean_failure(run_ternvk("run -m " + kTiny + " -p x --head int4"), "--head");
}

TEST_CASE("profile times every shader of a token, writes a Chrome trace and a PNG chart") {
  const auto trace = scratch("profile-trace.json"), chart = scratch("profile-chart.png");
  fs::remove(trace);
  fs::remove(chart);
  auto r = run_ternvk("profile -p 8 -n 3 -o json --trace " + trace.string() + " --chart " + chart.string());
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["decode"]["tokens"] == 3);
  double share = 0;
  bool ternary = false;
  for (const auto& s : j["decode"]["shaders"]) {
    CHECK(s["calls"].get<int>() > 0);
    CHECK(s["total_us"].get<double>() > 0);
    share += s["share"].get<double>();
    ternary = ternary || s["kind"] == "ternary_matmul";
  }
  CHECK(share == doctest::Approx(1.0).epsilon(0.01));  // the shares of one token add up
  CHECK(ternary);
  CHECK(j["bandwidth"]["peak_gb_per_s"].get<double>() > 0);
  std::ifstream t(trace);
  const auto events = nlohmann::json::parse(t)["traceEvents"];
  size_t complete = 0;
  for (const auto& e : events) complete += e["ph"] == "X";
  CHECK(complete > 10);
  std::ifstream png(chart, std::ios::binary);
  char sig[8] = {};
  png.read(sig, 8);
  CHECK(std::string(sig + 1, 3) == "PNG");
}

TEST_CASE("profile --plan gpu: a decode token is at most 5 dispatches a layer + 4 (4 + 4 at short contexts), in either timing mode") {
  // The check: 2 layers of the 2B4T shape -> at most 14 dispatches per decode token.
  const std::string base = "profile --synthetic 2b4t --layers 2 --vocab 4096 -p 8 -n 4 -o json --cache-dir " +
                           scratch("synthetic").string();
  double gpu_dispatches = 0;
  for (const char* timing : {"dispatch", "pass"}) {
    CAPTURE(timing);
    auto r = run_ternvk(base + " --plan gpu --timing " + timing);
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["plan"] == "gpu");
    CHECK(j["timing"] == timing);
    const double d = j["decode"]["dispatches_per_token"].get<double>();
    CHECK(d <= 14);
    CHECK(d >= 4 * 2);
    CHECK(j["prefill"]["dispatches_per_token"].get<double>() > 0);
    CHECK(j["decode"]["gpu_us_per_token"].get<double>() > 0);
    CHECK(j["decode"]["macs_per_token"].get<double>() > 0);
    // Per-dispatch tables only when every dispatch is timed.
    CHECK(j["decode"]["shaders"].empty() == (std::string(timing) == "pass"));
    gpu_dispatches = d;
  }
  auto cpu = run_ternvk(base + " --plan cpu");
  REQUIRE(cpu.exit_code == 0);
  CHECK(nlohmann::json::parse(cpu.out)["decode"]["dispatches_per_token"].get<double>() > gpu_dispatches + 2 * 3);
  CHECK(nlohmann::json::parse(cpu.out)["matrix_splits"].get<std::string>().starts_with("none: the CPU plan"));
  // The attention inside qkv (the default here: 8 + 4 positions, all short) saves one a layer.
  auto apart = run_ternvk(base + " --plan gpu --fold-attention off");
  REQUIRE(apart.exit_code == 0);
  CHECK(nlohmann::json::parse(apart.out)["decode"]["dispatches_per_token"].get<double>() == gpu_dispatches + 2);
  // Chained layers: the same dispatches, barriers only around the chain (after the embedding, before
  // the head; and the recording's first); refused where a timestamp follows every dispatch.
  // Measured (the trial settles before the profiled steps): one form for every step, named in the JSON.
  auto barriers = [&](const std::string& flags, const std::string& note) {
    auto r = run_ternvk(base + " --plan gpu --timing pass" + flags);
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["decode"]["dispatches_per_token"].get<double>() == gpu_dispatches);
    CHECK(j["layer_chain"].get<std::string>().starts_with(note));
    // lavapipe's own pick is a fixed split (one subgroup a workgroup): no rule to measure.
    CHECK(j["matrix_splits"].get<std::string>().starts_with("fixed: device '"));
    return j["decode"]["barriers_per_token"].get<double>();
  };
  const double unchained = barriers(" --chain-layers off", "off"), chained = barriers(" --chain-layers on", "on");
  CHECK(unchained >= gpu_dispatches);
  CHECK(chained <= 5);
  const double measured = barriers(" --chain-layers measure", "o");  // "on: chained ..." or "off: chained ..."
  CHECK((measured == unchained || measured == chained));
  expect_clean_failure(run_ternvk(base + " --plan gpu --chain-layers on"), "--timing pass");
  expect_clean_failure(run_ternvk(base + " --plan gpu --chain-layers measure"), "--timing pass");
  expect_clean_failure(run_ternvk("profile --chain-layers sometimes"), "--chain-layers");
  expect_clean_failure(run_ternvk("profile --matrix-splits sometimes"), "--matrix-splits");
  expect_clean_failure(run_ternvk("profile --fold-attention maybe"), "--fold-attention");
  expect_clean_failure(run_ternvk("profile --plan fast"), "--plan");
  expect_clean_failure(run_ternvk("profile --timing pass --trace x.json"), "--timing dispatch");
}

TEST_CASE("run: the GPU and CPU plans print the same greedy text, chained on the GPU or a token a submit, folded or not") {
  std::vector<std::string> text;
  for (const char* plan : {"cpu", "gpu"})
    for (const char* chain : {"1", "16"}) {
      auto r = run_ternvk(std::string("run -p ROMEO: -n 40 --temp 0 --plan ") + plan + " --greedy-chain " + chain);
      CAPTURE(r.err);
      REQUIRE(r.exit_code == 0);
      text.push_back(r.out);
    }
  // The GPU plan with the attention inside qkv required, and off; and with its layers chained.
  for (const char* flags : {"--fold-attention on", "--fold-attention off", "--chain-layers on", "--chain-layers measure",
                            "--matrix-splits measure"}) {
    auto r = run_ternvk(std::string("run -p ROMEO: -n 40 --temp 0 --plan gpu ") + flags);
    CAPTURE(r.err);
    REQUIRE(r.exit_code == 0);
    text.push_back(r.out);
  }
  expect_clean_failure(run_ternvk("run -p ROMEO: -n 4 --plan cpu --chain-layers on"), "CPU plan");
  for (const auto& t : text) CHECK(t == text[0]);
  CHECK(text[0].size() > 20);
  expect_clean_failure(run_ternvk("run -p ROMEO: --greedy-chain 0"), "--greedy-chain");
}

TEST_CASE("bench --greedy-chain, --fold-attention and --chain-layers run tg with each setting side by side, labelled") {
  auto r = run_ternvk("bench -p 0 -n 6 -r 1 --greedy-chain 1,4 -o json");
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j.size() == 2);
  CHECK(j[0]["plan"].get<std::string>().ends_with("chain 1"));
  CHECK(j[1]["plan"].get<std::string>().ends_with("chain 4"));
  for (const auto& row : j) CHECK(row["avg_ts"].get<double>() > 0);
  expect_clean_failure(run_ternvk("bench -p 0 -n 2 --greedy-chain 65"), "--greedy-chain");
  auto fold = run_ternvk("bench -p 0 -n 4 -r 1 --plan gpu --fold-attention auto,off -o json");
  CAPTURE(fold.err);
  REQUIRE(fold.exit_code == 0);
  const auto f = nlohmann::json::parse(fold.out);
  REQUIRE(f.size() == 2);
  CHECK(f[0]["plan"] == "gpu");
  CHECK(f[1]["plan"] == "gpu, attention in qkv off");
  auto chain = run_ternvk("bench -p 0 -n 4 -r 1 --plan gpu --chain-layers off,on,measure --matrix-splits measure -o json");
  CAPTURE(chain.err);
  REQUIRE(chain.exit_code == 0);
  const auto c = nlohmann::json::parse(chain.out);
  REQUIRE(c.size() == 3);
  CHECK(c[0]["plan"] == "gpu, layers chained off, matrix splits measure");
  CHECK(c[1]["plan"] == "gpu, layers chained on, matrix splits measure");
  CHECK(c[2]["plan"] == "gpu, layers chained measure, matrix splits measure");
  CHECK(c[0]["layer_chain"] == "off (--chain-layers off)");
  CHECK(c[1]["layer_chain"] == "on (--chain-layers on)");
  CHECK(c[2]["layer_chain"].get<std::string>().find("median of 8 pairs") != std::string::npos);
  for (const auto& row : c) {
    CHECK(row["matrix_splits"].get<std::string>().starts_with("fixed: device '"));
    // measure was asked: the note says there is nothing else to time here
    CHECK(row["matrix_splits"].get<std::string>().ends_with("(--matrix-splits measure: no other split to time)"));
  }
  CHECK(chain.err.find("matrix splits fixed: device '") != std::string::npos);
  // The trial ends before timing, and stderr says what it kept.
  const bool kept_said = chain.err.find("layers chained on: chained") != std::string::npos ||
                        chain.err.find("layers chained off: chained") != std::string::npos;
  CHECK(kept_said);
  expect_clean_failure(run_ternvk("bench -p 0 -n 2 --chain-layers maybe"), "--chain-layers");
  expect_clean_failure(run_ternvk("bench -p 0 -n 2 --matrix-splits maybe"), "--matrix-splits");
}

TEST_CASE("batched-bench measures ternary and FP16 at several batch sizes and the largest batch in a budget") {
  auto r = run_ternvk("batched-bench --parallel 1,3 -p 4 -n 3 -r 1 --both --memory-budget 64MiB -o json");
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["results"].size() == 4);  // {ternary, fp16} x {1, 3}
  for (const auto& row : j["results"]) {
    CHECK(row["avg_ts"].get<double>() > 0);
    CHECK(row["peak_bytes"].get<uint64_t>() > 0);
  }
  const auto& b = j["budgets"][0];
  CHECK(b["budget_bytes"].get<uint64_t>() == 64ull << 20);
  // The ternary model is smaller, so at least as many sequences fit.
  CHECK(b["largest_batch_ternary"].get<int>() >= b["largest_batch_fp16"].get<int>());
  CHECK(b["largest_batch_fp16"].get<int>() > 0);
  expect_clean_failure(run_ternvk("batched-bench --memory-budget 12XB"), "--memory-budget");
  expect_clean_failure(run_ternvk("batched-bench -p 100 -n 100 -c 50"), "-c 50");
}

TEST_CASE("perplexity scores a text file") {
  const auto text = scratch("text.txt");
  std::ofstream(text) << "The quick brown fox jumps over the lazy dog. The dog sleeps.\n";
  auto r = run_ternvk("perplexity -m " + kTiny + " -f " + text.string() + " -c 16 --stride 8 --window 12");
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("perplexity: ") != std::string::npos);
  expect_clean_failure(run_ternvk("perplexity -m " + kTiny + " -f /nonexistent.txt"), "/nonexistent.txt");
}

TEST_CASE("ternvk perplexity over the shipped model's whole validation slice agrees with its training tool") {
  std::ifstream in(fs::path(TERNVK_SOURCE_DIR) / "tests/fixtures/ternvk-shakespeare.json");
  REQUIRE(in.good());
  const auto v = nlohmann::json::parse(in)["validation"];
  const std::string corpus = (kShared / "data/corpus/tinyshakespeare.txt").string();
  auto r = run_ternvk("perplexity -f " + corpus + " --byte-offset " + std::to_string(v["byte_offset"].get<long>()) +
                      " --byte-length " + std::to_string(v["byte_length"].get<long>()) + " --window " +
                      std::to_string(v["chunk_tokens"].get<int>()));
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  const auto at = r.out.find("perplexity: ");
  REQUIRE(at != std::string::npos);
  const double got = std::stod(r.out.substr(at + 12));
  const double want = v["perplexity"].get<double>();
  CAPTURE(got);
  CAPTURE(want);
  CHECK(std::abs(got - want) / want < 0.01);
  CHECK(r.out.find("over " + std::to_string(v["n_tokens"].get<long>()) + " tokens") != std::string::npos);
}
