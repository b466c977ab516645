#include "runtime/formats/gguf.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/core/error.h"
#include "runtime/formats/byte_reader.h"
#include "runtime/formats/checked_math.h"

namespace ternvk {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
// Nested arrays recurse; a crafted file could otherwise nest deep enough to overflow the stack.
constexpr int kMaxArrayNesting = 16;
// The smallest encodings, used to reject counts that could not fit in the remaining bytes before
// allocating anything: a key/value is u64 length + u32 type + at least one byte of value; a tensor
// info is u64 name length + u32 n_dims + u32 type + u64 offset.
constexpr uint64_t kMinKeyValueBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
// Host memory the parsed metadata may take: real files need 2-3x their metadata bytes (a short
// token string takes 32 bytes in memory for ~15 in the file). Small values take more in memory
// than in the file (a u8 array element becomes 8 bytes), so a crafted file could otherwise make
// the parser allocate many times its size; the budget turns that into an error naming the key.
constexpr uint64_t kMetadataMemoryPerFileByte = 4;
constexpr uint64_t kMetadataMemoryAllowance = uint64_t{16} << 20;

uint64_t element_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::STRING: return 8;  // at least the length prefix
    case GgufType::ARRAY: return 12;  // at least element type + count
  }
  return 1;
}

class GgufParser {
 public:
  GgufParser(std::span<const uint8_t> bytes, std::string_view name)
      : in_(bytes, name), memory_left_(kMetadataMemoryPerFileByte * bytes.size() + kMetadataMemoryAllowance) {}
  ByteReader& in() { return in_; }

  // Counts `bytes` of host memory for what `name` holds (a metadata key, or a tensor when
  // `tensor`), before it is allocated.
  void charge(uint64_t bytes, const std::string& name, bool tensor = false) {
    if (bytes > memory_left_) {
      in_.fail(std::string(tensor ? "tensor '" : "metadata '") + name +
               "' would take more host memory than a GGUF file of this size can need (" +
               std::to_string(kMetadataMemoryPerFileByte) + " bytes per file byte); the file is corrupt or crafted");
    }
    memory_left_ -= bytes;
  }

  std::string read_string(std::string_view what) {
    const uint64_t length = in_.read<uint64_t>(what);
    if (length > in_.remaining()) {
      in_.fail("string length " + std::to_string(length) + " for " + std::string(what) +
               " runs past the end of the file (" + std::to_string(in_.remaining()) +
               " bytes left)");
    }
    auto bytes = in_.read_bytes(length, what);
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }

  GgufType read_type(std::string_view what) {
    const uint32_t raw = in_.read<uint32_t>(what);
    if (!gguf_type_is_valid(raw)) {
      in_.fail("invalid metadata value type " + std::to_string(raw) + " for " + std::string(what) +
               " (valid: 0..12)");
    }
    return static_cast<GgufType>(raw);
  }

