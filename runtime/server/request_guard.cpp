#include "runtime/server/request_guard.h"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netdb.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <filesystem>

namespace ternvk::server {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 5 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "host[:port]" or "[v6][:port]" to the host, nullopt if malformed.
std::optional<std::string> host_of_authority(std::string_view authority) {
  if (authority.empty()) return std::nullopt;
  std::string_view host;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !all_digits(rest.substr(1)))) return std::nullopt;
    if (!is_ip_literal(host)) return std::nullopt;
    return lower(host);
  }
  const size_t colon = authority.find(':');
  host = authority.substr(0, colon);
  if (colon != std::string_view::npos && !all_digits(authority.substr(colon + 1))) return std::nullopt;
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return std::nullopt;
  for (char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) return std::nullopt;
  return lower(host);
}

bool listed(const std::string& host, const std::vector<std::string>& allowed_hosts) {
  for (const auto& entry : allowed_hosts) {
    const auto wanted = host_of_host_header(entry);
    if (entry == "*" || (wanted && *wanted == host)) return true;
  }
  return false;
}

std::string numeric_host(const sockaddr_storage& addr, socklen_t len, int* port) {
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, service, sizeof service,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return {};
  *port = std::atoi(service);
  return host;
}

}  // namespace

std::optional<std::string> host_of_host_header(std::string_view host_header) {
  return host_of_authority(trim(host_header));
}

std::optional<std::string> host_of_origin(std::string_view origin) {
  origin = trim(origin);
  const std::string scheme = lower(origin.substr(0, origin.find("://")));
  if (origin.find("://") == std::string_view::npos || (scheme != "http" && scheme != "https")) return std::nullopt;
  std::string_view authority = origin.substr(scheme.size() + 3);
  if (authority.find_first_of("/?#@") != std::string_view::npos) return std::nullopt;  // an Origin has none
  return host_of_authority(authority);
}

bool is_ip_literal(std::string_view host) {
  const std::string h(host);
  unsigned char buf[16];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

bool is_loopback_host(std::string_view host) {
  const std::string h = lower(host);
  if (h == "localhost" || (h.size() > 10 && h.ends_with(".localhost"))) return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, h.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

std::optional<std::string> refuse_host_or_origin(std::string_view host_header, std::string_view origin,
                                                 const std::vector<std::string>& allowed_hosts) {
  const std::string hint = "; start ternvk serve with --allowed-hosts NAME to accept a name";
  std::optional<std::string> host;
  if (!trim(host_header).empty()) {  // HTTP/1.0 clients may leave it out; browsers never do
    host = host_of_host_header(host_header);
    if (!host) return "the Host header '" + std::string(host_header) + "' is malformed";
    if (!is_loopback_host(*host) && !is_ip_literal(*host) && !listed(*host, allowed_hosts))
      return "the Host header names '" + *host + "', which is not a name of this server (a web page using DNS " +
             "rebinding sends such names)" + hint;
  }
  if (trim(origin).empty()) return std::nullopt;
  const auto from = host_of_origin(origin);
  if (!from) return "cross-site request refused: the Origin '" + std::string(origin) + "' is not an allowed site";
  const bool same_origin = lower(trim(origin)).ends_with("://" + lower(trim(host_header)));
  if (same_origin || is_loopback_host(*from) || listed(*from, allowed_hosts)) return std::nullopt;
  return "cross-site request refused: a page from '" + std::string(origin) + "' may not use this server" + hint;
}

bool is_json_media_type(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';')))) == "application/json";
}

int find_connection_socket(std::string_view local_addr, int local_port, std::string_view remote_addr, int remote_port) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    const std::string name = entry.path().filename().string();
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc()) continue;
    sockaddr_storage peer{}, self{};
    socklen_t peer_len = sizeof peer, self_len = sizeof self;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&self), &self_len) != 0)
      continue;
    int peer_port = -1, self_port = -1;
    if (numeric_host(peer, peer_len, &peer_port) == remote_addr && peer_port == remote_port &&
        numeric_host(self, self_len, &self_port) == local_addr && self_port == local_port)
      return fd;
  }
  return -1;
}

bool peer_has_closed(int socket) {
  pollfd p{socket, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) < 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

void close_gracefully(int socket) {
  using Clock = std::chrono::steady_clock;
  ::shutdown(socket, SHUT_WR);
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  size_t dropped = 0;
  char buffer[16384];
  while (dropped < (size_t(8) << 20)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{socket, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, int(left)) <= 0) break;
    const ssize_t n = ::recv(socket, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n <= 0) break;  // the client closed (or reset) its side too
    dropped += size_t(n);
  }
  ::shutdown(socket, SHUT_RD);
}

std::optional<uint64_t> bytes_read_from(int socket) {
  // The queue first: bytes arriving between the two calls then count as read (an overestimate by a
  // few bytes), never the other way round, which could make the count go backwards.
  int queued = 0;
  tcp_info info{};
  socklen_t len = sizeof info;
  if (ioctl(socket, FIONREAD, &queued) != 0 || getsockopt(socket, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
      len < offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received)
    return std::nullopt;
  const uint64_t waiting = uint64_t(std::max(queued, 0));
  return info.tcpi_bytes_received > waiting ? info.tcpi_bytes_received - waiting : 0;
}

struct ReadWatchdog::Entry {
  int socket = -1;
  uint64_t start = 0;
  uint64_t budget = 0;
  std::atomic<bool> tripped{false};
};

ReadWatchdog::ReadWatchdog() : thread_([this] { run(); }) {}

ReadWatchdog::~ReadWatchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::unique_ptr<ReadWatchdog::Watch> ReadWatchdog::watch(int socket, uint64_t budget) {
  auto entry = std::make_shared<Entry>();
  entry->socket = socket;
  entry->budget = budget;
  const auto start = bytes_read_from(socket);
  entry->start = start.value_or(0);
  if (start) {  // a socket that cannot tell is not watched
    {
      std::lock_guard lock(mutex_);
      entries_.push_back(entry);
    }
    wake_.notify_all();
  }
  return std::make_unique<Watch>(*this, std::move(entry));
}

ReadWatchdog::Watch::~Watch() {
  std::lock_guard lock(dog_.mutex_);  // after this the thread no longer touches the socket
  std::erase(dog_.entries_, entry_);
}

bool ReadWatchdog::Watch::tripped() const { return entry_->tripped; }

void ReadWatchdog::run() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    if (entries_.empty()) wake_.wait(lock, [&] { return stop_ || !entries_.empty(); });  // idle: no polling
    else wake_.wait_for(lock, std::chrono::milliseconds(5));
    for (const auto& e : entries_) {
      const auto read = bytes_read_from(e->socket);
      if (e->tripped || !read || *read <= e->start || *read - e->start <= e->budget) continue;
      ::shutdown(e->socket, SHUT_RD);
      e->tripped = true;
    }
  }
}

}  // namespace ternvk::server
