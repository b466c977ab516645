#include "runtime/formats/json_input.h"

#include <fstream>
#include <sstream>

#include "runtime/core/error.h"

namespace ternvk {

namespace {

// Error text quoted from the file (a parser's "last read" token) can be as long as the file.
std::string clipped(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
  return std::string(s.substr(0, cut)) + "...";
}

// Brackets outside strings, counted the way the parser will meet them; an upper bound of the
// nesting of whatever part of the text the parser accepts.
void check_depth(std::string_view text, const std::string& source, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        throw Error(source + ": JSON nested deeper than " + std::to_string(max_depth) + " levels (at byte " +
                    std::to_string(i) + "); no file ternvk reads nests that deep");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

}  // namespace

nlohmann::json parse_json_text(std::string_view text, const std::string& source, int max_depth) {
  check_depth(text, source, max_depth);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": not valid JSON: " + clipped(e.what(), 300));
  }
}

nlohmann::json read_json_file(const std::filesystem::path& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  std::string text;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (text.size() > max_bytes) {
      throw Error(path.string() + ": larger than " + std::to_string(max_bytes >> 20) +
                  " MiB, far more than a file of this kind holds");
    }
  }
  if (in.bad()) throw Error(path.string() + ": read failed");
  return parse_json_text(text, path.string());
}

std::string json_preview(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::array:
      return "an array of " + std::to_string(value.size()) + (value.size() == 1 ? " item" : " items");
    case nlohmann::json::value_t::object:
      return "an object of " + std::to_string(value.size()) + (value.size() == 1 ? " key" : " keys");
    case nlohmann::json::value_t::string: {
      // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "..." + std::string.
      std::string quoted = "\"";
      quoted += clipped(value.get_ref<const std::string&>(), 60);
      quoted += '"';
      return quoted;
    }
    case nlohmann::json::value_t::discarded:
      return "nothing";
    default:
      return value.dump();  // a number, true, false or null: never recursive
  }
}

std::string json_key(std::string_view key) { return "[\"" + clipped(key, 60) + "\"]"; }

}  // namespace ternvk
