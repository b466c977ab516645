// `ternvk info MODEL`: what a model file holds and what it will cost on the GPU.
#include <cstdio>
#include <map>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "runtime/device/instance.h"
#include "runtime/engine/stage_memory.h"
#include "runtime/engine/model_source.h"

namespace ternvk::cli {

Action add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model: architecture, shapes, tensor types, GPU bytes, tokenizer");
  auto model = std::make_shared<std::string>();
  auto tensors = std::make_shared<bool>(false);
  cmd->add_option("model,-m,--model", *model, "GGUF file or Hugging Face folder (default: the shipped model)");
  cmd->add_flag("--tensors", *tensors, "List every tensor");
  return [model, tensors] {
    const std::string path = model->empty() ? default_model_path() : *model;
    auto source = open_model(path);
    const ModelConfig& c = source->config();
    std::printf("model:        %s (%s)\n", path.c_str(), source->format().c_str());
    std::printf("architecture: %s\n", c.describe().c_str());
    uint64_t params = 0;
    std::map<std::string, int> types;
    auto summaries = source->tensor_summaries();
    for (const auto& t : summaries) {
      uint64_t n = 1;
      for (auto d : t.shape) n *= uint64_t(d);
      // HF packs four ternary weights per U8 element.
      params += t.type == "U8" ? n * 4 : n;
      types[t.type]++;
    }
    std::printf("parameters:   %.2f M in %zu tensors (", params / 1e6, summaries.size());
    bool first = true;
    for (auto& [type, n] : types) std::printf("%s%d %s", first ? "" : ", ", n, type.c_str()), first = false;
    std::printf(")\n");
    try {
      // What a stage holding the whole model allocates on the default device (its memory plan).
      Instance instance;
      const DeviceInfo& device = instance.select(std::nullopt);
      const StageOptions so{.context = c.context};
      const GpuFootprint f = estimate_footprint(c, so, device);
      std::printf("GPU memory:   %.1f MiB weights (ternary %.1f MiB, 2 bits each), %.1f MiB KV cache at %d tokens, "
                  "%.1f MiB scratch on %s\n",
                  f.weights / 1048576.0, f.ternary_weights / 1048576.0, f.kv_cache / 1048576.0, c.context,
                  f.scratch / 1048576.0, device.name.c_str());
      StageOptions i8 = so;
      i8.head = HeadPrecision::Int8;
      std::printf("              with --head int8: %.1f MiB weights\n", estimate_footprint(c, i8, device).weights / 1048576.0);
    } catch (const ternvk::Error& e) {
      std::printf("GPU memory:   not estimated (%s)\n", e.what());
    }
    try {
      auto tok = source->tokenizer();
      std::printf("tokenizer:    %d tokens, BOS %d, EOS %d, EOT %d, chat template: %s\n", tok->vocab_size(),
                  tok->bos() ? int(*tok->bos()) : -1, tok->eos() ? int(*tok->eos()) : -1,
                  tok->eot() ? int(*tok->eot()) : -1, tok->chat_template().empty() ? "none in file" : "from file");
    } catch (const ternvk::Error& e) {
      std::printf("tokenizer:    unavailable (%s)\n", e.what());
    }
    if (*tensors)
      for (const auto& t : summaries) {
        std::printf("  %-40s %-12s [", t.name.c_str(), t.type.c_str());
        for (size_t i = 0; i < t.shape.size(); ++i) std::printf("%s%lld", i ? ", " : "", (long long)t.shape[i]);
        std::printf("] %llu bytes\n", (unsigned long long)t.bytes);
      }
    return 0;
  };
}

}  // namespace ternvk::cli
