// The server's counters and gauges, written by the HTTP threads and the scheduler without locks
// (atomics), read as Prometheus text by GET /metrics.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace ternvk::server {

struct Metrics {
  // HTTP requests answered, by status class (index status / 100: 2xx .. 5xx).
  std::array<std::atomic<uint64_t>, 6> responses{};
  std::atomic<uint64_t> rejected_queue_full{0};  // 503s
  // Generation requests, by how they ended.
  std::atomic<uint64_t> generations_started{0};  // admitted into a slot
  std::atomic<uint64_t> finished_stop{0};
  std::atomic<uint64_t> finished_length{0};
  std::atomic<uint64_t> cancelled{0};            // client gone or server stopping
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> prompt_tokens{0};        // tokens in
  std::atomic<uint64_t> completion_tokens{0};    // tokens out
  std::atomic<uint64_t> decode_steps{0};
  std::atomic<uint64_t> prefill_chunks{0};
  // Gauges.
  std::atomic<int64_t> queue_depth{0};
  std::atomic<int64_t> queue_limit{0};
  std::atomic<int64_t> active_sequences{0};
  std::atomic<int64_t> slots{0};
  std::atomic<int64_t> kv_tokens_used{0};        // positions in use over all slots
  std::atomic<int64_t> kv_tokens_capacity{0};    // slots x context
  std::atomic<uint64_t> kv_bytes{0};             // allocated up front
  std::atomic<double> decode_tokens_per_second{0};  // over the last few seconds of decode steps
  std::atomic<int64_t> device_lost{0};           // 1 once the GPU was lost (the server then exits)

  void count_response(int status) {
    if (status >= 100 && status < 600) responses[size_t(status / 100)]++;
  }
  std::string prometheus() const;
};

}  // namespace ternvk::server
