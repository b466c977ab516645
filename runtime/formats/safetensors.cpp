#include "runtime/formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/formats/checked_math.h"
#include "runtime/formats/json_input.h"

namespace ternvk {

namespace {

// The reference implementation refuses headers above 100 MB; so do we, before parsing anything.
constexpr uint64_t kMaxHeaderBytes = 100u * 1024u * 1024u;
constexpr int64_t kMaxDim = int64_t{1} << 48;

struct DtypeInfo {
  SafetensorsDtype dtype;
  const char* name;
  uint32_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {SafetensorsDtype::BOOL, "BOOL", 1},       {SafetensorsDtype::U8, "U8", 1},
    {SafetensorsDtype::I8, "I8", 1},           {SafetensorsDtype::U16, "U16", 2},
    {SafetensorsDtype::I16, "I16", 2},         {SafetensorsDtype::U32, "U32", 4},
    {SafetensorsDtype::I32, "I32", 4},         {SafetensorsDtype::U64, "U64", 8},
    {SafetensorsDtype::I64, "I64", 8},         {SafetensorsDtype::F16, "F16", 2},
    {SafetensorsDtype::BF16, "BF16", 2},       {SafetensorsDtype::F32, "F32", 4},
    {SafetensorsDtype::F64, "F64", 8},         {SafetensorsDtype::F8_E4M3, "F8_E4M3", 1},
    {SafetensorsDtype::F8_E5M2, "F8_E5M2", 1},
};

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '\'';
  out += s;
  out += '\'';
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

SafetensorsDtype safetensors_dtype_from_string(std::string_view s) {
  for (const auto& d : kDtypes) {
    if (s == d.name) return d.dtype;
  }
  return SafetensorsDtype::Unknown;
}

std::string_view safetensors_dtype_name(SafetensorsDtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "unknown";
}

std::optional<uint32_t> safetensors_dtype_size(SafetensorsDtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d.size;
  }
  return std::nullopt;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f(MappedFile::open(path));
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, std::string label) {
  SafetensorsFile f(MappedFile::from_memory(std::move(bytes), std::move(label)));
  f.parse();
  return f;
}

void SafetensorsFile::parse() {
  const std::string& name = file_.name();
  const auto bytes = file_.bytes();
  if (bytes.size() < 8) {
    throw Error(name + ": too short for a safetensors file (" + std::to_string(bytes.size()) +
                " bytes; it starts with an 8-byte header length)");
  }
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > bytes.size() - 8 || header_len > kMaxHeaderBytes) {
    throw Error(name + ": safetensors header length " + std::to_string(header_len) +
                " does not fit the file (" + std::to_string(bytes.size()) +
                " bytes) — truncated file, or not a safetensors file?");
  }
  data_offset_ = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_offset_;
  const char* header = reinterpret_cast<const char*>(bytes.data() + 8);

  const nlohmann::json json = parse_json_text(std::string_view(header, header_len), name + ": safetensors header");
  if (!json.is_object()) {
    throw Error(name + ": safetensors header must be a JSON object, found " + json.type_name());
  }

  for (const auto& [tensor_name, entry] : json.items()) {
    if (tensor_name == "__metadata__") continue;  // free-form strings; nothing ternvk needs
    const std::string where = name + ": tensor " + in_quotes(tensor_name);
    if (!entry.is_object()) throw Error(where + ": header entry must be an object");
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      throw Error(where + ": missing or non-string \"dtype\"");
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      throw Error(where + ": missing or non-array \"shape\"");
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      throw Error(where + ": \"data_offsets\" must be two non-negative integers [begin, end]");
    }
    SafetensorsTensor t;
    t.name = tensor_name;
    t.dtype_name = dtype_it->get<std::string>();
    t.dtype = safetensors_dtype_from_string(t.dtype_name);
    for (const auto& d : *shape_it) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(kMaxDim)) {
        throw Error(where + ": \"shape\" holds " + json_preview(d) +
                    "; it must hold non-negative integers of sane size");
      }
      t.shape.push_back(d.get<int64_t>());
    }
    const auto n = checked_product(t.shape);
    if (!n || *n > (uint64_t{1} << 60)) {
      throw Error(where + ": shape " + shape_string(t.shape) + " has an absurd element count");
    }
    t.n_elements = *n;
    t.begin = (*offsets_it)[0].get<uint64_t>();
    t.end = (*offsets_it)[1].get<uint64_t>();
    if (t.begin > t.end || t.end > data_size) {
      throw Error(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                  std::to_string(t.end) + "] fall outside the data section of " +
                  std::to_string(data_size) + " bytes — truncated or corrupt file?");
    }
    if (const auto size = safetensors_dtype_size(t.dtype)) {
      const uint64_t expected = t.n_elements * *size;  // n <= 2^60, size <= 8: no overflow
      if (t.end - t.begin != expected) {
        throw Error(where + ": " + t.dtype_name + " shape " + shape_string(t.shape) + " needs " +
                    std::to_string(expected) + " bytes but data_offsets span " +
                    std::to_string(t.end - t.begin));
      }
    }
    index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const SafetensorsTensor& SafetensorsFile::tensor(std::string_view name) const {
  const SafetensorsTensor* t = find(name);
  if (t == nullptr) throw Error(path() + ": tensor " + in_quotes(name) + " is missing");
  return *t;
}