  GgufValue read_value(GgufType type, const std::string& key, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
      case GgufType::U8: v.unsigned_value = in_.read<uint8_t>(key); break;
      case GgufType::U16: v.unsigned_value = in_.read<uint16_t>(key); break;
      case GgufType::U32: v.unsigned_value = in_.read<uint32_t>(key); break;
      case GgufType::U64: v.unsigned_value = in_.read<uint64_t>(key); break;
      case GgufType::I8: v.signed_value = in_.read<int8_t>(key); break;
      case GgufType::I16: v.signed_value = in_.read<int16_t>(key); break;
      case GgufType::I32: v.signed_value = in_.read<int32_t>(key); break;
      case GgufType::I64: v.signed_value = in_.read<int64_t>(key); break;
      case GgufType::F32: v.float_value = in_.read<float>(key); break;
      case GgufType::F64: v.float_value = in_.read<double>(key); break;
      case GgufType::BOOL: v.bool_value = in_.read<uint8_t>(key) != 0; break;
      case GgufType::STRING:
        v.string_value = read_string("value of '" + key + "'");
        charge(v.string_value.size(), key);
        break;
      case GgufType::ARRAY: v.array = read_array(key, depth + 1); break;
    }
    return v;
  }

  GgufArray read_array(const std::string& key, int depth) {
    if (depth > kMaxArrayNesting) {
      in_.fail("metadata '" + key + "' nests arrays deeper than " +
               std::to_string(kMaxArrayNesting) + " levels");
    }
    GgufArray a;
    a.element_type = read_type("array element type of '" + key + "'");
    const uint64_t count = in_.read<uint64_t>("array length of '" + key + "'");
    if (count > in_.remaining() / element_size(a.element_type)) {
      in_.fail("array '" + key + "' claims " + std::to_string(count) + " elements of type " +
               std::string(gguf_type_name(a.element_type)) + ", more than the " +
               std::to_string(in_.remaining()) + " bytes left in the file can hold");
    }
    charge(count * element_memory(a.element_type), key);  // count < file size: no overflow
    reserve(a, count);
    for (uint64_t i = 0; i < count; ++i) {
      GgufValue e = read_value(a.element_type, key, depth);
      switch (a.element_type) {
        case GgufType::STRING: a.strings.push_back(std::move(e.string_value)); break;
        case GgufType::ARRAY: a.arrays.push_back(std::move(e.array)); break;
        case GgufType::BOOL: a.unsigned_values.push_back(e.bool_value ? 1 : 0); break;
        case GgufType::F32: case GgufType::F64: a.float_values.push_back(e.float_value); break;
        case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64:
          a.signed_values.push_back(e.signed_value);
          break;
        default: a.unsigned_values.push_back(e.unsigned_value); break;
      }
    }
    return a;
  }

 private:
  static uint64_t element_memory(GgufType t) {
    switch (t) {
      case GgufType::STRING: return sizeof(std::string);
      case GgufType::ARRAY: return sizeof(GgufArray);
      case GgufType::F32: case GgufType::F64: return sizeof(double);
      default: return sizeof(uint64_t);
    }
  }
  // The count was checked against the bytes left and charged: reserving it is safe.
  static void reserve(GgufArray& a, uint64_t count) {
    switch (a.element_type) {
      case GgufType::STRING: a.strings.reserve(count); break;
      case GgufType::ARRAY: a.arrays.reserve(count); break;
      case GgufType::F32: case GgufType::F64: a.float_values.reserve(count); break;
      case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: a.signed_values.reserve(count); break;
      default: a.unsigned_values.reserve(count); break;
    }
  }
  ByteReader in_;
  uint64_t memory_left_;
};

// Built by appending: GCC 12 warns falsely (-Wrestrict) on "'" + std::string(s) + "'".
std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '\'';
  out += s;
  out += '\'';
  return out;
}

}  // namespace

GgufFile GgufFile::open(const std::filesystem::path& path) {
  GgufFile f(MappedFile::open(path));
  f.parse();
  return f;
}

GgufFile GgufFile::from_bytes(std::vector<uint8_t> bytes, std::string label) {
  GgufFile f(MappedFile::from_memory(std::move(bytes), std::move(label)));
  f.parse();
  return f;
}

