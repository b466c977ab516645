// What the HTTP layer checks before it reads a request's body or hands it to the scheduler, as
// pure functions (unit-tested without sockets): whether the Host and Origin headers are this
// server's (DNS rebinding, cross-site pages), and whether a body is JSON. And the socket under a
// request, which cpp-httplib 0.11 does not hand to its handlers: to notice a client that left, and
// to stop reading from one that was refused before its body was read.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ternvk::server {

// The host of a Host header ("name", "name:port", "[::1]:port") or of an Origin
// ("http://name:port"): lower case, without port, brackets or a trailing dot. nullopt if malformed.
std::optional<std::string> host_of_host_header(std::string_view host_header);
std::optional<std::string> host_of_origin(std::string_view origin);

// localhost, *.localhost, 127.0.0.0/8 and ::1.
bool is_loopback_host(std::string_view host);
// An IPv4 or IPv6 address rather than a name (as host_of_* return it).
bool is_ip_literal(std::string_view host);

// Why the Host and Origin headers (empty when absent) are refused, as a message for a 403; nullopt
// when they pass. A Host passes when it is a loopback name, an IP address (a rebinding page only
// has names) or in `allowed_hosts`; an Origin passes when it is the request's own (same Host), a
// loopback name or address, or in `allowed_hosts`. "*" in `allowed_hosts` lets everything pass.
std::optional<std::string> refuse_host_or_origin(std::string_view host_header, std::string_view origin,
                                                 const std::vector<std::string>& allowed_hosts);

// "application/json", with or without parameters ("; charset=utf-8"), any case.
bool is_json_media_type(std::string_view content_type);

// The connected TCP socket whose local and remote ends are these (as cpp-httplib's Request reports
// them), or -1. Valid while the request's handler runs: the library closes it only afterwards.
int find_connection_socket(std::string_view local_addr, int local_port, std::string_view remote_addr, int remote_port);
// The peer closed or reset the connection (a client that left). Does not consume data.
bool peer_has_closed(int socket);
// Ends a connection whose client may still be sending a refused body, so that it still reads the
// answer already written: FIN, then what keeps arriving is read and dropped for a moment (at most
// 1 s and 8 MiB: closing with unread data would reset the connection and take the answer with
// it), and reading is shut down, so that the library's next read sees the end.
void close_gracefully(int socket);

// Bytes the application has read from a TCP socket so far: what the kernel received, less what still
// waits in its queue. nullopt if the socket cannot tell.
std::optional<uint64_t> bytes_read_from(int socket);

// Bounds what is read from a connection while a body is read. cpp-httplib 0.11 reads a chunk-size
// line (and its extensions) up to its newline, however long, before a content reader sees a byte
// of the body: a line that never ends grows its buffer without bound. One thread looks at every
// watched socket every few milliseconds and shuts reading down on one that has read more than its
// budget; the library's read then ends, and so does the body.
class ReadWatchdog {
 public:
  ReadWatchdog();
  ~ReadWatchdog();
  ReadWatchdog(const ReadWatchdog&) = delete;
  ReadWatchdog& operator=(const ReadWatchdog&) = delete;

  struct Entry;
  // Watched while the returned object lives; its flag is set once the budget was passed.
  class Watch {
   public:
    Watch(ReadWatchdog& dog, std::shared_ptr<Entry> entry) : dog_(dog), entry_(std::move(entry)) {}
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;
    bool tripped() const;

   private:
    ReadWatchdog& dog_;
    std::shared_ptr<Entry> entry_;
  };
  // `budget` more bytes may be read from `socket` (counted from now).
  std::unique_ptr<Watch> watch(int socket, uint64_t budget);

 private:
  void run();
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<Entry>> entries_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ternvk::server
