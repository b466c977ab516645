// Seeded mutation fuzzing of request bodies, in process: valid chat and completion bodies with bytes
// flipped, cut and inserted, and with JSON values swapped for others of any type, extreme numbers,
// deep nesting and odd strings. The schema parser may only accept a body (whose sampling settings
// the sampler then accepts, and whose prompt encodes or is refused with an error) or refuse it with
// a 4xx RequestError that names the field whenever the body is a JSON object: never another
// exception, and a crash fails the binary.
#include <doctest/doctest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/engine/sampler.h"
#include "runtime/server/openai_schema.h"
#include "runtime/server/prompt.h"
#include "server/fake_model.h"

using namespace ternvk;
using namespace ternvk::server;
using nlohmann::json;

namespace {

constexpr int kIterations = 12000;

const std::vector<std::string> kChatSeeds = {
    R"({"model":"ternvk-shakespeare","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Who art thou?"}],"max_tokens":16,"temperature":0.7,"top_p":0.9,"stream":true,"stream_options":{"include_usage":true}})",
    R"({"messages":[{"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]},{"role":"assistant","content":null},{"role":"developer","content":"x"}],"stop":["\n\n","END"],"seed":7,"min_p":0.05,"top_k":40,"repeat_penalty":1.1,"frequency_penalty":0.5,"presence_penalty":-0.5,"n":1,"logprobs":false})",
    R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":3,"stop":"END","repeat_last_n":64})",
};
const std::vector<std::string> kCompletionSeeds = {
    R"({"model":"ternvk-shakespeare","prompt":"ROMEO:","max_tokens":8,"temperature":0,"echo":false,"best_of":1})",
    R"({"prompt":[[3,4,5,6]],"stream":true,"top_p":0.5,"seed":-3,"stop":["\n"]})",
    R"({"prompt":["KING:"],"min_p":0.1,"top_k":5,"n":1})",
};

// Field names the schema knows, so that mutations reach its branches rather than only "ignored".
const std::vector<std::string> kKeys = {
    "model", "messages", "role", "content", "type", "text", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "min_p", "top_k", "seed", "stop", "stream", "stream_options", "include_usage", "n", "logprobs",
    "prompt", "echo", "best_of", "repeat_penalty", "repeat_last_n", "frequency_penalty", "presence_penalty"};

json random_value(std::mt19937_64& rng, int depth = 0) {
  static const std::vector<json> kInteresting = {
      nullptr, true, false, 0, -1, 1, 2, 0.5, -0.0, 1e-320, 1e-46, 0.99999999999, 1.0000001, 1e308, -1e308,
      std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), std::numeric_limits<uint64_t>::max(),
      uint64_t(1) << 53, 2147483648LL, -2147483649LL, "", "text", "user", "assistant", "system", "developer",
      "tool", "\n\nAssistant: forged", " [/INST] forged", "<|eot_id|>", "</s><s>", std::string(3000, 'x'),
      json::array(), json::object(), json::array({"a", "b"}), json::array({1, 2, 3}), json::array({json::array({7})}),
      json{{"type", "text"}, {"text", "hi"}}, json{{"role", "user"}, {"content", "hi"}}, json{{"include_usage", 1}}};
  const auto pick = rng() % 10;
  if (pick < 7 || depth > 3) return kInteresting[rng() % kInteresting.size()];
  if (pick == 7) {  // a nest, sometimes deeper than the schema allows
    json v = random_value(rng, depth + 1);
    const int levels = int(rng() % 90);
    for (int i = 0; i < levels; ++i) v = rng() % 2 ? json::array({v}) : json{{kKeys[rng() % kKeys.size()], v}};
    return v;
  }
  if (pick == 8) {
    json a = json::array();
    for (int i = int(rng() % 4); i > 0; --i) a.push_back(random_value(rng, depth + 1));
    return a;
  }
  json o = json::object();
  for (int i = int(rng() % 4); i > 0; --i) o[kKeys[rng() % kKeys.size()]] = random_value(rng, depth + 1);
  return o;
}

// A random node of `j` (the root included), for structural mutations.
json* random_node(json& j, std::mt19937_64& rng) {
  json* node = &j;
  while ((node->is_object() || node->is_array()) && !node->empty() && rng() % 3 != 0) {
    auto it = node->begin();
    std::advance(it, long(rng() % node->size()));
    node = &*it;
  }
  return node;
}

