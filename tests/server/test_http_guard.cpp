// The HTTP layer in process, over a fake model (no GPU, so each case takes well under a second):
// hostile requests and faults get their status before any harm is done. Bodies over the limit
// (chunked, gzip, deflate, brotli) get 413 with memory bounded; foreign Host and Origin headers
// get 403; bodies that are not JSON get 415; a lost device turns /health and every request into
// 503; a client that leaves a non-streaming request gets its work cancelled.
#include <doctest/doctest.h>

#include <brotli/encode.h>
#include <sys/ioctl.h>
#include <zlib.h>

#include <fstream>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "runtime/server/http_server.h"
#include "runtime/server/request_guard.h"
#include "server/fake_model.h"
#include "server/raw_connection.h"

using namespace ternvk;
using namespace ternvk::server;
using namespace ternvk::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr size_t kMaxBody = 64 * 1024;

// A whole server on a free loopback port: HttpServer, BatchScheduler and a FakeModel.
class InProcessServer {
 public:
  explicit InProcessServer(ServerOptions options = {}, int slots = 2, int queue = 4, size_t max_body = kMaxBody)
      : model(slots, 4096), prompts(shakespeare_tokenizer(), "llama") {
    SchedulerOptions so;
    so.queue_limit = queue;
    so.prefill_chunk = 16;
    so.end_tokens = {2};
    scheduler = std::make_unique<BatchScheduler>(model, shakespeare_tokenizer(), so, metrics);
    options.port = 0;
    options.max_body_bytes = max_body;
    options.model_id = "fake";
    http = std::make_unique<HttpServer>(*scheduler, prompts, options, metrics);
    port = http->bind();
    thread = std::thread([this] { http->run(); });
  }
  ~InProcessServer() {
    http->stop();
    thread.join();
  }

  FakeModel model;
  Metrics metrics;
  PromptEncoder prompts;
  std::unique_ptr<BatchScheduler> scheduler;
  std::unique_ptr<HttpServer> http;
  int port = 0;
  std::thread thread;
};

std::unique_ptr<httplib::Client> client(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_read_timeout(20, 0);
  return c;
}

const std::string kChat = R"({"messages":[{"role":"user","content":"Who art thou?"}],"max_tokens":4,"temperature":0})";

uint64_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(std::string(key).size()));
  return 0;
}

// `head`, then `pad` spaces, then `tail`, compressed in the gzip or zlib ("deflate") format. A bomb
// is built without compressing all of it: after a full flush deflate's output for each MiB of
// spaces is the same independent block, so one is made and repeated (checksums combined).
std::string deflated(bool gzip_format, const std::string& head, size_t pad, const std::string& tail) {
  const std::string mib(1 << 20, ' ');
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);  // raw: the wrapper is ours
  auto run = [&](const std::string& in, int flush) {
    std::string out(deflateBound(&z, uLong(in.size())) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = uInt(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(out.size());
    REQUIRE(deflate(&z, flush) != Z_STREAM_ERROR);
    REQUIRE(z.avail_in == 0);
    out.resize(out.size() - z.avail_out);
    return out;
  };
  std::string body = run(head, Z_FULL_FLUSH);
  const std::string block = run(mib, Z_FULL_FLUSH);
  std::string rest = run(mib.substr(0, pad % mib.size()), Z_FULL_FLUSH);
  rest += run(tail, Z_FINISH);
  deflateEnd(&z);
  for (size_t i = 0; i < pad / mib.size(); ++i) body += block;
  body += rest;
  // The checksum over head + pad spaces + tail, combined from the pieces'.
  auto checksum = [&](const std::string& data) {
    return gzip_format ? crc32(0, reinterpret_cast<const Bytef*>(data.data()), uInt(data.size()))
                       : adler32(1, reinterpret_cast<const Bytef*>(data.data()), uInt(data.size()));
  };
  auto combine = [&](uLong a, uLong b, size_t b_size) {
    return gzip_format ? crc32_combine(a, b, z_off_t(b_size)) : adler32_combine(a, b, z_off_t(b_size));
  };
  uLong sum = checksum(head);
  const uLong mib_sum = checksum(mib);
  for (size_t i = 0; i < pad / mib.size(); ++i) sum = combine(sum, mib_sum, mib.size());
  sum = combine(sum, checksum(mib.substr(0, pad % mib.size())), pad % mib.size());
  sum = combine(sum, checksum(tail), tail.size());
  const size_t total = head.size() + pad + tail.size();
  auto bytes = [](uint64_t v, int n, bool little) {
    std::string out;
    for (int i = 0; i < n; ++i) out += char((v >> (8 * (little ? i : n - 1 - i))) & 0xff);
    return out;
  };
  if (gzip_format)
    return std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10) + body + bytes(sum, 4, true) +
           bytes(total & 0xffffffffu, 4, true);
  return "\x78\xda" + body + bytes(sum, 4, false);
}

