// Raw HTTP over a loopback socket for the server tests: what a well-behaved client library will
// not send (bodies that never end, bad encodings, a client that leaves without a word).
#pragma once
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

namespace ternvk::test {

// A connected loopback socket, for what a well-behaved client library will not send.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~RawConnection() { close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(size_t(n));
    }
    return true;
  }
  bool readable(int timeout_ms = 0) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
  }
  // One response: its head and as many body bytes as its Content-Length says, or everything until
  // the server closes (or `seconds` pass).
  std::string read_all(double seconds = 30) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    char buf[4096];
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !readable(int(left.count()))) break;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
      if (complete(out)) break;
    }
    return out;
  }

 private:
  static bool complete(const std::string& response) {
    const size_t head_end = response.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    const size_t at = response.find("Content-Length: ");
    if (at == std::string::npos || at > head_end) return false;
    return response.size() >= head_end + 4 + std::stoull(response.substr(at + 16));
  }
  int fd_;
};

inline int status_of(const std::string& response) {
  return response.rfind("HTTP/1.1 ", 0) == 0 ? std::stoi(response.substr(9, 3)) : -1;
}

inline nlohmann::json body_of(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? nlohmann::json() : nlohmann::json::parse(response.substr(at + 4), nullptr, false);
}

inline std::string post_head(const std::string& path, const std::string& extra_headers) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra_headers + "\r\n";
}

// Sends `head`, then streams up to `total` bytes of body in 64 KiB pieces (as chunks, or raw)
// until the server answers; returns the answer. `each_piece` runs after every piece sent.
inline std::string stream_until_answered(int port, const std::string& head, bool chunked, size_t total,
                                         const std::function<void()>& each_piece = {}) {
  RawConnection c(port);
  REQUIRE(c.send_all(head));
  const std::string piece(64 * 1024, ' ');
  const std::string chunk = chunked ? "10000\r\n" + piece + "\r\n" : piece;
  for (size_t sent = 0; sent < total && !c.readable(); sent += piece.size()) {
    if (!c.send_all(chunk)) break;  // the server closed: its answer is waiting
    if (each_piece) each_piece();
  }
  return c.read_all();
}

}  // namespace ternvk::test