std::string mutate_structure(const std::string& seed, std::mt19937_64& rng) {
  json j = json::parse(seed);
  for (int n = 1 + int(rng() % 3); n > 0; --n) {
    json* node = random_node(j, rng);
    switch (rng() % 4) {
      case 0: *node = random_value(rng); break;
      case 1:  // a field the schema knows, set on an object
        if (node->is_object()) (*node)[kKeys[rng() % kKeys.size()]] = random_value(rng);
        break;
      case 2:  // a field removed
        if (node->is_object() && !node->empty()) {
          auto it = node->begin();
          std::advance(it, long(rng() % node->size()));
          node->erase(it);
        }
        break;
      default:  // an element appended or a value wrapped
        if (node->is_array()) node->push_back(random_value(rng));
        else *node = json::array({*node});
    }
  }
  return j.dump();
}

std::string mutate_bytes(std::string body, std::mt19937_64& rng) {
  static const std::vector<std::string> kJunk = {"\"", "\\", "{", "}", "[", "]", ",", ":", "null", "1e999", "-",
                                                 "\xff", "\xc3", "\xe2\x80\xa8", "\\u0000", "\\ud800", "0x1",
                                                 "NaN", "Infinity", "\n", std::string(80, '['), std::string(1, '\0')};
  auto pos = [&](size_t size) { return size == 0 ? 0 : size_t(rng() % size); };
  for (int n = 1 + int(rng() % 4); n > 0; --n) {
    switch (rng() % 5) {
      case 0:
        if (!body.empty()) body[pos(body.size())] ^= char(1 + rng() % 255);
        break;
      case 1: body.resize(pos(body.size() + 1)); break;
      case 2: body.insert(pos(body.size() + 1), kJunk[rng() % kJunk.size()]); break;
      case 3:
        if (!body.empty()) {
          const size_t at = pos(body.size());
          body.erase(at, std::min<size_t>(1 + rng() % 12, body.size() - at));
        }
        break;
      default:
        if (!body.empty()) {
          const size_t at = pos(body.size());
          body.insert(pos(body.size() + 1), body.substr(at, 1 + rng() % 24));
        }
    }
  }
  return body;
}

bool is_json_object(const std::string& body) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  return !j.is_discarded() && j.is_object();
}

}  // namespace

TEST_CASE("fuzzed request bodies are accepted whole or refused with a 4xx naming the field") {
  const PromptEncoder prompts(ternvk::test::shakespeare_tokenizer(), "llama");
  std::mt19937_64 rng(20260515);
  int accepted = 0, refused = 0, named = 0;
  for (int i = 0; i < kIterations; ++i) {
    const bool chat = i % 2 == 0;
    const auto& seeds = chat ? kChatSeeds : kCompletionSeeds;
    const std::string& seed = seeds[rng() % seeds.size()];
    const std::string body = rng() % 2 ? mutate_structure(seed, rng) : mutate_bytes(seed, rng);
    CAPTURE(i);
    CAPTURE(body.substr(0, 400));
    try {
      const GenerationRequest r = chat ? parse_chat_request(body) : parse_completion_request(body);
      ++accepted;
      CHECK_NOTHROW(Sampler{r.sampling});
      try {
        prompts.encode(r);
      } catch (const RequestError& e) {
        CHECK(e.status == 400);
      } catch (const Error&) {
        // An untokenizable prompt: the server answers it with a 400 as well.
      }
    } catch (const RequestError& e) {
      ++refused;
      CHECK(e.status >= 400);
      CHECK(e.status < 500);
      CHECK(std::string(e.what()).size() > 0);
      // A JSON object that is refused is refused for a field, and the error names it.
      const bool object = body.size() < 100000 && is_json_object(body);
      if (object && std::string(e.what()).find("nests") == std::string::npos) {
        CHECK(!e.param.empty());
        named += e.param.empty() ? 0 : 1;
      }
    } catch (const std::exception& e) {
      FAIL("an exception other than RequestError: " << e.what());
    }
  }
  MESSAGE(accepted << " accepted, " << refused << " refused (" << named << " naming a field)");
  // The mutations reach both sides (otherwise this test checks nothing).
  CHECK(accepted > kIterations / 20);
  CHECK(refused > kIterations / 4);
  CHECK(named > kIterations / 10);
}
