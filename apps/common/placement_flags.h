// The apps' --devices and --split flags (CLI and desktop app), parsed into what EngineOptions takes.
#pragma once
#include <string>
#include <vector>

namespace ternvk {

// Parses "auto" (empty result) or "N,N,...": layers per device.
std::vector<int> parse_split(const std::string& text);
// Parses "all" (every device) or "I,J,..." (indices may repeat: each entry is its own logical device).
std::vector<int> parse_device_list(const std::string& text, int device_count);

}  // namespace ternvk