std::string brotli(const std::string& head, size_t pad, const std::string& tail) {
  const std::string mib(1 << 20, ' ');
  BrotliEncoderState* state = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
  BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, 1);  // fast; spaces compress well anyway
  std::vector<std::string_view> pieces{head};
  for (size_t left = pad; left > 0; left -= std::min(left, mib.size()))
    pieces.push_back(std::string_view(mib).substr(0, std::min(left, mib.size())));
  pieces.push_back(tail);
  std::string out;
  uint8_t buffer[1 << 16];
  for (size_t i = 0; i < pieces.size(); ++i) {
    size_t in_left = pieces[i].size();
    const auto* in = reinterpret_cast<const uint8_t*>(pieces[i].data());
    const bool last = i + 1 == pieces.size();
    do {
      size_t out_left = sizeof buffer;
      uint8_t* next = buffer;
      REQUIRE(BrotliEncoderCompressStream(state, last ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS, &in_left,
                                          &in, &out_left, &next, nullptr));
      out.append(reinterpret_cast<char*>(buffer), sizeof buffer - out_left);
    } while (in_left > 0 || BrotliEncoderHasMoreOutput(state) || (last && !BrotliEncoderIsFinished(state)));
  }
  BrotliEncoderDestroyInstance(state);
  return out;
}

std::string compress(const std::string& encoding, const std::string& head, size_t pad, const std::string& tail) {
  if (encoding == "br") return brotli(head, pad, tail);
  return deflated(encoding == "gzip", head, pad, tail);
}

// A chat request that decompresses to about `size` bytes (padded with spaces).
std::string compressed_chat(const std::string& encoding, size_t size) {
  return compress(encoding, "{", size > kChat.size() ? size - kChat.size() : 0, kChat.substr(1));
}

std::string post_encoded(int port, const std::string& encoding, const std::string& data) {
  return stream_until_answered(port,
                               post_head("/v1/chat/completions", "Content-Encoding: " + encoding +
                                                                     "\r\nContent-Length: " + std::to_string(data.size()) +
                                                                     "\r\n") + data,
                               false, 0);
}

}  // namespace

