#include "memory/memory_manager.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <utility>

#include "core/error.h"
#include "core/log.h"

namespace sdflow {

const char* to_string(VramState state) {
  switch (state) {
    case VramState::kDisabled: return "DISABLED";
    case VramState::kNoVram: return "NO_VRAM";
    case VramState::kLowVram: return "LOW_VRAM";
    case VramState::kNormalVram: return "NORMAL_VRAM";
    case VramState::kHighVram: return "HIGH_VRAM";
  }
  return "?";
}

VramState resolve_vram_state(const MemoryOptions& o, bool have_gpu) {
  if (o.vram == VramMode::kCpu || !have_gpu) return VramState::kDisabled;
  switch (o.vram) {
    case VramMode::kLowVram: return VramState::kLowVram;
    case VramMode::kNoVram: return VramState::kNoVram;
    case VramMode::kHighVram:
    case VramMode::kGpuOnly: return VramState::kHighVram;
    default: return VramState::kNormalVram;  // ComfyUI v0.8.0 has no automatic low-VRAM switch
  }
}

bool text_encoder_on_gpu(const MemoryOptions& o, VramState state, const DeviceCaps& caps) {
  if (!caps.is_gpu) return false;
  if (o.vram == VramMode::kGpuOnly) return true;
  if (state != VramState::kHighVram && state != VramState::kNormalVram) return false;
  if (o.force_fp16) return true;
  if (o.force_fp32) return false;
  return caps.supports_fp16();
}

int64_t extra_reserved_vram(const MemoryOptions& o) {
  constexpr int64_t kGiB = int64_t{1} << 30;
  if (o.reserve_vram_gb) return static_cast<int64_t>(*o.reserve_vram_gb * static_cast<double>(kGiB));
  return int64_t{400} << 20;
}

namespace {
std::unique_ptr<ComputeDevice> pick_device(const MemoryOptions& o) {
  if (o.vram == VramMode::kCpu) return make_cpu_device();
  if (!cuda_available()) {
    if (o.cuda_device || o.vram == VramMode::kGpuOnly || o.vram == VramMode::kHighVram)
      log::warn("no CUDA device available: running on the CPU");
    return make_cpu_device();
  }
  return make_cuda_device(o.cuda_device.value_or(o.default_device.value_or(0)));
}
}  // namespace

MemoryManager::MemoryManager(const MemoryOptions& options) : options_(options), device_(pick_device(options)) {
  init();
}

MemoryManager::MemoryManager(const MemoryOptions& options, std::unique_ptr<ComputeDevice> device)
    : options_(options), device_(std::move(device)) {
  init();
}

MemoryManager::~MemoryManager() = default;

// host_residency()'s loads and evictions, for --report: ModelResidency accounts for the
// compute device; the host policy is everything-resident, so a wrapper notes a store's first
// resident block as a load and evict()/evict_all() as evictions.
struct HostActivity {
  std::mutex mu;
  std::vector<std::string> loaded, evicted;
};

namespace {

class RecordingResidency final : public Residency {
 public:
  RecordingResidency(std::unique_ptr<Residency> inner, std::shared_ptr<HostActivity> log)
      : inner_(std::move(inner)), log_(std::move(log)) {}
  using Residency::acquire;

  BlockLease acquire(const WeightStore& store, const std::string& block, const WeightPatch* patch) override {
    const bool was_loaded = inner_->resident_bytes(store) > 0;
    BlockLease lease = inner_->acquire(store, block, patch);
    if (!was_loaded && inner_->resident_bytes(store) > 0) {
      std::lock_guard<std::mutex> lock(log_->mu);
      resident_[store.id()] = store.model_name();
      log_->loaded.push_back(store.model_name());
    }
    return lease;
  }
  void evict(const WeightStore& store) override {
    inner_->evict(store);
    std::lock_guard<std::mutex> lock(log_->mu);
    auto it = resident_.find(store.id());
    if (it == resident_.end()) return;
    log_->evicted.push_back(it->second);
    resident_.erase(it);
  }
  void evict_all() override {
    inner_->evict_all();
    std::lock_guard<std::mutex> lock(log_->mu);
    for (const auto& [id, name] : resident_) log_->evicted.push_back(name);
    resident_.clear();
  }
  int64_t resident_bytes(const WeightStore& store) const override { return inner_->resident_bytes(store); }
  int64_t resident_bytes() const override { return inner_->resident_bytes(); }

