// sdflow/progress.h — what a running workflow reports while it runs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace sdflow {

struct ProgressEvent {
  enum class Type {
    kStart,        // the workflow started (after validation)
    kCached,       // a node's result came from the cache
    kNodeStart,    // a node began executing
    kProgress,     // a step inside a node (value of max)
    kNodeDone,     // a node finished (seconds set)
    kError,        // a node failed (message set)
    kInterrupted,  // the run was cancelled
    kSuccess,      // the workflow finished
  };
  Type type = Type::kStart;
  std::string node_id;
  std::string class_type;
  int64_t value = 0;
  int64_t max = 0;
  double seconds = 0;
  std::string message;
};

// Called on the thread that runs the workflow; keep it cheap.
using ProgressCallback = std::function<void(const ProgressEvent&)>;

const char* to_string(ProgressEvent::Type type);

}  // namespace sdflow
