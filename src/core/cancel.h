// Cooperative cancellation. A signal handler (or a library host) calls request(); long work
// polls throw_if_cancelled() between nodes and between sampler steps / layers.
#pragma once

#include <atomic>

namespace sdflow {

class CancelToken {
 public:
  void request() { flag_.store(true, std::memory_order_relaxed); }
  void reset() { flag_.store(false, std::memory_order_relaxed); }
  bool requested() const { return flag_.load(std::memory_order_relaxed); }
  // Throws Error(kCancelled) when a cancel was requested.
  void throw_if_cancelled() const;

 private:
  std::atomic<bool> flag_{false};
};

}  // namespace sdflow