TEST_CASE("chunked and compressed bodies over the limit get 413 while memory stays bounded") {
  constexpr size_t kLimit = 1 << 20;  // the default: deflate's ratio (~1000:1) then allows a 1 GiB bomb
  InProcessServer server({}, 2, 4, kLimit);
  const int port = server.port;
  const std::string chat = "/v1/chat/completions";
  // Compression bombs: under 1 MiB that decode to 768 MiB (made before memory is measured).
  std::vector<std::pair<std::string, std::string>> bombs;
  for (const char* encoding : {"gzip", "deflate", "br"}) bombs.emplace_back(encoding, compressed_chat(encoding, 768u << 20));
  const uint64_t peak_before = status_kib("VmHWM:");
  const uint64_t rss_before = status_kib("VmRSS:");
  // 256 MiB offered, chunked: the server stops reading after the limit.
  std::string answer = stream_until_answered(port, post_head(chat, "Transfer-Encoding: chunked\r\n"), true, 256u << 20);
  CAPTURE(answer);
  CHECK(status_of(answer) == 413);
  CHECK(body_of(answer)["error"]["code"] == "request_too_large");
  // A chunk-size line that never ends: the library buffers a line whole before the body reader
  // runs, so the server's read watchdog cuts the connection (answered 413 if it still can be).
  answer = stream_until_answered(port, post_head(chat, "Transfer-Encoding: chunked\r\n") + "1;", false, 256u << 20);
  CHECK((answer.empty() || status_of(answer) == 413));
  for (const auto& [encoding, data] : bombs) {
    CAPTURE(encoding);
    REQUIRE(data.size() < kLimit);
    answer = post_encoded(port, encoding, data);
    CHECK(status_of(answer) == 413);
    CHECK(body_of(answer)["error"]["message"].get<std::string>().find("after decompression") != std::string::npos);
  }
  // The peak resident memory of this process (server and client) grew by far less than was sent.
  const uint64_t peak_after = status_kib("VmHWM:");
  MESSAGE("peak resident memory: " << peak_before / 1024 << " MiB before, " << peak_after / 1024 << " MiB after");
  CHECK(peak_after <= std::max(peak_before, rss_before + kLimit / 1024 + 64 * 1024));

  // Within the limit the same encodings are decoded and served.
  for (const char* encoding : {"gzip", "deflate", "br"}) {
    CAPTURE(encoding);
    answer = post_encoded(port, encoding, compressed_chat(encoding, kLimit - 100));
    CHECK(status_of(answer) == 200);
    CHECK(body_of(answer)["usage"]["completion_tokens"] == 4);
  }
  char size[16];
  std::snprintf(size, sizeof size, "%zx", kChat.size());
  answer = stream_until_answered(port, post_head(chat, "Transfer-Encoding: chunked\r\n") + size + "\r\n" + kChat +
                                           "\r\n0\r\n\r\n", true, 0);
  CHECK(status_of(answer) == 200);
  CHECK(body_of(answer)["usage"]["completion_tokens"] == 4);
}

TEST_CASE("bodies the server will not read are refused before they are read") {
  InProcessServer server;
  const int port = server.port;
  // A chunked body to a path without a body route: answered 404 at once, not read whole.
  std::string answer = stream_until_answered(port, post_head("/v1/anything", "Transfer-Encoding: chunked\r\n"), true,
                                             256u << 20);
  CHECK(status_of(answer) == 404);
  CHECK(body_of(answer)["error"]["code"] == "unknown_url");
  // A Content-Length over the limit: 413 without reading it.
  answer = stream_until_answered(port, post_head("/v1/chat/completions", "Content-Length: 999999999999\r\n"), false,
                                 256u << 20);
  CHECK(status_of(answer) == 413);
  // An encoding the library cannot decode: 415.
  answer = post_encoded(port, "zstd", kChat);
  CHECK(status_of(answer) == 415);
  CHECK(body_of(answer)["error"]["code"] == "unsupported_media_type");
  // Corrupt compressed data: 400, and the server goes on.
  answer = post_encoded(port, "gzip", "definitely not gzip");
  CHECK(status_of(answer) == 400);
  CHECK(client(port)->Post("/v1/chat/completions", kChat, "application/json")->status == 200);
}

TEST_CASE("JSON endpoints take only application/json bodies: anything else is a 415") {
  InProcessServer server;
  auto c = client(server.port);
  // A web page can send text/plain (or a form) to 127.0.0.1 without a CORS preflight.
  for (const char* type : {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                           "application/jsonx"}) {
    CAPTURE(type);
    auto res = c->Post("/v1/chat/completions", kChat, type);
    REQUIRE(res);
    CHECK(res->status == 415);
    CHECK(json::parse(res->body)["error"]["code"] == "unsupported_media_type");
  }
  const std::string untyped = stream_until_answered(
      server.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                       std::to_string(kChat.size()) + "\r\n\r\n" + kChat, false, 0);
  CHECK(status_of(untyped) == 415);
  CHECK(c->Post("/v1/chat/completions", kChat, "application/json; charset=utf-8")->status == 200);
  CHECK(c->Post("/v1/completions", R"({"prompt":"ROMEO:","max_tokens":2})", "Application/JSON")->status == 200);
  CHECK(server.metrics.generations_started == 2);  // the refused ones never reached the scheduler
}

