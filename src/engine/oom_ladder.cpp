#include "engine/oom_ladder.h"

#include <cstdio>
#include <utility>

#include "core/error.h"
#include "core/log.h"
#include "core/torch_compat.h"
#include "memory/memory_manager.h"

namespace sdflow {

namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB",
                static_cast<double>(bytes) / static_cast<double>(int64_t{1} << 30));
  return buf;
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB",
                static_cast<double>(bytes) / static_cast<double>(int64_t{1} << 20));
  return buf;
}

std::string where(const NodeFailure& f) { return "[" + f.class_type + " #" + f.node_id + "] "; }

}  // namespace

bool OomLadder::recoverable(const std::exception& error) const {
  if (compat::is_cuda_out_of_memory(error)) return true;
  const auto* err = dynamic_cast<const Error*>(&error);
  return err && err->kind() == ErrorKind::kOutOfMemory;
}

bool OomLadder::next(const NodeFailure& f) {
  if (f.attempt == 1 || f.node_id != node_id_) {
    node_id_ = f.node_id;
    next_rung_ = 0;
    rungs_.clear();
  }
  const std::string at = where(f) + "out of memory (" + first_line(f.message) + "): ";
  while (next_rung_ < 4) {
    switch (next_rung_++) {
      case 0:
        log::warn("{}freeing the allocator's cached memory and retrying", at);
        memory_.device().empty_cache();
        rungs_.push_back("empty_cache");
        return true;
      case 1:
        if (memory_.residency().resident_bytes() == 0) continue;  // nothing to evict
        log::warn("{}unloading {} of idle models and retrying", at,
                  mib(memory_.residency().resident_bytes()));
        // Only the device's models: those on the host (CPU text encoders) take no VRAM.
        memory_.residency().evict_all();
        memory_.device().empty_cache();
        rungs_.push_back("unload_models");
        return true;
      case 2:
      case 3: {
        // Only code that read the level has a cheaper path; raising it helps nothing else.
        if (!memory_.low_memory_consulted()) continue;
        const int level = next_rung_ - 2;
        log::warn("{}retrying in low-memory mode {} ({})", at, level,
                  level == 1 ? "tiled VAE, streamed weights where supported" : "smaller VAE tiles");
        memory_.device().empty_cache();
        memory_.set_low_memory_level(level);
        rungs_.push_back("low_memory_" + std::to_string(level));
        return true;
      }
      default:
        break;
    }
  }
  return false;
}

std::string OomLadder::give_up(const NodeFailure& f) const {
  std::string tried;
  for (const auto& r : rungs_) tried += (tried.empty() ? "" : ", ") + r;
  std::string msg = "out of memory on " + memory_.device().name();
  if (memory_.budget_bytes() > 0) msg += " (--vram-budget " + gib(memory_.budget_bytes()) + ")";
  msg += tried.empty() ? "" : " after trying " + tried;
  msg += ": " + first_line(f.message);
  const std::vector<std::string> hints = memory_flag_hints(memory_, f.class_type);
  if (!hints.empty()) {
    msg += ". Try ";
    for (size_t i = 0; i < hints.size(); ++i)
      msg += (i ? (i + 1 == hints.size() ? " or " : ", ") : "") + hints[i];
  }
  return msg;
}

void OomLadder::node_finished(const std::string&) {
  memory_.set_low_memory_level(0);
  memory_.reset_low_memory_consulted();
  next_rung_ = 0;
  node_id_.clear();
}

std::vector<std::string> OomLadder::take_rungs() { return std::exchange(rungs_, {}); }

std::vector<std::string> memory_flag_hints(const MemoryManager& memory, const std::string& class_type) {
  std::vector<std::string> hints;
  const MemoryOptions& o = memory.options();
  const VramState state = memory.vram_state();
  const bool vae = class_type.rfind("VAE", 0) == 0;
  if (state == VramState::kHighVram) hints.push_back("without --highvram/--gpu-only");
  if (state == VramState::kHighVram || state == VramState::kNormalVram) hints.push_back("--lowvram");
  if (state != VramState::kNoVram && state != VramState::kDisabled) hints.push_back("--novram");
  if (vae && !o.cpu_vae) hints.push_back("--cpu-vae");
  if (vae)
    hints.push_back(class_type.find("Encode") != std::string::npos
                        ? "VAEEncodeTiled with a smaller tile_size"
                        : "VAEDecodeTiled with a smaller tile_size");
  if (memory.budget_bytes() > 0) hints.push_back("a larger --vram-budget");
  if (o.reserve_vram_gb && *o.reserve_vram_gb > 0.4) hints.push_back("a smaller --reserve-vram");
  hints.push_back("a smaller batch or image size");
  return hints;
}

}  // namespace sdflow
