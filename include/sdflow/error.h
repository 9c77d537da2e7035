// sdflow/error.h — the one exception type sdflow throws.
//
// Errors: one exception type with a machine-readable kind, converted to exit codes and
// reports at the boundaries (CLI, Engine). Messages say where: "[KSampler #3] steps: ...".
#pragma once

#include <stdexcept>
#include <string>

namespace sdflow {

enum class ErrorKind {
  kUsage,        // bad command line or API use
  kValidation,   // the workflow is invalid (reported before anything runs)
  kIo,           // a file could not be read or written
  kFormat,       // a file is malformed or hostile (safetensors, PNG, JSON)
  kModel,        // a model file is not what a node expects
  kOutOfMemory,  // a device or host allocation failed after every fallback
  kCancelled,    // the user interrupted the run
  kRuntime,      // anything else that went wrong while running
};

const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// CLI exit status for an error of this kind: 2 for usage/validation, 1 for a failed run.
int exit_code_for(ErrorKind kind);

}  // namespace sdflow
