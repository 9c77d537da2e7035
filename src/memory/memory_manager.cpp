#include "memory/memory_manager.h"

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

void MemoryManager::init() {
  state_ = resolve_vram_state(options_, device_->has_own_memory());
  if (options_.vram_budget_gb) {
    if (*options_.vram_budget_gb <= 0) throw Error(ErrorKind::kUsage, "--vram-budget must be > 0");
    budget_bytes_ = static_cast<int64_t>(*options_.vram_budget_gb * static_cast<double>(int64_t{1} << 30));
    if (!device_->set_memory_limit(budget_bytes_))
      log::warn("--vram-budget {} GB cannot be enforced on {}", *options_.vram_budget_gb, device_->name());
  }
  ResidencySettings rs;
  rs.state = state_;
  rs.extra_reserved = extra_reserved_vram(options_);
  rs.budget_bytes = device_->has_own_memory() ? budget_bytes_ : 0;
  rs.smart_memory = !options_.disable_smart_memory;
  rs.pin_memory = !options_.disable_pinned_memory;
  rs.async_copies = !options_.disable_async_offload && options_.async_offload.value_or(2) > 0;
  residency_ = std::make_unique<ModelResidency>(*device_, rs);
  log::debug("memory: device {}, vram state {}", device_->name(), to_string(state_));
}

at::Device MemoryManager::intermediate_device() const {
  return options_.vram == VramMode::kGpuOnly ? device_->torch_device() : at::Device(at::kCPU);
}

at::Device MemoryManager::text_encoder_device() const {
  return text_encoder_on_gpu(options_, state_, caps()) ? compute_device() : at::Device(at::kCPU);
}

Residency& MemoryManager::host_residency() {
  if (!host_residency_) {
    host_device_ = make_cpu_device();
    host_residency_ = make_all_resident(*host_device_);
  }
  return *host_residency_;
}

Residency& MemoryManager::text_encoder_residency() {
  return text_encoder_device() == compute_device() ? residency() : host_residency();
}

void MemoryManager::begin_node() {
  device_->reset_peak_stats();
  residency_->take_activity();
}

MemoryStats MemoryManager::end_node() {
  // A block prefetched for a step that will not come would hold its buffer until the next node.
  residency_->drop_prefetched();
  return device_->stats();
}

void MemoryManager::set_streamed_blocks(const WeightStore& store, std::vector<std::string> blocks) {
  residency_->set_streamed(store, std::move(blocks));
}

void MemoryManager::unload_all() {
  if (host_residency_) host_residency_->evict_all();
  residency_->evict_all();
  device_->empty_cache();
}

}  // namespace sdflow
