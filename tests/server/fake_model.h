// A BatchModel without a GPU for the scheduler and HTTP tests: its next token depends only on its
// own slot's history (so any mixing of slots shows up as a different output), and it can take time
// per step or lose its "device". Tokens are pieces of the shipped Shakespeare vocabulary.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/server/batch_scheduler.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk::test {

using server::BatchModel;

inline const std::filesystem::path kModelDir = std::filesystem::path(TERNVK_SOURCE_DIR) / "models/ternvk-shakespeare";

inline const Tokenizer& shakespeare_tokenizer() {
  static auto tok = load_tokenizer_from_files(kModelDir / "tokenizer.model");
  return *tok;
}

class FakeModel final : public BatchModel {
 public:
  FakeModel(int slots, int context, uint32_t end_token = 2) : history_(size_t(slots)), context_(context), end_(end_token) {}
  int slots() const override { return int(history_.size()); }
  int context() const override { return context_; }
  int max_batch() const override { return slots(); }
  StepOutput prefill(int slot, std::span<const uint32_t> tokens, Selection select) override {
    std::lock_guard lock(mutex_);
    log_.push_back("p" + std::to_string(slot) + ":" + std::to_string(tokens.size()));
    max_prefill = std::max(max_prefill, tokens.size());
    return step(slot, tokens, select);
  }
  std::vector<StepOutput> decode(std::span<const int> slots, std::span<const uint32_t> tokens, Selection select) override {
    std::this_thread::sleep_for(delay);
    std::lock_guard lock(mutex_);
    ++decodes_;
    if (lose_device_at_decode > 0 && decodes_ >= lose_device_at_decode)
      throw DeviceLostError("fake GPU 0 was lost (VK_ERROR_DEVICE_LOST) at decode " + std::to_string(decodes_));
    std::string entry = "d";
    std::vector<StepOutput> outs;
    for (size_t i = 0; i < slots.size(); ++i) {
      entry += std::to_string(slots[i]);
      outs.push_back(step(slots[i], tokens.subspan(i, 1), select));
    }
    log_.push_back(entry);
    max_batch_seen = std::max(max_batch_seen, slots.size());
    return outs;
  }
  void truncate(int slot, int n) override {
    std::lock_guard lock(mutex_);
    history_[size_t(slot)].resize(size_t(n));
  }
  std::vector<std::string> log() {
    std::lock_guard lock(mutex_);
    return log_;
  }
  size_t max_prefill = 0, max_batch_seen = 0;
  std::chrono::microseconds delay{0};  // per decode step: a model that takes time
  uint32_t end_after = 0;  // > 0: emit the end token once a slot holds this many tokens
  std::atomic<int> lose_device_at_decode{0};  // > 0: that decode call and every later one throw DeviceLostError

 private:
  StepOutput step(int slot, std::span<const uint32_t> tokens, Selection select) {
    auto& h = history_[size_t(slot)];
    h.insert(h.end(), tokens.begin(), tokens.end());
    if (int(h.size()) > context_) throw Error("fake model: slot " + std::to_string(slot) + " overflows the context");
    uint64_t x = 1469598103934665603ull;
    for (uint32_t t : h) x = (x ^ t) * 1099511628211ull;
    // Ordinary pieces only (ids 3.. are text in the shipped vocabulary), never the end token by chance.
    uint32_t next = 3 + uint32_t(x % 2000);
    if (end_after && h.size() >= end_after) next = end_;
    StepOutput out;
    out.token = next;
    if (select.kind == Selection::Logits) {
      out.logits.assign(2048, 0.0f);
      out.logits[next] = 10.0f;
    }
    return out;
  }
  std::mutex mutex_;
  std::vector<std::vector<uint32_t>> history_;
  std::vector<std::string> log_;
  int decodes_ = 0;
  int context_;
  uint32_t end_;
};

}  // namespace ternvk::test
