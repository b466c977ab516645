// JSON that comes from outside (config.json, tokenizer.json, tokenizer_config.json, safetensors
// headers and indexes): parsed with a bounded nesting depth and size, and described in errors
// without recursing into it. nlohmann's parser and destructor do not recurse, but dump(), copies
// and comparisons do: a file nested a million levels deep would overflow the stack in them.
#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace ternvk {

// Deeper than any real file (tokenizer.json nests about 6 levels), shallow enough for dump().
inline constexpr int kMaxJsonDepth = 64;

// Parses `text`. Throws ternvk::Error starting with `source` for invalid JSON and for nesting
// deeper than `max_depth` (refused before parsing, so nothing deep is ever built).
nlohmann::json parse_json_text(std::string_view text, const std::string& source, int max_depth = kMaxJsonDepth);

// Reads and parses a file of at most `max_bytes` bytes; errors name the file.
nlohmann::json read_json_file(const std::filesystem::path& path, uint64_t max_bytes);

// A short, never recursive description of a value for error messages: scalars as written (long
// strings clipped), arrays and objects by their size, e.g. "an array of 3 items".
std::string json_preview(const nlohmann::json& value);

// `key` quoted and clipped for a path in an error message: ["a b"].
std::string json_key(std::string_view key);

}  // namespace ternvk
