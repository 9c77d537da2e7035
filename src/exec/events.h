// What the executor reports while it runs (ComfyUI's websocket messages, minus the UI data):
// one stream of events a CLI turns into a progress display and a library host forwards.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace sdflow {

struct ExecEvent {
  enum class Type {
    kStart,        // validation passed, nodes are about to run
    kCached,       // a node's outputs came from the cache; it does not run
    kNodeStart,    // a node begins
    kProgress,     // value/max from inside a node (sampler steps)
    kNodeDone,     // a node finished; seconds = its wall time
    kError,        // a node failed; message = the error as thrown to the caller
    kInterrupted,  // the run was cancelled (between nodes, or inside node_id)
    kSuccess,      // every node ran; seconds = the run's wall time
  };
  Type type = Type::kStart;
  std::string node_id;  // empty for run-wide events
  std::string class_type;
  int64_t value = 0;
  int64_t max = 0;
  double seconds = 0;
  std::string message;
};

// Called on the thread that runs the workflow, synchronously: keep it short.
using EventSink = std::function<void(const ExecEvent&)>;

inline const char* to_string(ExecEvent::Type type) {
  switch (type) {
    case ExecEvent::Type::kStart:
      return "start";
    case ExecEvent::Type::kCached:
      return "cached";
    case ExecEvent::Type::kNodeStart:
      return "node_start";
    case ExecEvent::Type::kProgress:
      return "progress";
    case ExecEvent::Type::kNodeDone:
      return "node_done";
    case ExecEvent::Type::kError:
      return "error";
    case ExecEvent::Type::kInterrupted:
      return "interrupted";
    case ExecEvent::Type::kSuccess:
      return "success";
  }
  return "unknown";
}

}  // namespace sdflow
