// The split trial (StageOptions::matrix_splits): which rule splits the stage's fused matrices, timed
// on the device as the engine loads (docs/performance.md, "Split rules, decided on the device").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "runtime/core/error.h"
#include "runtime/engine/split_rule_trial.h"
#include "runtime/engine/stage.h"
#include "runtime/ops/argmax.h"

namespace ternvk {

std::string Stage::why_no_split_trial() const {
  if (!fused_) return "none: the CPU plan has no fused layers";
  const std::string rule = fused_->shape().rule().describe();
  const MatrixSplits asked = options_.matrix_splits;
  if (!fused_->shape().fit_to_device)
    return "fixed: device '" + device_.info().name + "' runs each fused matrix in one-subgroup workgroups" +
           (asked == MatrixSplits::Measure ? " (--matrix-splits measure: no other split to time)" : "");
  if (asked == MatrixSplits::Rule) return "rule (--matrix-splits rule): " + rule;
  if (asked == MatrixSplits::Auto && device_.info().is_cpu())
    return "rule: " + rule + " (a CPU device; --matrix-splits measure to time others)";
  if (asked == MatrixSplits::Auto && options_.timestamps == TimestampMode::Dispatch)
    return "rule: " + rule + " (a timestamp after every dispatch would distort a trial; --matrix-splits measure)";
  return "";
}

std::string Stage::matrix_split_note() const {
  return split_trial_pending_ ? "to be measured (Stage::settle_matrix_splits)" : split_note_;
}

std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> Stage::splits_under(ops::FusedSplitRule rule) const {
  using Weights = ops::FusedLinear::Weights;
  std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> out;
  if (!layers_.empty()) {
    // Every layer's matrices have the first one's shapes. Paired epilogues: gate|up in pairs of rows,
    // qkv in NeoX RoPE's words of two pairs.
    const Layer& L = layers_.front();
    const Weights kind = L.qkv.ternary ? Weights::Ternary : Weights::Fp16;
    for (const auto& [w, min_rows] : {std::pair{&L.qkv, c_.rope_neox ? 4u : 2u}, {&L.o, 1u}, {&L.gate_up, 2u}, {&L.down, 1u}})
      out.push_back(fused_->split_under(rule, kind, w->rows(), w->cols(), min_rows));
  }
  if (spec_.head && head_fusable())
    out.push_back(fused_->split_under(rule, head_i8_ ? Weights::Int8 : Weights::Fp16, uint32_t(c_.vocab),
                                      uint32_t(c_.dim), 1));
  return out;
}

void Stage::settle_matrix_splits() {
  if (!split_trial_pending_) return;
  if (pending_) throw Error("internal: the split trial while a stage step runs");
  split_trial_pending_ = false;
  const ops::FusedSplitRule argued = fused_->shape().rule();
  // The candidates that split this stage's matrices differently (the argued rule first).
  std::vector<ops::FusedSplitRule> rules;
  std::vector<std::vector<std::tuple<uint32_t, uint32_t, uint32_t>>> splits;
  for (const ops::FusedSplitRule& r : fused_->shape().rule_candidates()) {
    auto s = splits_under(r);
    if (std::find(splits.begin(), splits.end(), s) != splits.end()) continue;
    splits.push_back(std::move(s));
    rules.push_back(r);
  }
  if (rules.size() < 2) {
    split_note_ = "rule: " + argued.describe() + " (no other candidate splits this model's matrices differently)";
    return;
  }
  // One token of sequence 0 at its first position: the form decode runs most (folded where the
  // attention folds), its inputs the same for every rule.
  const uint32_t zero = 0;
  std::memcpy(ids_.mapped(), &zero, 4);
  std::memcpy(positions_.mapped(), &zero, 4);
  std::memcpy(slots_.mapped(), &zero, 4);
  if (!spec_.embedding) {
    // Not zeros: a zero residual stream stays zero through every layer (its int8 activations are all
    // 0), and any split, even a wrong one, would pass the check.
    std::vector<float> hidden(size_t(c_.dim));
    for (size_t i = 0; i < hidden.size(); ++i) hidden[i] = std::sin(0.37f * float(i + 1));
    write_hidden(hidden);
  }
  const LogitsMode mode = spec_.head ? LogitsMode::Last : LogitsMode::None;
  const Selection select = spec_.head ? Selection{Selection::Argmax} : Selection{};
  std::vector<std::unique_ptr<Recording>> recordings;
  std::string unrecorded;
  // Whatever leaves this function, the fused layers split by the argued rule unless a kept one is set.
  struct RestoreRule {
    ops::FusedLinear& fused;
    ops::FusedSplitRule rule;
    ~RestoreRule() { fused.set_rule(rule); }
  } restore{*fused_, argued};
  for (size_t c = 0; c < rules.size(); ++c) {
    fused_->set_rule(rules[c]);
    auto rec = std::make_unique<Recording>(device_, recording_options());
    try {
      record_step_inputs(*rec);
      record_pass(*rec, 1, mode, select, true, step_io(), fold_keys_ > 0);
      rec->finish();
    } catch (const Error& e) {
      if (c == 0) throw;
      // A rule the pass cannot take (e.g. a folded qkv whose workgroups would finish too many heads).
      unrecorded += "; " + rules[c].describe() + " not recorded: " + e.what();
      rules.erase(rules.begin() + std::ptrdiff_t(c));
      --c;
      continue;
    }
    recordings.push_back(std::move(rec));
  }
  const Buffer& residual = residual_out();
  // The residual stream; with the head, the token's logits (every row of the head) and the pick.
  auto results = [&] {
    const size_t hidden = size_t(c_.dim) * 4, logits = spec_.head ? size_t(c_.vocab) * 4 : 0;
    std::vector<uint8_t> out(hidden + logits + (spec_.head ? sizeof(ops::ArgmaxResult) : 0));
    device_.download(residual, out.data(), hidden);
    if (spec_.head) {
      device_.download(logits_, out.data() + hidden, logits);
      device_.download(selected_, out.data() + hidden + logits, sizeof(ops::ArgmaxResult));
    }
    return out;
  };
  auto run = [&](size_t c) { return submit_and_time(*recordings[c]); };
  SplitRuleTrial trial(rules.size());
  // The check: every rule's pass once (its first replay may pay one-time costs), the same bits as the
  // argued rule's.
  std::vector<uint8_t> reference;
  for (size_t c = 0; c < rules.size(); ++c) {
    run(c);
    std::vector<uint8_t> r = results();
    if (options_.split_trial_mismatch == c + 1) r.front() ^= 1;  // tests: as if the device had computed otherwise
    if (c == 0) reference = std::move(r);
    else if (r != reference) trial.drop(c);
  }
  double warm = 0;
  int warm_passes = 0;
  for (; warm_passes < SplitRuleTrial::kWarmupPasses && warm < SplitRuleTrial::kWarmupSeconds; ++warm_passes)
    warm += run(0);
  const int rounds = SplitRuleTrial::timed_rounds(rules.size(), warm / warm_passes);
  for (int round = 0; round < rounds; ++round)
    for (size_t c : trial.order(round))
      if (!trial.dropped(c)) trial.add(c, run(c));
  size_t keep = trial.best();
  if (options_.split_trial_keep && options_.split_trial_keep <= rules.size() && !trial.dropped(options_.split_trial_keep - 1))
    keep = options_.split_trial_keep - 1;
  restore.rule = rules[keep];
  split_rules_ = rules;
  std::string each;
  for (size_t c = 0; c < rules.size(); ++c) each += (c ? "; " : "") + rules[c].describe() + " " + trial.ratio(c);
  char how[96];
  std::snprintf(how, sizeof how, "median of %d one-token passes against the argued rule's, kept at %.2fx or less",
                rounds, SplitRuleTrial::kKeepRatio);
  split_note_ = std::string("measured: ") + (keep ? "kept " : "the argued rule stays, ") + rules[keep].describe() +
                " (" + how + ": " + each + unrecorded +
                (trial.any_dropped() ? "; a rule with other bits than the argued rule's is dropped" : "; same bits") + ")";
  // The trial's steps are scratch, and recordings made before it split by the argued rule.
  forget_last_step();
  passes_.clear();
  greedy_chains_.clear();
}

}  // namespace ternvk