void GgufFile::parse() {
  const std::string& name = file_.name();
  GgufParser p(file_.bytes(), name);
  ByteReader& in = p.in();

  if (file_.size() < 4) {
    throw Error(name + ": not a GGUF file (only " + std::to_string(file_.size()) +
                " bytes; a GGUF file starts with the 4-byte magic \"GGUF\")");
  }
  const uint32_t magic = in.read<uint32_t>("magic");
  if (magic != kGgufMagic) {
    char found[5] = {};
    std::memcpy(found, &magic, 4);
    for (char& c : found) {
      if (c != 0 && (c < 32 || c > 126)) c = '?';
    }
    throw Error(name + ": not a GGUF file (magic is \"" + std::string(found, 4) +
                "\", expected \"GGUF\")");
  }
  version_ = in.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    throw Error(name + ": unsupported GGUF version " + std::to_string(version_) +
                " (ternvk reads versions 2 and 3" +
                (version_ == 1 ? "; version 1 is obsolete, re-convert the model" : "") + ")");
  }
  const uint64_t tensor_count = in.read<uint64_t>("tensor count");
  const uint64_t kv_count = in.read<uint64_t>("metadata count");
  if (kv_count > in.remaining() / kMinKeyValueBytes) {
    in.fail("metadata count " + std::to_string(kv_count) + " is larger than the file could hold");
  }
  if (tensor_count > in.remaining() / kMinTensorInfoBytes) {
    in.fail("tensor count " + std::to_string(tensor_count) + " is larger than the file could hold");
  }

  // Not reserved by the counts: a crafted count would allocate before anything is read. The
  // vectors grow with what the file really holds, and the parser charges that against its budget.
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = p.read_string("metadata key #" + std::to_string(i));
    p.charge(sizeof(metadata_[0]) + key.size(), key);
    const GgufType type = p.read_type("type of metadata " + in_quotes(key));
    GgufValue value = p.read_value(type, key, 0);
    if (metadata_index_.count(key) != 0) {
      throw Error(name + ": metadata key " + in_quotes(key) + " appears twice");
    }
    metadata_index_.emplace(key, metadata_.size());
    metadata_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!gguf_type_is_unsigned(a->type) && !gguf_type_is_signed(a->type)) {
      fail_key("general.alignment", *a, "an integer");
    }
    const int64_t align = get_integer("general.alignment", 1, 1 << 30, "an integer");
    if ((align & (align - 1)) != 0) {
      throw Error(name + ": general.alignment is " + std::to_string(align) +
                  ", expected a power of two");
    }
    alignment_ = static_cast<uint32_t>(align);
  }

  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo t;
    t.name = p.read_string("name of tensor #" + std::to_string(i));
    p.charge(sizeof(GgufTensorInfo) + t.name.size(), t.name, true);
    const std::string where = "tensor " + in_quotes(t.name);
    t.n_dims = in.read<uint32_t>("n_dims of " + where);
    if (t.n_dims > kGgufMaxDims) {
      in.fail(where + " has " + std::to_string(t.n_dims) + " dimensions (at most " +
              std::to_string(kGgufMaxDims) + " allowed)");
    }
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      const uint64_t ne = in.read<uint64_t>("dims of " + where);
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        in.fail(where + " has dimension " + std::to_string(d) + " = " + std::to_string(ne) +
                ", which is absurd");
      }
      t.ne[d] = static_cast<int64_t>(ne);
    }
    t.type = in.read<uint32_t>("type of " + where);
    t.offset = in.read<uint64_t>("data offset of " + where);

    const auto n = checked_product(t.ne);
    const auto outer = checked_product(std::span<const int64_t>(t.ne).subspan(1));
    if (!n || !outer || *n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        *outer > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw Error(name + ": " + where + " has absurd dimensions [" + std::to_string(t.ne[0]) +
                  ", " + std::to_string(t.ne[1]) + ", " + std::to_string(t.ne[2]) + ", " +
                  std::to_string(t.ne[3]) + "] (element count overflows)");
    }
    t.n_elements = *n;
    std::string why;
    t.byte_size = ggml_tensor_bytes(t.type, t.n_elements, static_cast<uint64_t>(t.ne[0]), &why);
    if (!t.byte_size && ggml_block_layout(t.type)) {
      // A known type whose shape does not fit it: the file is wrong, not just exotic.
      throw Error(name + ": " + where + " (" + ggml_type_label(t.type) + "): " + why);
    }
    if (tensor_index_.count(t.name) != 0) {
      throw Error(name + ": tensor name " + in_quotes(t.name) + " appears twice");
    }
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  const uint64_t pos = in.position();
  const uint64_t aligned = (pos + alignment_ - 1) / alignment_ * alignment_;  // pos < 2^63: no wrap
  data_offset_ = aligned;
  const uint64_t data_size = aligned <= file_.size() ? file_.size() - aligned : 0;

  for (const GgufTensorInfo& t : tensors_) {
    const uint64_t size = t.byte_size.value_or(0);
    if (!range_inside(t.offset, size, data_size)) {
      throw Error(name + ": tensor " + in_quotes(t.name) + " (" + ggml_type_label(t.type) +
                  ") needs bytes [" + std::to_string(t.offset) + ", +" + std::to_string(size) +
                  ") of the data section, but the data section holds only " +
                  std::to_string(data_size) + " bytes — truncated or corrupt file?");
    }
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufValue& GgufFile::require(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) throw Error(path() + ": required metadata key " + in_quotes(key) + " is missing");
  return *v;
}

