#include "memory/activity.h"

#include <map>
#include <utility>

namespace sdflow {

void ActivityLog::note_loaded(const std::string& model) {
  std::lock_guard<std::mutex> lock(mu_);
  current_.loaded.push_back(model);
}

void ActivityLog::note_evicted(const std::string& model) {
  std::lock_guard<std::mutex> lock(mu_);
  current_.evicted.push_back(model);
}

void ActivityLog::add_streamed(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  current_.bytes_streamed += bytes;
}

MemoryActivity ActivityLog::take() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(current_, {});
}

namespace {

class RecordingResidency final : public Residency {
 public:
  RecordingResidency(std::unique_ptr<Residency> inner, ActivityLog& log)
      : inner_(std::move(inner)), log_(log) {}
  using Residency::acquire;

  BlockLease acquire(const WeightStore& store, const std::string& block, const WeightPatch* patch) override {
    const bool was_loaded = inner_->resident_bytes(store) > 0;
    BlockLease lease = inner_->acquire(store, block, patch);
    if (!was_loaded && inner_->resident_bytes(store) > 0) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        resident_[store.id()] = store.model_name();
      }
      log_.note_loaded(store.model_name());
    }
    return lease;
  }
  void evict(const WeightStore& store) override {
    inner_->evict(store);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resident_.find(store.id());
    if (it == resident_.end()) return;
    log_.note_evicted(it->second);
    resident_.erase(it);
  }
  void evict_all() override {
    inner_->evict_all();
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, name] : resident_) log_.note_evicted(name);
    resident_.clear();
  }
  int64_t resident_bytes(const WeightStore& store) const override { return inner_->resident_bytes(store); }
  int64_t resident_bytes() const override { return inner_->resident_bytes(); }

 private:
  std::unique_ptr<Residency> inner_;
  ActivityLog& log_;
  std::mutex mu_;
  std::map<uint64_t, std::string> resident_;  // stores this wrapper saw loaded, by id
};

}  // namespace

std::unique_ptr<Residency> make_recording_residency(std::unique_ptr<Residency> inner, ActivityLog& log) {
  return std::make_unique<RecordingResidency>(std::move(inner), log);
}

}  // namespace sdflow
