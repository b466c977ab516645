// A chat model in the Llama-2 format, for the tests of turn markers in each front end: the shipped
// model's Hugging Face folder (its files linked, not copied) with a tokenizer_config.json whose
// template is Meta's "[INST] ... [/INST]". The shipped model itself has no template: it chats in
// the plain format ("User: ...\nAssistant:").
#pragma once
#include <filesystem>
#include <fstream>
#include <string>

namespace ternvk::test {

// A fresh folder under the build tree; `name` keeps tests that run in parallel apart.
inline std::filesystem::path llama2_chat_model(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path shipped = fs::path(TERNVK_SOURCE_DIR) / "models/ternvk-shakespeare/hf";
  const fs::path dir = fs::path(TERNVK_BINARY_DIR) / "test-models" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.model"})
    fs::create_symlink(shipped / file, dir / file);
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ bos_token }}{% for message in messages %})"
         R"({% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %})"
         R"({{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"})";
  return dir;
}

}  // namespace ternvk::test