void GgufFile::fail_key(std::string_view key, const GgufValue& v, std::string_view want) const {
  throw Error(path() + ": metadata " + in_quotes(key) + " is " + v.describe_type() + ", expected " +
              std::string(want));
}

int64_t GgufFile::get_integer(std::string_view key, int64_t min, int64_t max,
                              std::string_view want) const {
  const GgufValue& v = require(key);
  if (gguf_type_is_signed(v.type)) {
    if (v.signed_value < min || v.signed_value > max) {
      throw Error(path() + ": metadata " + in_quotes(key) + " = " + std::to_string(v.signed_value) +
                  " does not fit " + std::string(want));
    }
    return v.signed_value;
  }
  if (gguf_type_is_unsigned(v.type)) {
    if (v.unsigned_value > static_cast<uint64_t>(max) ||
        (min > 0 && v.unsigned_value < static_cast<uint64_t>(min))) {
      throw Error(path() + ": metadata " + in_quotes(key) + " = " + std::to_string(v.unsigned_value) +
                  " does not fit " + std::string(want));
    }
    return static_cast<int64_t>(v.unsigned_value);
  }
  fail_key(key, v, want);
}

uint64_t GgufFile::get_unsigned(std::string_view key, uint64_t max, std::string_view want) const {
  const GgufValue& v = require(key);
  if (gguf_type_is_unsigned(v.type)) {
    if (v.unsigned_value > max) {
      throw Error(path() + ": metadata " + in_quotes(key) + " = " + std::to_string(v.unsigned_value) +
                  " does not fit " + std::string(want));
    }
    return v.unsigned_value;
  }
  if (gguf_type_is_signed(v.type)) {
    if (v.signed_value < 0 || static_cast<uint64_t>(v.signed_value) > max) {
      throw Error(path() + ": metadata " + in_quotes(key) + " = " + std::to_string(v.signed_value) +
                  " does not fit " + std::string(want));
    }
    return static_cast<uint64_t>(v.signed_value);
  }
  fail_key(key, v, want);
}

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::STRING) fail_key(key, v, "string");
  return v.string_value;
}
std::string GgufFile::get_string(std::string_view key, std::string fallback) const {
  return has(key) ? get_string(key) : fallback;
}

uint32_t GgufFile::get_u32(std::string_view key) const {
  return static_cast<uint32_t>(
      get_unsigned(key, std::numeric_limits<uint32_t>::max(), "an unsigned 32-bit integer"));
}
uint32_t GgufFile::get_u32(std::string_view key, uint32_t fallback) const {
  return has(key) ? get_u32(key) : fallback;
}
uint64_t GgufFile::get_u64(std::string_view key) const {
  return get_unsigned(key, std::numeric_limits<uint64_t>::max(), "an unsigned 64-bit integer");
}
uint64_t GgufFile::get_u64(std::string_view key, uint64_t fallback) const {
  return has(key) ? get_u64(key) : fallback;
}
int32_t GgufFile::get_i32(std::string_view key) const {
  return static_cast<int32_t>(get_integer(key, std::numeric_limits<int32_t>::min(),
                                          std::numeric_limits<int32_t>::max(),
                                          "a signed 32-bit integer"));
}
int32_t GgufFile::get_i32(std::string_view key, int32_t fallback) const {
  return has(key) ? get_i32(key) : fallback;
}
int64_t GgufFile::get_i64(std::string_view key) const {
  return get_integer(key, std::numeric_limits<int64_t>::min(),
                     std::numeric_limits<int64_t>::max(), "a signed 64-bit integer");
}
int64_t GgufFile::get_i64(std::string_view key, int64_t fallback) const {
  return has(key) ? get_i64(key) : fallback;
}