TEST_CASE("foreign Host and Origin headers get 403, while loopback names and --allowed-hosts pass") {
  ServerOptions options;
  options.allowed_hosts = {"models.example.test"};
  InProcessServer server(options);
  auto c = client(server.port);
  auto with = [&](httplib::Headers headers, bool post) {
    auto res = post ? c->Post("/v1/chat/completions", headers, kChat, "application/json") : c->Get("/health", headers);
    REQUIRE(res);
    return std::pair<int, std::string>{res->status, res->body};
  };
  for (bool post : {false, true}) {
    CAPTURE(post);
    // DNS rebinding: a page on evil.example.test whose name now points at 127.0.0.1.
    auto [status, body] = with({{"Host", "evil.example.test:8080"}}, post);
    CHECK(status == 403);
    CHECK(json::parse(body)["error"]["code"] == "forbidden_origin");
    CHECK(json::parse(body)["error"]["message"].get<std::string>().find("--allowed-hosts") != std::string::npos);
    // A cross-site page posting to http://127.0.0.1.
    CHECK(with({{"Origin", "http://evil.example.test"}}, post).first == 403);
    CHECK(with({{"Origin", "null"}}, post).first == 403);
    CHECK(with({{"Host", "localhost"}, {"Origin", "https://evil.example.test:443"}}, post).first == 403);
    // What passes.
    for (const char* host : {"localhost:8080", "LOCALHOST", "127.0.0.1", "[::1]:9", "10.1.2.3:80", "models.example.test",
                             "app.localhost"})
      CHECK(with({{"Host", host}}, post).first == 200);
    CHECK(with({{"Origin", "http://localhost:3000"}}, post).first == 200);
    CHECK(with({{"Origin", "http://127.0.0.1:5173"}}, post).first == 200);
    CHECK(with({{"Origin", "https://models.example.test"}}, post).first == 200);
    CHECK(with({{"Host", "10.1.2.3:8080"}, {"Origin", "http://10.1.2.3:8080"}}, post).first == 200);  // same origin
  }
  CHECK(server.metrics.generations_started == 11);  // 7 hosts and 4 origins
}

TEST_CASE("Host and Origin policy, as a function") {
  const std::vector<std::string> none, listed = {"api.example.test"}, any = {"*"};
  CHECK(!refuse_host_or_origin("", "", none));  // HTTP/1.0 clients may send no Host
  CHECK(!refuse_host_or_origin("localhost.:8080", "", none));
  CHECK(refuse_host_or_origin("localhost.evil.test", "", none));
  CHECK(refuse_host_or_origin("evil.test", "", none));
  CHECK(refuse_host_or_origin("127.0.0.1:80:80", "", none));  // malformed
  CHECK(refuse_host_or_origin("a b", "", none));
  CHECK(!refuse_host_or_origin("API.example.test:1", "", listed));
  CHECK(!refuse_host_or_origin("evil.test", "http://evil.test", any));
  CHECK(refuse_host_or_origin("127.0.0.1", "http://api.example.test.evil.test", listed));
  CHECK(refuse_host_or_origin("127.0.0.1", "http://127.0.0.1@evil.test", none));
  CHECK(refuse_host_or_origin("127.0.0.1", "file://", none));
  CHECK(!refuse_host_or_origin("127.0.0.1", "http://[::1]:3000", none));
  CHECK(is_loopback_host("127.8.9.10"));
  CHECK(!is_loopback_host("128.0.0.1"));
  CHECK(is_json_media_type(" application/json ; charset=UTF-8"));
  CHECK(!is_json_media_type("text/json"));
}

