// Node outputs kept between runs, keyed by input signature (COMFY_COMPAT.md 5.6): a node whose
// class, fingerprint, constants and ancestors are unchanged reuses its previous outputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "nodeapi/value.h"

namespace sdflow {

enum class CacheMode {
  kClassic,  // keep what the latest run used; drop the rest when the next run starts
  kNone,     // keep nothing between runs
  kLru,      // keep up to a number of entries, evicting the runs that used them longest ago
};

// Not thread-safe: owned by one Executor, used by one run at a time.
class OutputCache {
 public:
  explicit OutputCache(CacheMode mode = CacheMode::kClassic, size_t lru_capacity = 64);

  CacheMode mode() const { return mode_; }
  // Before a run, with the keys of every node it needs. Classic mode drops the entries of
  // other keys now, so results of a workflow edited away do not pin memory.
  void begin_run(const std::vector<std::string>& keys);
  // Null when absent; a hit marks the entry as used by the current run.
  const ValueList* find(const std::string& key);
  void store(const std::string& key, const ValueList& outputs);
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  void evict_lru();

  struct Entry {
    ValueList outputs;
    uint64_t generation = 0;  // the run that last used it
  };
  CacheMode mode_;
  size_t lru_capacity_;
  uint64_t generation_ = 0;
  std::unordered_map<std::string, Entry> entries_;
};

// A 128-bit FNV-1a hash of `data` as 32 hex digits: cache keys stay short however deep the
// ancestry, and accidental collisions are out of reach (this is not a defence against a
// workflow crafted to collide, which could only make itself produce wrong images).
std::string hash128_hex(const std::string& data);

}  // namespace sdflow