float GgufFile::get_f32(std::string_view key) const {
  const GgufValue& v = require(key);
  if (gguf_type_is_float(v.type)) return static_cast<float>(v.float_value);
  if (gguf_type_is_signed(v.type)) return static_cast<float>(v.signed_value);
  if (gguf_type_is_unsigned(v.type)) return static_cast<float>(v.unsigned_value);
  fail_key(key, v, "a number");
}
float GgufFile::get_f32(std::string_view key, float fallback) const {
  return has(key) ? get_f32(key) : fallback;
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::BOOL) fail_key(key, v, "bool");
  return v.bool_value;
}
bool GgufFile::get_bool(std::string_view key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::ARRAY || v.array.element_type != GgufType::STRING) {
    fail_key(key, v, "array of string");
  }
  return v.array.strings;
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::ARRAY) fail_key(key, v, "array of f32");
  const GgufArray& a = v.array;
  std::vector<float> out;
  out.reserve(a.size());
  if (gguf_type_is_float(a.element_type)) {
    for (double x : a.float_values) out.push_back(static_cast<float>(x));
  } else if (gguf_type_is_signed(a.element_type)) {
    for (int64_t x : a.signed_values) out.push_back(static_cast<float>(x));
  } else if (gguf_type_is_unsigned(a.element_type)) {
    for (uint64_t x : a.unsigned_values) out.push_back(static_cast<float>(x));
  } else {
    fail_key(key, v, "array of f32");
  }
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::ARRAY) fail_key(key, v, "array of i32");
  const GgufArray& a = v.array;
  std::vector<int32_t> out;
  out.reserve(a.size());
  auto out_of_range = [&](size_t i, const std::string& value) {
    throw Error(path() + ": metadata " + in_quotes(key) + "[" + std::to_string(i) + "] = " + value +
                " does not fit a signed 32-bit integer");
  };
  if (gguf_type_is_signed(a.element_type)) {
    for (size_t i = 0; i < a.signed_values.size(); ++i) {
      const int64_t x = a.signed_values[i];
      if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max()) {
        out_of_range(i, std::to_string(x));
      }
      out.push_back(static_cast<int32_t>(x));
    }
  } else if (gguf_type_is_unsigned(a.element_type)) {
    for (size_t i = 0; i < a.unsigned_values.size(); ++i) {
      const uint64_t x = a.unsigned_values[i];
      if (x > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
        out_of_range(i, std::to_string(x));
      }
      out.push_back(static_cast<int32_t>(x));
    }
  } else {
    fail_key(key, v, "array of i32");
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (t == nullptr) throw Error(path() + ": tensor " + in_quotes(name) + " is missing");
  return *t;
}

std::span<const uint8_t> GgufFile::tensor_bytes(const GgufTensorInfo& info) const {
  if (!info.byte_size) {
    throw Error(path() + ": tensor " + in_quotes(info.name) + " has ggml type " +
                std::to_string(info.type) +
                ", which ternvk cannot read (known: F32, F16, BF16, Q8_0, TQ1_0, TQ2_0, I2_S, ...)");
  }
  // parse() checked every tensor of this file; re-check so an info from elsewhere cannot escape.
  const auto data = data_section();
  if (!range_inside(info.offset, *info.byte_size, data.size())) {
    throw Error(path() + ": tensor " + in_quotes(info.name) + " lies outside the data section");
  }
  return data.subspan(info.offset, *info.byte_size);
}

std::span<const uint8_t> GgufFile::data_section() const {
  if (data_offset_ >= file_.size()) return {};
  return file_.bytes().subspan(data_offset_);
}

}  // namespace ternvk
