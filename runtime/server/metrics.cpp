#include "runtime/server/metrics.h"

#include <sstream>

namespace ternvk::server {
namespace {

template <class T>
void metric(std::ostringstream& o, const char* name, const char* type, const char* help, const T& value,
            const char* labels = "") {
  o << "# HELP ternvk_" << name << ' ' << help << "\n# TYPE ternvk_" << name << ' ' << type << "\nternvk_" << name
    << labels << ' ' << value << '\n';
}

}  // namespace

std::string Metrics::prometheus() const {
  std::ostringstream o;
  o << "# HELP ternvk_http_responses_total HTTP responses by status class.\n"
       "# TYPE ternvk_http_responses_total counter\n";
  for (size_t c = 1; c < responses.size(); ++c)
    o << "ternvk_http_responses_total{code=\"" << c << "xx\"} " << responses[c].load() << '\n';
  metric(o, "requests_rejected_total", "counter", "Requests refused with 503 because the queue was full.",
         rejected_queue_full.load());
  metric(o, "requests_started_total", "counter", "Generation requests admitted into a sequence slot.",
         generations_started.load());
  o << "# HELP ternvk_requests_finished_total Generation requests by how they ended.\n"
       "# TYPE ternvk_requests_finished_total counter\n"
    << "ternvk_requests_finished_total{reason=\"stop\"} " << finished_stop.load() << '\n'
    << "ternvk_requests_finished_total{reason=\"length\"} " << finished_length.load() << '\n'
    << "ternvk_requests_finished_total{reason=\"cancelled\"} " << cancelled.load() << '\n'
    << "ternvk_requests_finished_total{reason=\"error\"} " << failed.load() << '\n';
  metric(o, "prompt_tokens_total", "counter", "Prompt tokens prefilled (tokens in).", prompt_tokens.load());
  metric(o, "completion_tokens_total", "counter", "Tokens generated (tokens out).", completion_tokens.load());
  metric(o, "decode_steps_total", "counter", "Batched decode steps run.", decode_steps.load());
  metric(o, "prefill_chunks_total", "counter", "Prefill chunks run.", prefill_chunks.load());
  metric(o, "queue_depth", "gauge", "Requests waiting for a sequence slot.", queue_depth.load());
  metric(o, "queue_limit", "gauge", "Requests that may wait before the server answers 503.", queue_limit.load());
  metric(o, "active_sequences", "gauge", "Sequences holding a KV cache slot (prefilling or decoding).",
         active_sequences.load());
  metric(o, "sequence_slots", "gauge", "KV cache slots (--parallel).", slots.load());
  metric(o, "decode_tokens_per_second", "gauge", "Aggregate decode throughput over the last seconds.",
         decode_tokens_per_second.load());
  metric(o, "kv_cache_tokens_used", "gauge", "KV cache positions in use over all slots.", kv_tokens_used.load());
  metric(o, "kv_cache_tokens_capacity", "gauge", "KV cache positions allocated (slots x context).",
         kv_tokens_capacity.load());
  const int64_t cap = kv_tokens_capacity.load();
  metric(o, "kv_cache_usage_ratio", "gauge", "Fraction of the KV cache in use.",
         cap > 0 ? double(kv_tokens_used.load()) / double(cap) : 0.0);
  metric(o, "kv_cache_bytes", "gauge", "Bytes of KV cache allocated at start.", kv_bytes.load());
  metric(o, "device_lost", "gauge", "1 once the GPU was lost: every request fails and the server exits.",
         device_lost.load());
  return o.str();
}

}  // namespace ternvk::server
