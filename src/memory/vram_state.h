// ComfyUI's VRAMState (model_management.py), same meaning; resolved from the flags by the
// memory manager (COMFY_COMPAT 1.6).
#pragma once

namespace sdflow {

enum class VramState { kDisabled, kNoVram, kLowVram, kNormalVram, kHighVram };
const char* to_string(VramState state);

}  // namespace sdflow
