// Stop strings over streamed text: text that might be the start of a stop string is held back
// until it is certain, so a client never sees part of a stop string (OpenAI's behaviour).
#pragma once
#include <string>
#include <vector>

namespace ternvk::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds generated text; returns the text that is now safe to send. After a stop string is found,
  // stopped() is true and the text from the stop string on is dropped.
  std::string feed(const std::string& text);
  // The held-back text, at the end of generation (a prefix of a stop string that never completed).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace ternvk::server
