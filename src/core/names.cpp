// String names of the public enums (used in logs, reports and `sdflow --help`).
#include "sdflow/memory.h"
#include "sdflow/progress.h"

namespace sdflow {

const char* to_string(VramMode mode) {
  switch (mode) {
    case VramMode::kAuto: return "auto";
    case VramMode::kGpuOnly: return "gpu-only";
    case VramMode::kHighVram: return "highvram";
    case VramMode::kNormalVram: return "normalvram";
    case VramMode::kLowVram: return "lowvram";
    case VramMode::kNoVram: return "novram";
    case VramMode::kCpu: return "cpu";
  }
  return "?";
}

const char* to_string(Precision p) {
  switch (p) {
    case Precision::kDefault: return "default";
    case Precision::kFp32: return "fp32";
    case Precision::kFp64: return "fp64";
    case Precision::kFp16: return "fp16";
    case Precision::kBf16: return "bf16";
    case Precision::kFp8E4M3: return "fp8_e4m3fn";
    case Precision::kFp8E5M2: return "fp8_e5m2";
    case Precision::kFp8E8M0: return "fp8_e8m0fnu";
  }
  return "?";
}

const char* to_string(AttentionBackend b) {
  switch (b) {
    case AttentionBackend::kDefault: return "default";
    case AttentionBackend::kPytorch: return "pytorch";
    case AttentionBackend::kSplit: return "split";
    case AttentionBackend::kQuad: return "quad";
    case AttentionBackend::kSage: return "sage";
    case AttentionBackend::kFlash: return "flash";
  }
  return "?";
}

const char* to_string(ProgressEvent::Type t) {
  switch (t) {
    case ProgressEvent::Type::kStart: return "start";
    case ProgressEvent::Type::kCached: return "cached";
    case ProgressEvent::Type::kNodeStart: return "node_start";
    case ProgressEvent::Type::kProgress: return "progress";
    case ProgressEvent::Type::kNodeDone: return "node_done";
    case ProgressEvent::Type::kError: return "error";
    case ProgressEvent::Type::kInterrupted: return "interrupted";
    case ProgressEvent::Type::kSuccess: return "success";
  }
  return "?";
}

}  // namespace sdflow
