#include "core/error.h"

namespace sdflow {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage: return "usage";
    case ErrorKind::kValidation: return "validation";
    case ErrorKind::kIo: return "io";
    case ErrorKind::kFormat: return "format";
    case ErrorKind::kModel: return "model";
    case ErrorKind::kOutOfMemory: return "out_of_memory";
    case ErrorKind::kCancelled: return "cancelled";
    case ErrorKind::kRuntime: return "runtime";
  }
  return "unknown";
}

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
    case ErrorKind::kValidation:
    case ErrorKind::kFormat:  // a malformed input file is the caller's input error
      return 2;
    default:
      return 1;
  }
}

}  // namespace sdflow
