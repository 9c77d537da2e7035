#include "memory/memory_manager.h"

#include <algorithm>

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

void MemoryManager::init() {
  state_ = resolve_vram_state(options_, device_->is_cuda());
  // Only the everything-resident policy exists yet; lowvram/novram streaming plugs in here.
  residency_ = make_recording_residency(make_all_resident(*device_), activity_);
  if (device_->is_cuda()) {
    host_device_ = make_cpu_device();
    host_residency_ = make_recording_residency(make_all_resident(*host_device_), activity_);
  }
  if (options_.vram_budget_gb) {
    if (*options_.vram_budget_gb <= 0) throw Error(ErrorKind::kUsage, "--vram-budget must be > 0");
    budget_bytes_ = static_cast<int64_t>(*options_.vram_budget_gb * static_cast<double>(int64_t{1} << 30));
    if (!device_->set_memory_limit(budget_bytes_))
      log::warn("--vram-budget {} GB cannot be enforced on {}", *options_.vram_budget_gb, device_->name());
  }
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

at::Device MemoryManager::text_encoder_device() const {
  if (!device_->is_cuda()) return device_->torch_device();
  if (options_.vram == VramMode::kGpuOnly) return device_->torch_device();
  // should_use_fp16(prioritize_performance=False): Volta and newer.
  if ((state_ == VramState::kHighVram || state_ == VramState::kNormalVram) && caps().supports_fp16())
    return device_->torch_device();
  return at::Device(at::kCPU);
}

at::Device MemoryManager::vae_device() const {
  return options_.cpu_vae ? at::Device(at::kCPU) : device_->torch_device();
}

Residency& MemoryManager::residency_for(at::Device device) {
  if (device == device_->torch_device()) return *residency_;
  if (device.is_cpu() && host_residency_) return *host_residency_;
  return *residency_;
}

void MemoryManager::after_node() {
  if (state_ == VramState::kNoVram) residency_->evict_all();
}

int MemoryManager::low_memory_level() const {
  low_memory_consulted_ = true;
  return low_memory_level_;
}

void MemoryManager::set_low_memory_level(int level) { low_memory_level_ = level; }

at::Device MemoryManager::intermediate_device() const {
  return options_.vram == VramMode::kGpuOnly ? device_->torch_device() : at::Device(at::kCPU);
}

void MemoryManager::begin_node() {
  device_->reset_peak_stats();
  activity_.take();
}

MemoryStats MemoryManager::end_node() { return stats(); }

void MemoryManager::unload_all() {
  residency_->evict_all();
  if (host_residency_) host_residency_->evict_all();
  device_->empty_cache();
}

}  // namespace sdflow
