#include "exec/cache.h"

#include <algorithm>
#include <limits>

namespace sdflow {

OutputCache::OutputCache(CacheMode mode, size_t lru_capacity) : mode_(mode), lru_capacity_(lru_capacity) {}

void OutputCache::begin_run(const std::vector<std::string>& keys) {
  ++generation_;
  if (mode_ == CacheMode::kNone) {
    entries_.clear();
  } else if (mode_ == CacheMode::kClassic) {
    std::unordered_map<std::string, Entry> kept;
    for (const auto& k : keys) {
      auto it = entries_.find(k);
      if (it != entries_.end()) kept.insert(entries_.extract(it));
    }
    entries_.swap(kept);
  } else {
    evict_lru();
  }
}

const ValueList* OutputCache::find(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  it->second.generation = generation_;
  return &it->second.outputs;
}

void OutputCache::store(const std::string& key, const ValueList& outputs) {
  // Within a run the executor hands values to consumers itself, so kNone needs no entry.
  if (mode_ == CacheMode::kNone) return;
  entries_[key] = Entry{outputs, generation_};
  if (mode_ == CacheMode::kLru) evict_lru();
}

void OutputCache::evict_lru() {
  // Entries of the current run are never evicted: its consumers may still need them.
  while (entries_.size() > lru_capacity_) {
    uint64_t oldest = std::numeric_limits<uint64_t>::max();
    for (const auto& [k, e] : entries_) oldest = std::min(oldest, e.generation);
    if (oldest >= generation_) return;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.generation == oldest)
        it = entries_.erase(it);
      else
        ++it;
    }
  }
}

std::string hash128_hex(const std::string& data) {
  // FNV-1a 128: offset basis 0x6c62272e07bb014262b821756295c58d, prime 2^88 + 0x13b.
  using u128 = unsigned __int128;
  u128 h = (static_cast<u128>(0x6c62272e07bb0142ULL) << 64) | 0x62b821756295c58dULL;
  const u128 prime = (static_cast<u128>(1) << 88) | 0x13b;
  for (unsigned char c : data) {
    h ^= c;
    h *= prime;
  }
  static const char* kHex = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 31; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kHex[static_cast<unsigned>(h & 0xf)];
    h >>= 4;
  }
  return out;
}

}  // namespace sdflow
