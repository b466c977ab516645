// Seeded mutation fuzzing of the JSON files ternvk reads (config.json, tokenizer.json,
// tokenizer_config.json, safetensors headers): byte-level damage plus JSON-aware mutations that
// keep the text parseable more often -- values swapped for ones of another type, huge or negative
// numbers, deep nesting, duplicated pieces. Reading a mutant may only succeed or throw a
// ternvk::Error that names the file; any other exception fails, and a crash fails the binary.
#pragma once
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <string_view>

#include "runtime/core/error.h"

namespace ternvk::test {

inline std::string mutate_json(const std::string& seed, std::mt19937_64& rng) {
  static const char* const kValues[] = {
      "null", "true", "false", "0", "-1", "1073741824", "2147483648", "-9223372036854775808",
      "18446744073709551615", "1e999", "-1e999", "0.5", "1e-400", "\"\"", "\"a b\"", "\"\\u0000\"",
      "\"\\ud800\"", "\"\xff\"", "[]", "{}", "[1,2]", "[\"a\",\"b\",\"c\"]", "{\"a\":[1,{\"b\":null}]}",
      "{\"content\":5}", "{\"name\":\"default\"}", "\"BPE\"", "\"Split\"", "\"Sequence\"", "\"ByteLevel\"",
      "\"bitnet\"", "\"autobitlinear\"", "\"F16\"", "\"U8\"",
  };
  std::string s = seed;
  auto pos = [&](size_t size) { return size == 0 ? 0 : static_cast<size_t>(rng() % size); };
  // The end of the value that starts at `at` (roughly: the next , } or ] outside brackets).
  auto value_end = [&](size_t at) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = at; i < s.size(); ++i) {
      const char c = s[i];
      if (in_string) {
        if (c == '\\') ++i;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if (c == ']' || c == '}') {
        if (depth-- == 0) return i;
      } else if (c == ',' && depth == 0) {
        return i;
      }
    }
    return s.size();
  };
  const int mutations = 1 + static_cast<int>(rng() % 3);
  for (int m = 0; m < mutations; ++m) {
    switch (rng() % 8) {
      case 0:  // flip bits in one byte
        if (!s.empty()) s[pos(s.size())] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:  // truncate
        s.resize(pos(s.size() + 1));
        break;
      case 2: {  // delete a range
        if (s.empty()) break;
        const size_t at = pos(s.size());
        s.erase(at, std::min<size_t>(1 + rng() % 24, s.size() - at));
        break;
      }
      case 3: {  // insert a structural character
        static const char kPunct[] = "{}[]\",:\\";
        s.insert(pos(s.size() + 1), 1, kPunct[rng() % (sizeof(kPunct) - 1)]);
        break;
      }
      case 4:    // replace the value after a ':' (an object member) ...
      case 5: {  // ... or after a ',' or '[' (an array element or the next member)
        const char after = (rng() % 8 < 5) ? ':' : (rng() % 2 ? ',' : '[');
        const size_t start = s.find(after, pos(s.size()));
        if (start == std::string::npos) break;
        const size_t end = value_end(start + 1);
        s.replace(start + 1, end - (start + 1), kValues[rng() % std::size(kValues)]);
        break;
      }
      case 6: {  // nest a value deeply, now and then past any sane limit
        const size_t start = s.find(':', pos(s.size()));
        if (start == std::string::npos) break;
        const size_t depth = rng() % 4 == 0 ? 100000 : 1 + rng() % 80;
        const size_t end = value_end(start + 1);
        s.insert(end, std::string(depth, ']'));
        s.insert(start + 1, std::string(depth, '['));
        break;
      }
      default: {  // duplicate a slice (repeated keys, doubled elements)
        if (s.empty()) break;
        const size_t at = pos(s.size());
        const std::string piece = s.substr(at, 1 + rng() % 64);
        s.insert(pos(s.size() + 1), piece);
        break;
      }
    }
  }
  return s;
}

// Runs `read(text)` on `iterations` mutants of `seed`; every failure must be a ternvk::Error whose
// message contains `source` (the file name the reader was given).
template <typename Read>
void fuzz_json(const std::string& seed, uint64_t rng_seed, int iterations, const std::string& source, Read read) {
  std::mt19937_64 rng(rng_seed);
  int errors = 0;
  for (int i = 0; i < iterations; ++i) {
    const std::string text = mutate_json(seed, rng);
    try {
      read(text);
    } catch (const Error& e) {
      ++errors;
      const std::string_view message = e.what();
      if (message.find(source) == std::string_view::npos) {
        FAIL("iteration " << i << " (seed " << rng_seed << "): the error does not name " << source << ": " << message);
      }
    } catch (const std::exception& e) {
      FAIL("iteration " << i << " (seed " << rng_seed << "): non-ternvk exception: " << e.what());
    }
  }
  MESSAGE(errors << " of " << iterations << " mutated " << source << " files were rejected with ternvk::Error");
  CHECK(errors > iterations / 10);  // the mutations do break files: the fuzzer is doing something
  CHECK(errors < iterations);       // and some mutants stay readable: it reaches past the parser
}

}  // namespace ternvk::test
