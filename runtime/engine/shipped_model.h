// The small model that ships with ternvk (models/ternvk-shakespeare), the default of every app and
// of the C API. Installed programs and the installed library find it without the source tree.
#pragma once
#include <filesystem>

namespace ternvk {

// TERNVK_MODEL when set; else share/ternvk/models/ternvk-shakespeare/model.gguf of the prefix the
// running program or libternvk was installed into (looked for beside the binary that holds this
// code and beside /proc/self/exe, one and two folders up); else the source tree's copy this build
// was made from.
std::filesystem::path shipped_model_path();

}  // namespace ternvk
