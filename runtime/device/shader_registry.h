// The SPIR-V modules compiled from shaders/ at build time and embedded in the binary.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>

namespace ternvk::shaders {

// Every embedded module by name (the shader file name, or the variant name given in
// shaders/CMakeLists.txt).
const std::map<std::string, std::span<const uint32_t>, std::less<>>& all();

}  // namespace ternvk::shaders