TEST_CASE("a lost device: the request gets 503, /health says why, new requests get 503") {
  InProcessServer server;
  server.model.lose_device_at_decode = 3;
  auto c = client(server.port);
  auto res = c->Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"max_tokens":50})",
                     "application/json");
  REQUIRE(res);
  CHECK(res->status == 503);
  json error = json::parse(res->body)["error"];
  CHECK(error["code"] == "device_lost");
  CHECK(error["message"].get<std::string>().find("VK_ERROR_DEVICE_LOST") != std::string::npos);
  res = c->Get("/health");
  REQUIRE(res);
  CHECK(res->status == 503);
  const json health = json::parse(res->body);
  CHECK(health["status"] == "device lost");
  CHECK(health["reason"].get<std::string>().find("fake GPU 0 was lost") != std::string::npos);
  for (const char* path : {"/v1/chat/completions", "/v1/completions"}) {
    res = c->Post(path, R"({"messages":[{"role":"user","content":"x"}],"prompt":"x"})", "application/json");
    REQUIRE(res);
    CHECK(res->status == 503);
    CHECK(json::parse(res->body)["error"]["code"] == "device_lost");
  }
  CHECK(server.metrics.device_lost == 1);
  CHECK(server.http->in_flight() == 0);
}

TEST_CASE("a client that leaves a non-streaming request gets its work cancelled within a few steps") {
  InProcessServer server({}, /*slots=*/1, /*queue=*/1);
  server.model.delay = 10ms;  // a step long enough that thread scheduling is not counted in steps
  const std::string body = R"({"messages":[{"role":"user","content":"x"}],"max_tokens":3000,"temperature":0})";
  RawConnection leaving(server.port);
  REQUIRE(leaving.send_all(post_head("/v1/chat/completions", "Content-Length: " + std::to_string(body.size()) + "\r\n") +
                           body));
  for (int i = 0; i < 10000 && server.metrics.completion_tokens < 10; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(server.metrics.completion_tokens >= 10);

  // Queued behind it: a second client that leaves as well leaves the queue at once.
  RawConnection queued(server.port);
  REQUIRE(queued.send_all(post_head("/v1/chat/completions", "Content-Length: " + std::to_string(body.size()) + "\r\n") +
                          body));
  for (int i = 0; i < 5000 && server.metrics.queue_depth < 1; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(server.metrics.queue_depth == 1);
  CHECK(client(server.port)->Post("/v1/chat/completions", kChat, "application/json")->status == 503);  // full
  queued.close();
  for (int i = 0; i < 5000 && server.metrics.queue_depth > 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(server.metrics.queue_depth == 0);
  CHECK(server.metrics.active_sequences == 1);  // the first one still runs, and nothing else

  const uint64_t steps_at_close = server.metrics.decode_steps;
  leaving.close();
  for (int i = 0; i < 10000 && server.metrics.active_sequences > 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(server.metrics.active_sequences == 0);
  CHECK(server.metrics.cancelled == 2);
  const uint64_t steps_after = server.metrics.decode_steps - steps_at_close;
  MESSAGE("decode steps after the client left: " << steps_after);
  CHECK(steps_after <= 8);  // not the 3000 it asked for
  CHECK(server.metrics.finished_length == 0);
  CHECK(client(server.port)->Post("/v1/chat/completions", kChat, "application/json")->status == 200);
}

TEST_CASE("bytes read from a socket are what the application took, not what waits in the kernel") {
  // A loopback connection made by hand: listen, connect, accept.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  RawConnection client(ntohs(addr.sin_port));
  const int server = ::accept(listener, nullptr, nullptr);
  REQUIRE(server >= 0);
  CHECK(bytes_read_from(server) == uint64_t(0));
  REQUIRE(client.send_all(std::string(10000, 'x')));
  auto queued = [&] {
    int n = 0;
    ::ioctl(server, FIONREAD, &n);
    return n;
  };
  for (int i = 0; i < 1000 && queued() < 10000; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(queued() == 10000);
  CHECK(bytes_read_from(server) == uint64_t(0));  // arrived, not read
  char buf[3000];
  REQUIRE(::recv(server, buf, sizeof buf, MSG_WAITALL) == 3000);
  CHECK(bytes_read_from(server) == uint64_t(3000));
  ::close(server);
  ::close(listener);
}