 private:
  std::unique_ptr<Residency> inner_;
  std::shared_ptr<HostActivity> log_;
  std::map<uint64_t, std::string> resident_;  // stores seen loaded, by id (under log_->mu)
};

}  // namespace

void MemoryManager::init() {
  state_ = resolve_vram_state(options_, device_->has_own_memory());
  if (options_.vram_budget_gb) {
    const double gb = *options_.vram_budget_gb;
    if (!(gb > 0) || !std::isfinite(gb)) throw Error(ErrorKind::kUsage, "--vram-budget must be > 0");
    if (device_->has_own_memory()) {
      budget_bytes_ = static_cast<int64_t>(gb * static_cast<double>(int64_t{1} << 30));
      if (!device_->set_memory_limit(budget_bytes_))
        log::warn("--vram-budget {} GB cannot be enforced on {}", gb, device_->name());
    } else {
      // No VRAM to cap: free memory stays the host's, as ComfyUI reads it on the CPU. A capped
      // figure would only shrink the cond and VAE batches, and so change the numerics.
      log::warn("--vram-budget {} GB has no effect on {}", gb, device_->name());
    }
  }
  ResidencySettings rs;
  rs.state = state_;
  rs.extra_reserved = extra_reserved_vram(options_);
  rs.budget_bytes = device_->has_own_memory() ? budget_bytes_ : 0;
  rs.smart_memory = !options_.disable_smart_memory;
  rs.pin_memory = !options_.disable_pinned_memory;
  rs.async_copies = !options_.disable_async_offload && options_.async_offload.value_or(2) > 0;
  residency_ = std::make_unique<ModelResidency>(*device_, rs);
  host_activity_ = std::make_shared<HostActivity>();
  const MemoryStats vram = stats();
  const HostMemory ram = host_memory();
  log::debug(
      "memory: device {}, total VRAM {} MB (free {} MB), total RAM {} MB (available {} MB), vram state {}",
      device_->name(), vram.total >> 20, vram.free >> 20, ram.total >> 20, ram.available >> 20,
      to_string(state_));
}

MemoryStats MemoryManager::stats() const {
  MemoryStats s = device_->stats();
  if (budget_bytes_ > 0) {
    // The allocator cannot grow past the cap, so neither can what batching decisions count on.
    s.total = s.total > 0 ? std::min(s.total, budget_bytes_) : budget_bytes_;
    s.free = std::max<int64_t>(0, std::min(s.free, budget_bytes_ - s.allocated));
  }
  return s;
}

// One rule for text encoder placement: ComfyUI's text_encoder_device() (text_encoder_on_gpu).
at::Device MemoryManager::text_encoder_device() const {
  return text_encoder_on_gpu(options_, state_, caps()) ? compute_device() : at::Device(at::kCPU);
}

void MemoryManager::adopt_text_encoder(const WeightStore& store) {
  if (state_ == VramState::kNormalVram && text_encoder_device() == compute_device() && device_->has_own_memory())
    residency_->set_offload_after_use(store);
}

at::Device MemoryManager::vae_device() const {
  return options_.cpu_vae ? at::Device(at::kCPU) : device_->torch_device();
}

Residency& MemoryManager::host_residency() {
  if (!host_residency_) {
    host_device_ = make_cpu_device();
    host_residency_ = std::make_unique<RecordingResidency>(make_all_resident(*host_device_), host_activity_);
  }
  return *host_residency_;
}

Residency& MemoryManager::residency_for(at::Device device) {
  if (device == device_->torch_device()) return *residency_;
  if (device.is_cpu()) return host_residency();
  return *residency_;
}

int MemoryManager::low_memory_level() const {
  low_memory_consulted_ = true;
  return low_memory_level_;
}

void MemoryManager::set_low_memory_level(int level) { low_memory_level_ = level; }

void MemoryManager::load_model(const ModelLoad& request) {
  // Low-memory mode (OOM ladder): stream every block, like --novram, for this attempt. The
  // next load at level 0 re-plans the model with the room there is.
  if (request.store && low_memory_level() > 0) {
    ModelLoad all = request;
    all.stream_blocks.clear();
    for (const WeightBlock& b : request.store->blocks()) all.stream_blocks.push_back(b.name);
    residency_->load(all);
    return;
  }
  residency_->load(request);
}

at::Device MemoryManager::intermediate_device() const {
  return options_.vram == VramMode::kGpuOnly ? device_->torch_device() : at::Device(at::kCPU);
}

MemoryActivity MemoryManager::take_activity() {
  MemoryActivity a = residency_->take_activity();
  std::lock_guard<std::mutex> lock(host_activity_->mu);
  for (std::string& m : host_activity_->loaded) a.models_loaded.push_back(std::move(m) + " (cpu)");
  for (std::string& m : host_activity_->evicted) a.models_evicted.push_back(std::move(m) + " (cpu)");
  host_activity_->loaded.clear();
  host_activity_->evicted.clear();
  return a;
}

void MemoryManager::begin_node() {
  device_->reset_peak_stats();
  take_activity();
}

MemoryStats MemoryManager::end_node() {
  // A block prefetched for a step that will not come would hold its buffer until the next node.
  residency_->drop_prefetched();
  return stats();
}

void MemoryManager::set_streamed_blocks(const WeightStore& store, std::vector<std::string> blocks) {
  residency_->set_streamed(store, std::move(blocks));
}

void MemoryManager::unload_all() {
  residency_->evict_all();
  if (host_residency_) host_residency_->evict_all();
  device_->empty_cache();
}

}  // namespace sdflow