std::span<const uint8_t> SafetensorsFile::tensor_bytes(const SafetensorsTensor& t) const {
  if (t.dtype == SafetensorsDtype::Unknown) {
    throw Error(path() + ": tensor " + in_quotes(t.name) + " has dtype " + in_quotes(t.dtype_name) +
                ", which ternvk cannot read");
  }
  // parse() checked every tensor of this file; re-check so a tensor from elsewhere cannot escape.
  const auto data = file_.bytes().subspan(data_offset_);
  if (t.begin > t.end || t.end > data.size()) {
    throw Error(path() + ": tensor " + in_quotes(t.name) + " lies outside the data section");
  }
  return data.subspan(t.begin, t.end - t.begin);
}

SafetensorsModel SafetensorsModel::open(const std::filesystem::path& path) {
  SafetensorsModel model;
  model.path_ = path.string();
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    model.shards_.push_back(SafetensorsFile::open(path));
    for (const auto& t : model.shards_[0].tensors()) model.index_.emplace(t.name, Location{0, &t});
    return model;
  }
  const auto single = path / "model.safetensors";
  const auto index_path = path / "model.safetensors.index.json";
  if (std::filesystem::exists(single, ec)) {
    model.shards_.push_back(SafetensorsFile::open(single));
    for (const auto& t : model.shards_[0].tensors()) model.index_.emplace(t.name, Location{0, &t});
    return model;
  }
  if (!std::filesystem::exists(index_path, ec)) {
    throw Error("'" + model.path_ + "' holds neither model.safetensors nor " +
                "model.safetensors.index.json — is it a Hugging Face model folder?");
  }
  // An index lists each tensor once: a few MiB for the largest models.
  const nlohmann::json index = read_json_file(index_path, uint64_t{64} << 20);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw Error(index_path.string() + ": expected an object with a \"weight_map\" object");
  }
  // Open each shard once, in first-mention order; then resolve every mapped tensor.
  std::unordered_map<std::string, size_t> shard_of_file;
  std::vector<std::pair<std::string, size_t>> wanted;
  for (const auto& [tensor_name, file] : index.at("weight_map").items()) {
    if (!file.is_string()) {
      throw Error(index_path.string() + ": weight_map[" + in_quotes(tensor_name) +
                  "] must be a file name string");
    }
    const std::string shard_name = file.get<std::string>();
    if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "..") {
      throw Error(index_path.string() + ": shard name " + in_quotes(shard_name) +
                  " must be a plain file name inside the model folder");
    }
    auto [it, inserted] = shard_of_file.emplace(shard_name, model.shards_.size());
    if (inserted) model.shards_.push_back(SafetensorsFile::open(path / shard_name));
    wanted.emplace_back(tensor_name, it->second);
  }
  for (const auto& [tensor_name, shard] : wanted) {
    const SafetensorsTensor* t = model.shards_[shard].find(tensor_name);
    if (t == nullptr) {
      throw Error(index_path.string() + " maps tensor " + in_quotes(tensor_name) + " to " +
                  model.shards_[shard].path() + ", which does not contain it");
    }
    model.index_.emplace(tensor_name, Location{shard, t});
  }
  return model;
}

const SafetensorsTensor* SafetensorsModel::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : it->second.tensor;
}

const SafetensorsTensor& SafetensorsModel::tensor(std::string_view name) const {
  const SafetensorsTensor* t = find(name);
  if (t == nullptr) throw Error(path_ + ": tensor " + in_quotes(name) + " is missing");
  return *t;
}

std::span<const uint8_t> SafetensorsModel::tensor_bytes(const SafetensorsTensor& t) const {
  auto it = index_.find(t.name);
  if (it == index_.end() || it->second.tensor != &t) {
    throw Error(path_ + ": tensor " + in_quotes(t.name) + " does not belong to this model");
  }
  return shards_[it->second.shard].tensor_bytes(t);
}

std::string SafetensorsModel::describe(const SafetensorsTensor& t) const {
  auto it = index_.find(t.name);
  const std::string& file = it == index_.end() ? path_ : shards_[it->second.shard].path();
  return file + ": tensor " + in_quotes(t.name);
}

std::vector<std::string> SafetensorsModel::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, loc] : index_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace ternvk
