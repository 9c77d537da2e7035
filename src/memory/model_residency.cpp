#include "memory/model_residency.h"

#include <algorithm>
#include <cmath>

#include "core/log.h"

namespace sdflow {

namespace {
constexpr double kMiB = 1024.0 * 1024.0;
}

struct ModelResidency::StoreState {
  const WeightStore* store = nullptr;  // valid until evict(store): the store's deleter calls it
  std::string label;
  std::map<std::string, size_t> index;  // block → position in the store (its declared order)
  bool loaded = false;
  bool offload_after_use = false;  // set_offload_after_use
  uint64_t last_used = 0;
  BlockPlan plan;
  std::map<std::string, int64_t> cost;  // device bytes of each block in use (block_cost)
  ModelLoad last_request;  // figures and forced blocks of the latest load (patch dropped)

  struct Copy {
    uint64_t patch_id = 0;  // 0: unpatched
    std::shared_ptr<const BlockTensors> tensors;
    int64_t bytes = 0;
  };
  std::map<std::string, Copy> resident;
  int64_t resident_bytes = 0;
  std::map<std::string, BlockTensors> pinned;  // host copies of streamed blocks, page-locked

  // The order the model acquired blocks in, as "what came after X" (Note [Weight streaming]).
  std::map<std::string, std::string> next;
  std::string last_block;
};

ModelResidency::ModelResidency(ComputeDevice& device, ResidencySettings settings)
    : device_(device),
      settings_(settings),
      streamer_(device.make_copy_stream(settings.async_copies), settings.async_copies && device.has_own_memory()) {}

ModelResidency::~ModelResidency() = default;

ModelResidency::StoreState& ModelResidency::state_for(const WeightStore& store) {
  auto it = stores_.find(store.id());
  if (it != stores_.end()) return *it->second;
  auto s = std::make_unique<StoreState>();
  s->store = &store;
  s->label = store.label();
  for (size_t i = 0; i < store.blocks().size(); ++i) s->index[store.blocks()[i].name] = i;
  return *stores_.emplace(store.id(), std::move(s)).first->second;
}

int64_t ModelResidency::free_vram() const {
  const MemoryStats st = device_.stats();
  int64_t free = st.free;
  if (settings_.budget_bytes > 0) free = std::min(free, settings_.budget_bytes - st.allocated);
  return std::max<int64_t>(0, free);
}

namespace {
int64_t block_cost(const WeightStore& store, const WeightBlock& block, const ModelLoad& request) {
  int64_t compute_bytes = 0;
  for (const auto& [key, t] : block.host) {
    const at::ScalarType dt = at::isFloatingType(t.scalar_type()) ? store.device_dtype() : t.scalar_type();
    compute_bytes += static_cast<int64_t>(t.numel()) * static_cast<int64_t>(c10::elementSize(dt));
  }
  int64_t cost = compute_bytes;
  if (store.storage_dtype() != store.device_dtype()) cost += block.bytes;  // the copy before conversion
  if (request.patch && request.patch->affects(store, block.name)) cost += compute_bytes;  // the patched copy
  return cost;
}
}  // namespace

void ModelResidency::load_locked(StoreState& s, const ModelLoad& request) {
  const WeightStore& store = *s.store;
  streamer_.drop_prefetched();
  const std::set<std::string> forced(request.stream_blocks.begin(), request.stream_blocks.end());
  std::vector<BlockCost> costs;
  int64_t total = 0;
  for (const WeightBlock& b : store.blocks()) {
    costs.push_back({b.name, block_cost(store, b, request)});
    total += costs.back().bytes;
  }

  BlockPlan plan;
  const bool own_memory = device_.has_own_memory();
  if (!own_memory) {
    // The CPU computes on host memory: nothing to make room for, nothing to stream.
    if (!forced.empty()) log::debug("{}: block swap has no effect on {}", s.label, device_.name());
    plan = plan_blocks(costs, kNoWeightLimit);
  } else {
    // load_models_gpu (COMFY_COMPAT 2.2): room for the model and the activations, then the
    // weight budget from what is free.
    // Under --vram-budget the allocator cap is the limit: --reserve-vram keeps memory outside
    // it free, so it only counts where the cap leaves less than the reserve outside.
    const int64_t cap = settings_.budget_bytes;
    const int64_t reserved =
        cap > 0 && cap + settings_.extra_reserved <= device_.stats().total ? 0 : settings_.extra_reserved;
    const int64_t inference = kMinimumInferenceMemory + reserved;
    const int64_t extra_mem = std::max(inference, request.memory_required + reserved);
    int64_t minimum = request.minimum_memory_required > 0
                          ? std::max(inference, request.minimum_memory_required + reserved)
                          : extra_mem;
    // A partial load leaves room for the cond+uncond batch the guider will want (it batches
    // when 1.5 × the estimate is free): splitting it would stream every weight twice per step.
    if (settings_.state == VramState::kLowVram || cap > 0)
      minimum = std::max(minimum, request.memory_required * 3 / 2 + reserved);
    if (!s.offload_after_use) {
      bool unloaded = false;
      for (auto& [id, other] : stores_) {
        if (other.get() != &s && other->loaded && other->offload_after_use) {
          unload_locked(*other);
          unloaded = true;
        }
      }
      if (unloaded) device_.empty_cache();
    }
    const auto need = static_cast<int64_t>(static_cast<double>(total - s.resident_bytes) * 1.1) + extra_mem;
    free_memory_locked(need, &s);
    if (free_vram() < minimum) free_memory_locked(minimum, &s);
    int64_t budget = kNoWeightLimit;
    if (settings_.state == VramState::kNoVram) {
      budget = 0;
    } else if (settings_.state == VramState::kNormalVram || settings_.state == VramState::kLowVram) {
      budget = std::max<int64_t>(0, free_vram() + s.resident_bytes - minimum);
    }
    plan = plan_blocks(costs, budget, forced);
  }

  const bool was_loaded = s.loaded;
  const bool changed = !was_loaded || plan != s.plan;
  s.plan = plan;
  for (const BlockCost& c : costs) s.cost[c.name] = c.bytes;
  for (auto it = s.resident.begin(); it != s.resident.end();) {
    if (plan.streamed.count(it->first)) {
      s.resident_bytes -= it->second.bytes;
      it = s.resident.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = s.pinned.begin(); it != s.pinned.end();)
    it = plan.streamed.count(it->first) ? std::next(it) : s.pinned.erase(it);
  if (own_memory && settings_.pin_memory) {
    CopyStream& copies = streamer_.copies();
    for (const std::string& name : plan.streamed) {
      if (s.pinned.count(name)) continue;
      BlockTensors pinned;
      for (const auto& [key, t] : store.block(name).host) pinned.emplace(key, copies.pin(t));
      s.pinned.emplace(name, std::move(pinned));
    }
  }
  s.loaded = true;
  s.last_used = ++clock_;
  s.last_request = request;
  s.last_request.patch = nullptr;
  for (const WeightBlock& b : store.blocks()) {
    if (plan.streamed.count(b.name)) continue;
    const WeightPatch* p = request.patch && request.patch->affects(store, b.name) ? request.patch : nullptr;
    resident_copy(s, b.name, p);
  }
  if (!was_loaded) activity_.models_loaded.push_back(s.label);
  if (changed && own_memory) {
    if (plan.streamed.empty())
      log::info("loaded {} completely ({:.1f} MB)", s.label, static_cast<double>(s.resident_bytes) / kMiB);
    else
      log::info("loaded {} partially: {:.1f} MB resident, {} of {} blocks streamed (buffer {:.1f} MB)", s.label,
                static_cast<double>(s.resident_bytes) / kMiB, plan.streamed.size(), store.blocks().size(),
                static_cast<double>(plan.stream_buffer_bytes) / kMiB);
  }
}

void ModelResidency::free_memory_locked(int64_t bytes, const StoreState* keep) {
  if (!device_.has_own_memory()) return;
  std::vector<StoreState*> candidates;
  for (auto& [id, s] : stores_)
    if (s->loaded && s.get() != keep) candidates.push_back(s.get());
  std::sort(candidates.begin(), candidates.end(),
            [](const StoreState* a, const StoreState* b) { return a->last_used < b->last_used; });
  bool unloaded = false;
  for (StoreState* s : candidates) {
    if (settings_.smart_memory && free_vram() > bytes) break;
    unload_locked(*s);
    unloaded = true;
  }
  if (unloaded) device_.empty_cache();
}

void ModelResidency::unload_locked(StoreState& s) {
  if (!s.loaded) return;
  streamer_.drop_prefetched(s.store->id());
  s.resident.clear();
  s.resident_bytes = 0;
  s.pinned.clear();
  s.loaded = false;
  activity_.models_evicted.push_back(s.label);
  log::debug("unloaded {}", s.label);
}

std::shared_ptr<const BlockTensors> ModelResidency::resident_copy(StoreState& s, const std::string& block,
                                                                  const WeightPatch* patch) {
  const uint64_t want = patch ? patch->id() : 0;
  auto it = s.resident.find(block);
  if (it != s.resident.end() && it->second.patch_id == want) return it->second.tensors;
  // A patched block replaces the unpatched one (and the other way round): one version of a
  // model is resident at a time, as in ComfyUI, and host tensors are never written.
  if (it != s.resident.end()) {
    s.resident_bytes -= it->second.bytes;
    s.resident.erase(it);
  }
  const WeightStore& store = *s.store;
  const WeightBlock& b = store.block(block);
  BlockTensors tensors = streamer_.copies().copy_block(block, b.host, store.device_dtype(), CopyLane::kCompute);
  if (patch) patch->apply(store, block, tensors);
  StoreState::Copy c;
  c.patch_id = want;
  for (const auto& [key, t] : tensors) c.bytes += static_cast<int64_t>(t.numel() * t.element_size());
  c.tensors = std::make_shared<const BlockTensors>(std::move(tensors));
  if (device_.has_own_memory()) activity_.bytes_loaded += b.bytes;
  s.resident_bytes += c.bytes;
  return s.resident.emplace(block, std::move(c)).first->second.tensors;
}

std::optional<std::string> ModelResidency::next_streamed(const StoreState& s, const std::string& from) const {
  const auto& blocks = s.store->blocks();
  std::string cur = from;
  for (size_t step = 0; step < blocks.size(); ++step) {
    auto it = s.next.find(cur);
    if (it != s.next.end()) {
      cur = it->second;
    } else {
      cur = blocks[(s.index.at(cur) + 1) % blocks.size()].name;
    }
    if (cur == from) return std::nullopt;
    if (s.plan.streamed.count(cur)) return cur;
  }
  return std::nullopt;
}

BlockLease ModelResidency::acquire(const WeightStore& store, const std::string& block, const WeightPatch* patch) {
  std::shared_ptr<const BlockTensors> tensors;
  {
    std::lock_guard<std::mutex> lock(mu_);
    StoreState& s = state_for(store);
    if (!s.index.count(block)) store.block(block);  // throws Error(kModel) naming the block
    if (!s.loaded) {
      ModelLoad request = s.last_request;
      request.store = &store;
      request.patch = patch;
      load_locked(s, request);
    }
    s.last_used = ++clock_;
    if (!s.last_block.empty() && s.last_block != block) s.next[s.last_block] = block;
    s.last_block = block;
    const auto affecting = [&](const std::string& name) {
      return patch && patch->affects(store, name) ? patch : nullptr;
    };
    if (!s.plan.streamed.count(block)) {
      tensors = resident_copy(s, block, affecting(block));
    } else {
      const auto host_of = [&](const std::string& name) -> const BlockTensors* {
        auto it = s.pinned.find(name);
        return it != s.pinned.end() ? &it->second : &store.block(name).host;
      };
      StreamRequest now{&store, block, host_of(block), affecting(block)};
      // The predicted streamed blocks after this one, as far as the lookahead reaches.
      std::vector<std::pair<StreamRequest, int64_t>> upcoming;
      int64_t ahead = 0;
      std::string from = block;
      while (upcoming.size() < s.plan.streamed.size() && ahead <= s.plan.lookahead_bytes) {
        auto name = next_streamed(s, from);
        if (!name || *name == block) break;
        const int64_t bytes = s.cost.at(*name);
        upcoming.emplace_back(StreamRequest{&store, *name, host_of(*name), affecting(*name)}, bytes);
        ahead += bytes;
        from = *name;
      }
      tensors = streamer_.take(now, upcoming, s.plan.lookahead_bytes);
    }
  }
  return BlockLease(std::move(tensors), block);
}

void ModelResidency::load(const ModelLoad& request) {
  std::lock_guard<std::mutex> lock(mu_);
  load_locked(state_for(*request.store), request);
}

void ModelResidency::set_offload_after_use(const WeightStore& store) {
  std::lock_guard<std::mutex> lock(mu_);
  state_for(store).offload_after_use = true;
}

void ModelResidency::set_streamed(const WeightStore& store, std::vector<std::string> blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  StoreState& s = state_for(store);
  ModelLoad request = s.last_request;
  request.store = &store;
  request.stream_blocks = std::move(blocks);
  load_locked(s, request);
}

void ModelResidency::free_memory(int64_t bytes, const WeightStore* keep) {
  std::lock_guard<std::mutex> lock(mu_);
  streamer_.drop_prefetched();
  const StoreState* k = nullptr;
  if (keep) {
    auto it = stores_.find(keep->id());
    if (it != stores_.end()) k = it->second.get();
  }
  free_memory_locked(bytes, k);
}

void ModelResidency::unload_except(const std::vector<const WeightStore*>& keep) {
  std::lock_guard<std::mutex> lock(mu_);
  streamer_.drop_prefetched();
  bool unloaded = false;
  for (auto& [id, s] : stores_) {
    const bool kept = std::any_of(keep.begin(), keep.end(), [&](const WeightStore* k) { return k && k->id() == id; });
    if (!kept && s->loaded) {
      unload_locked(*s);
      unloaded = true;
    }
  }
  if (unloaded) device_.empty_cache();
}

void ModelResidency::evict(const WeightStore& store) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stores_.find(store.id());
  if (it == stores_.end()) return;
  unload_locked(*it->second);
  stores_.erase(it);
}

void ModelResidency::evict_all() { unload_except({}); }

int64_t ModelResidency::resident_bytes(const WeightStore& store) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stores_.find(store.id());
  return it == stores_.end() ? 0 : it->second->resident_bytes;
}

int64_t ModelResidency::resident_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t sum = 0;
  for (const auto& [id, s] : stores_) sum += s->resident_bytes;
  return sum;
}

std::optional<BlockPlan> ModelResidency::plan(const WeightStore& store) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stores_.find(store.id());
  if (it == stores_.end() || !it->second->loaded) return std::nullopt;
  return it->second->plan;
}

std::vector<LoadedModelInfo> ModelResidency::loaded_models() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<uint64_t, LoadedModelInfo>> out;
  for (const auto& [id, s] : stores_)
    if (s->loaded) out.push_back({s->last_used, {s->label, s->resident_bytes, s->plan}});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<LoadedModelInfo> models;
  for (auto& [t, info] : out) models.push_back(std::move(info));
  return models;
}

void ModelResidency::drop_prefetched() {
  std::lock_guard<std::mutex> lock(mu_);
  streamer_.drop_prefetched();
}

MemoryActivity ModelResidency::take_activity() {
  std::lock_guard<std::mutex> lock(mu_);
  MemoryActivity a = std::exchange(activity_, {});
  a.bytes_streamed = streamer_.take_bytes_streamed();
  return a;
}

}  // namespace sdflow
