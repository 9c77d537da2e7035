// The memory manager's residency policy on a fake device (tests/unit/fake_device.h): block
// plans, LRU unloading against ComfyUI's free-memory figure, smart memory, streaming with
// prefetch (order of copies, waits and releases; live bytes within the plan) and weight
// patches on device copies.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "memory/block_plan.h"
#include "memory/memory_manager.h"
#include "unit/fake_device.h"

namespace sdflow {
namespace {

using testing::FakeDevice;
using testing::FakeDeviceState;

constexpr int64_t kMiB = int64_t{1} << 20;

// A store of float blocks "b0", "b1", ... of the given sizes in MiB (fractions allowed).
std::unique_ptr<WeightStore> make_store(const std::string& name, const std::vector<double>& mib) {
  auto store = std::make_unique<WeightStore>(name, at::kFloat, at::kFloat);
  for (size_t i = 0; i < mib.size(); ++i) {
    const auto n = static_cast<int64_t>(mib[i] * static_cast<double>(kMiB) / 4);
    store->add_block("b" + std::to_string(i), {{"w", at::arange(n, at::kFloat) + static_cast<double>(i)}});
  }
  return store;
}

MemoryOptions no_reserve() {
  MemoryOptions o;
  o.reserve_vram_gb = 0.0;  // free figures in these tests are the fake's exactly
  return o;
}

struct Fixture {
  explicit Fixture(int64_t room_for_weights, MemoryOptions o = no_reserve())
      : device(new FakeDevice(kMinimumInferenceMemory + room_for_weights)),
        state(device->state()),
        mm(o, std::unique_ptr<ComputeDevice>(device)) {}
  FakeDevice* device;
  std::shared_ptr<FakeDeviceState> state;
  MemoryManager mm;
};

size_t index_of(const std::vector<std::string>& log, const std::string& entry, size_t from = 0) {
  for (size_t i = from; i < log.size(); ++i)
    if (log[i] == entry) return i;
  ADD_FAILURE() << "log has no '" << entry << "' after position " << from;
  return log.size();
}

// A model pass: acquire each block in order, read it, drop the lease.
void run_pass(Residency& r, const WeightStore& store, const WeightPatch* patch = nullptr) {
  for (const WeightBlock& b : store.blocks()) {
    BlockLease lease = r.acquire(store, b.name, patch);
    EXPECT_EQ(lease.at("w").numel(), b.host.at("w").numel());
  }
}

TEST(BlockPlan, StreamsOnlyWhatDoesNotFitAndNeverExceedsTheBudget) {
  std::vector<BlockCost> blocks = {{"a", 10}, {"b", 40}, {"c", 20}, {"d", 30}};
  BlockPlan all = plan_blocks(blocks, kNoWeightLimit);
  EXPECT_TRUE(all.streamed.empty());
  EXPECT_EQ(all.resident_bytes, 100);
  EXPECT_EQ(all.stream_buffer_bytes, 0);
  EXPECT_EQ(plan_blocks(blocks, 100).streamed.size(), 0u);  // exactly fits: no buffer needed
  // Nothing fits: everything streams; the lookahead shrinks to one block within a tiny budget,
  // and the buffer is two blocks in use plus the lookahead.
  BlockPlan none = plan_blocks(blocks, 0);
  EXPECT_EQ(none.streamed.size(), 4u);
  EXPECT_EQ(none.resident_bytes, 0);
  EXPECT_EQ(none.lookahead_bytes, 40);
  EXPECT_EQ(none.stream_buffer_bytes, 120);
  // Forced blocks stream whatever the room, with the full lookahead.
  BlockPlan forced = plan_blocks(blocks, kNoWeightLimit, {"a", "c"});
  EXPECT_EQ(forced.streamed, (std::set<std::string>{"a", "c"}));
  EXPECT_EQ(forced.resident_bytes, 70);
  EXPECT_EQ(forced.lookahead_bytes, kMaxLookaheadBytes);
  EXPECT_EQ(forced.stream_buffer_bytes, 40 + kMaxLookaheadBytes);

  // Any budget of at least three blocks is respected, whatever the sizes.
  std::mt19937 rng(3);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<BlockCost> bs;
    const int n = 2 + static_cast<int>(rng() % 12);
    int64_t largest = 0, total = 0;
    for (int i = 0; i < n; ++i) {
      bs.push_back({"x" + std::to_string(i), 1 + static_cast<int64_t>(rng() % 100)});
      largest = std::max(largest, bs.back().bytes);
      total += bs.back().bytes;
    }
    const int64_t budget = 3 * largest + static_cast<int64_t>(rng() % static_cast<uint64_t>(total + 1));
    const BlockPlan p = plan_blocks(bs, budget);
    EXPECT_LE(p.peak_bytes(), budget) << "trial " << trial;
    EXPECT_GE(p.lookahead_bytes, p.streamed.empty() ? 0 : largest) << "trial " << trial;
    int64_t resident = 0;
    for (const auto& b : bs)
      if (!p.streamed.count(b.name)) resident += b.bytes;
    EXPECT_EQ(resident, p.resident_bytes);
    // Nothing that would still fit beside the buffer is left streaming.
    for (const auto& b : bs)
      if (p.streamed.count(b.name)) EXPECT_GT(p.peak_bytes() + b.bytes, budget) << "trial " << trial;
  }
}

TEST(BlockPlan, StreamedBlocksAreSpreadOverTheExecutionOrder) {
  // 24 equal blocks (like a UNet stage's transformer blocks), half of which must stream: they
  // alternate with resident ones instead of forming one run at the end, so each copy has a
  // resident block's compute to hide behind.
  std::vector<BlockCost> blocks;
  for (int i = 0; i < 24; ++i) blocks.push_back({"t" + std::to_string(100 + i), 10});
  const int64_t buffer = 2 * 10 + 20;  // two in use + the lookahead (two blocks) at this budget
  const BlockPlan p = plan_blocks(blocks, 120 + buffer);
  EXPECT_EQ(p.lookahead_bytes, 20);
  EXPECT_EQ(p.resident_bytes, 120);
  ASSERT_EQ(p.streamed.size(), 12u);
  int run = 0, longest = 0;
  for (const BlockCost& b : blocks) {
    run = p.streamed.count(b.name) ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  EXPECT_LE(longest, 1);
}

TEST(ModelResidency, UnloadsLeastRecentlyUsedWhenRoomIsNeeded) {
  Fixture f(5 * kMiB / 2);  // room for two 1 MiB models (plus ComfyUI's 10 % margin), not three
  auto a = make_store("a", {1.0}), b = make_store("b", {1.0}), c = make_store("c", {1.0});
  f.mm.load_model({a.get()});
  f.mm.load_model({b.get()});
  f.mm.residency().acquire(*a, "b0");  // a is now the most recently used
  f.mm.take_activity();
  f.mm.load_model({c.get()});
  const MemoryActivity act = f.mm.take_activity();
  EXPECT_EQ(act.models_evicted, std::vector<std::string>{"b"});
  EXPECT_EQ(act.models_loaded, std::vector<std::string>{"c"});
  EXPECT_EQ(act.bytes_loaded, kMiB);
  const auto loaded = f.mm.loaded_models();
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0].label, "c");  // most recent first
  EXPECT_EQ(loaded[1].label, "a");
  EXPECT_EQ(f.mm.model_residency().resident_bytes(*b), 0);
  EXPECT_EQ(f.state->live, 2 * kMiB);  // b's device copy is gone
  EXPECT_GE(f.state->empty_cache_calls, 1);
  // A model used again after eviction loads again on first use.
  f.mm.residency().acquire(*b, "b0");
  EXPECT_EQ(f.mm.take_activity().models_loaded, std::vector<std::string>{"b"});
}

TEST(ModelResidency, SmartMemoryKeepsModelsLoadedAcrossRuns) {
  Fixture f(64 * kMiB);
  auto a = make_store("a", {1.0, 2.0}), b = make_store("b", {1.0});
  f.mm.begin_node();
  run_pass(f.mm.residency(), *a);  // first run: loads on first use
  EXPECT_EQ(f.mm.take_activity().models_loaded, std::vector<std::string>{"a"});
  const int copies = f.state->copies;
  f.mm.load_model({a.get()});  // second run: nothing to do
  run_pass(f.mm.residency(), *a);
  f.mm.load_model({b.get()});
  const MemoryActivity act = f.mm.take_activity();
  EXPECT_EQ(act.models_loaded, std::vector<std::string>{"b"});
  EXPECT_TRUE(act.models_evicted.empty());
  EXPECT_EQ(f.state->copies, copies + 1);  // only b's block
  f.mm.unload_idle_models({b.get()});
  EXPECT_EQ(f.mm.take_activity().models_evicted, std::vector<std::string>{"a"});
}

TEST(ModelResidency, DisabledSmartMemoryUnloadsEveryOtherModel) {
  MemoryOptions o = no_reserve();
  o.disable_smart_memory = true;
  Fixture f(64 * kMiB, o);
  auto a = make_store("a", {1.0}), b = make_store("b", {1.0});
  f.mm.load_model({a.get()});
  f.mm.load_model({b.get()});  // plenty of room, but ComfyUI unloads all others anyway
  EXPECT_EQ(f.mm.take_activity().models_evicted, std::vector<std::string>{"a"});
  f.mm.unload_all();
  EXPECT_EQ(f.state->live, 0);
}

TEST(ModelResidency, VramBudgetCapsTheFreeFigure) {
  MemoryOptions o = no_reserve();
  o.vram_budget_gb = 1.0;
  Fixture f(64 * kMiB * 1024, o);  // a huge device, a 1 GiB budget
  EXPECT_EQ(f.state->limit, int64_t{1} << 30);
  EXPECT_EQ(f.mm.free_vram(), int64_t{1} << 30);
  // 1 GiB − 0.8 GiB for inference leaves ~205 MiB for weights: a 300 MiB model streams.
  auto big = make_store("big", {60, 60, 60, 60, 60});
  f.mm.load_model({big.get()});
  auto plan = f.mm.plan_of(*big);
  ASSERT_TRUE(plan);
  EXPECT_FALSE(plan->streamed.empty());
  EXPECT_LE(plan->peak_bytes(), (int64_t{1} << 30) - kMinimumInferenceMemory);
}

TEST(ModelResidency, NoVramStreamsEveryBlockAheadWithinTheBuffer) {
  MemoryOptions o = no_reserve();
  o.vram = VramMode::kNoVram;
  Fixture f(64 * kMiB, o);
  EXPECT_EQ(f.mm.vram_state(), VramState::kNoVram);
  auto s = make_store("m", {1.0, 0.5, 2.0, 0.25, 1.5, 1.0});
  f.mm.load_model({s.get()});
  const BlockPlan plan = *f.mm.plan_of(*s);
  ASSERT_EQ(plan.streamed.size(), 6u);
  EXPECT_EQ(plan.lookahead_bytes, 2 * kMiB);  // one block: the budget for weights is 0
  EXPECT_EQ(f.state->live, 0);  // nothing resident
  f.state->reset_log();
  for (int pass = 0; pass < 2; ++pass) run_pass(f.mm.residency(), *s);
  const auto& log = f.state->log;
  EXPECT_LE(f.state->peak, plan.peak_bytes());
  for (const std::string& e : log)
    if (e.rfind("copy:", 0) == 0) EXPECT_EQ(e.substr(e.size() - 5), ":copy") << e;
  // Every block of the first pass: its copy was ready before compute waited for it, and the
  // next block's copy was enqueued before this one's release (it overlaps this compute).
  for (int k = 0; k + 1 < 6; ++k) {
    const std::string bk = "b" + std::to_string(k), bn = "b" + std::to_string(k + 1);
    const size_t wait_k = index_of(log, "wait_compute:" + bk);
    const size_t done_k = index_of(log, "done:" + bk);
    EXPECT_LT(index_of(log, "ready:" + bk), wait_k);
    EXPECT_LT(wait_k, done_k);
    EXPECT_LT(index_of(log, "copy:" + bn + ":copy"), done_k) << bn << " not prefetched";
  }
  // A copy enqueued after a release first waits for the latest one: its buffer may be reused.
  std::string last_done;
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].rfind("done:", 0) == 0) last_done = log[i].substr(5);
    if (log[i].rfind("copy:", 0) == 0 && !last_done.empty()) {
      ASSERT_GT(i, 0u);
      EXPECT_EQ(log[i - 1], "wait_copy:" + last_done) << "copy at " << i;
    }
  }
  // Two passes' copies, plus what was prefetched for a third pass: at most the lookahead and a
  // block (one block is always prefetched).
  const int64_t ahead_bytes = f.mm.model_residency().streamed_live_bytes();
  EXPECT_GT(ahead_bytes, 0);
  EXPECT_LE(ahead_bytes, plan.lookahead_bytes + 2 * kMiB);
  f.mm.end_node();  // drops the blocks prefetched for a pass that does not come
  EXPECT_EQ(f.state->live, 0);
  EXPECT_EQ(f.mm.take_activity().bytes_streamed, s->total_bytes() * 2 + ahead_bytes);
}

TEST(ModelResidency, LookaheadLetsCopiesRunSeveralBlocksAhead) {
  Fixture f(8 * kMiB);
  auto s = make_store("m", {0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25});
  ModelLoad load{s.get()};
  load.stream_blocks = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"};
  f.mm.load_model(load);
  const BlockPlan plan = *f.mm.plan_of(*s);
  EXPECT_EQ(plan.lookahead_bytes, kMiB);  // an eighth of the 8 MiB budget: four blocks
  f.state->reset_log();
  { BlockLease b0 = f.mm.residency().acquire(*s, "b0"); }
  // Acquiring b0 enqueued b1..b4 ahead of its release, and no further.
  const auto& log = f.state->log;
  for (const char* b : {"copy:b1:copy", "copy:b2:copy", "copy:b3:copy", "copy:b4:copy"})
    EXPECT_LT(index_of(log, b), index_of(log, "done:b0")) << b;
  EXPECT_EQ(std::count(log.begin(), log.end(), "copy:b5:copy"), 0);
  // The next acquire uses the prefetched copy and tops the lookahead up by one block.
  f.state->reset_log();
  { BlockLease b1 = f.mm.residency().acquire(*s, "b1"); }
  EXPECT_EQ(std::count(log.begin(), log.end(), "copy:b1:copy"), 0);
  EXPECT_EQ(std::count(log.begin(), log.end(), "copy:b5:copy"), 1);
  EXPECT_EQ(std::count(log.begin(), log.end(), "copy:b6:copy"), 0);
  f.mm.end_node();
}

TEST(ModelResidency, PartialLoadStreamsWhatDoesNotFitAndStaysWithinTheBudget) {
  Fixture f(8 * kMiB);
  auto s = make_store("m", {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5});  // 10.5 MiB
  f.mm.load_model({s.get()});
  const BlockPlan plan = *f.mm.plan_of(*s);
  EXPECT_FALSE(plan.streamed.empty());
  EXPECT_GT(plan.resident_bytes, 0);
  EXPECT_LE(plan.peak_bytes(), 8 * kMiB);
  EXPECT_EQ(f.mm.model_residency().resident_bytes(*s), plan.resident_bytes);
  f.state->reset_log();
  for (int pass = 0; pass < 3; ++pass) run_pass(f.mm.residency(), *s);
  EXPECT_LE(f.state->peak, plan.peak_bytes());
  // Resident blocks were copied once, at load: the passes copy only streamed ones (and what
  // the lookahead prefetched for a fourth pass).
  const int streamed_copies = static_cast<int>(plan.streamed.size()) * 3;
  EXPECT_GE(f.state->copies, streamed_copies + 1);
  EXPECT_LE(f.state->copies, streamed_copies + 1 + static_cast<int>(plan.lookahead_bytes / kMiB));
}

TEST(ModelResidency, ForcedBlocksStreamEvenWithRoom) {
  Fixture f(1024 * kMiB);
  auto s = make_store("m", {1.0, 1.0, 1.0, 1.0});
  ModelLoad load{s.get()};
  load.stream_blocks = {"b2", "b3"};
  f.mm.load_model(load);
  EXPECT_EQ(f.mm.plan_of(*s)->streamed, (std::set<std::string>{"b2", "b3"}));
  EXPECT_EQ(f.state->live, 2 * kMiB);
  f.mm.set_streamed_blocks(*s, {});  // swap off again: the blocks load
  EXPECT_TRUE(f.mm.plan_of(*s)->streamed.empty());
  EXPECT_EQ(f.state->live, 4 * kMiB);
}

// Adds `delta` to every weight of the blocks it names.
class AddPatch final : public WeightPatch {
 public:
  AddPatch(uint64_t id, double delta, std::set<std::string> blocks) : id_(id), delta_(delta), blocks_(std::move(blocks)) {}
  uint64_t id() const override { return id_; }
  bool affects(const WeightStore&, const std::string& block) const override { return blocks_.count(block) > 0; }
  void apply(const WeightStore&, const std::string&, std::map<std::string, at::Tensor>& tensors) const override {
    for (auto& [key, t] : tensors) t = t + delta_;
  }

 private:
  uint64_t id_;
  double delta_;
  std::set<std::string> blocks_;
};

TEST(ModelResidency, PatchesChangeDeviceCopiesOnlyAndAreKeyedById) {
  Fixture f(1024 * kMiB);
  auto s = make_store("m", {0.25, 0.25, 0.25});
  ModelLoad load{s.get()};
  load.stream_blocks = {"b2"};
  f.mm.load_model(load);
  const at::Tensor host0 = s->block("b0").host.at("w").clone(), host2 = s->block("b2").host.at("w").clone();
  AddPatch one(101, 1.0, {"b0", "b2"}), two(102, 2.0, {"b0", "b2"});
  Residency& r = f.mm.residency();
  auto value = [&](const std::string& block, const WeightPatch* p) {
    return r.acquire(*s, block, p).at("w")[5].item<float>();
  };
  EXPECT_EQ(value("b0", &one), host0[5].item<float>() + 1);  // resident, patched
  EXPECT_EQ(value("b2", &one), host2[5].item<float>() + 1);  // streamed, patched on the copy
  EXPECT_EQ(value("b0", &two), host0[5].item<float>() + 2);  // another id: not the cached copy
  EXPECT_EQ(value("b2", &two), host2[5].item<float>() + 2);
  EXPECT_EQ(value("b1", &two), s->block("b1").host.at("w")[5].item<float>());  // unaffected
  EXPECT_EQ(value("b0", nullptr), host0[5].item<float>());  // unpatched again
  EXPECT_EQ(value("b2", nullptr), host2[5].item<float>());
  EXPECT_TRUE(at::equal(s->block("b0").host.at("w"), host0));  // host never written
  EXPECT_TRUE(at::equal(s->block("b2").host.at("w"), host2));
}

// Adds `delta` to every weight into a new buffer of the fake device, as LoRA allocates its
// merged weights on the GPU.
class DeviceAddPatch final : public WeightPatch {
 public:
  DeviceAddPatch(uint64_t id, double delta, std::set<std::string> blocks,
                 std::shared_ptr<FakeDeviceState> device)
      : id_(id), delta_(delta), blocks_(std::move(blocks)), device_(std::move(device)) {}
  uint64_t id() const override { return id_; }
  bool affects(const WeightStore&, const std::string& block) const override {
    return blocks_.count(block) > 0;
  }
  void apply(const WeightStore&, const std::string&,
             std::map<std::string, at::Tensor>& tensors) const override {
    for (auto& [key, t] : tensors) t = testing::fake_device_tensor(device_, t + delta_);
  }

 private:
  uint64_t id_;
  double delta_;
  std::set<std::string> blocks_;
  std::shared_ptr<FakeDeviceState> device_;
};

// One version of each block on the device, whatever the policy: a patched acquire replaces the
// unpatched copy (ComfyUI keeps only the patched weights on the GPU), another patch id rebuilds
// the block from the host (not from the patched copy), no patch re-makes the unpatched copy, and
// resident_bytes() is what the device holds.
void expect_one_version_resident(Residency& r, const std::shared_ptr<FakeDeviceState>& dev,
                                 const WeightStore& s) {
  const int64_t all = s.total_bytes();
  const at::Tensor host0 = s.block("b0").host.at("w").clone();
  const float h0 = host0[5].item<float>(), h1 = s.block("b1").host.at("w")[5].item<float>();
  DeviceAddPatch one(201, 1.0, {"b0"}, dev), two(202, 2.0, {"b0"}, dev);
  auto value = [&](const std::string& block, const WeightPatch* p) {
    return r.acquire(s, block, p).at("w")[5].item<float>();
  };
  run_pass(r, s);
  EXPECT_EQ(dev->live, all);
  EXPECT_EQ(r.resident_bytes(s), all);
  const int copies = dev->copies;

  EXPECT_EQ(value("b0", &one), h0 + 1);
  EXPECT_EQ(dev->copies, copies + 1);  // from the host
  EXPECT_EQ(dev->live, all);           // the unpatched copy of b0 is gone
  EXPECT_EQ(r.resident_bytes(s), all);
  EXPECT_EQ(value("b0", &one), h0 + 1);
  EXPECT_EQ(value("b1", &one), h1);    // unaffected: its unpatched copy serves
  EXPECT_EQ(dev->copies, copies + 1);  // both lookups

  EXPECT_EQ(value("b0", &two), h0 + 2);  // a strength change: rebuilt, not patched on top
  EXPECT_EQ(dev->copies, copies + 2);
  EXPECT_EQ(dev->live, all);
  EXPECT_EQ(r.resident_bytes(s), all);

  EXPECT_EQ(value("b0", nullptr), h0);  // the patch removed: the unpatched copy is re-made
  EXPECT_EQ(dev->copies, copies + 3);
  EXPECT_EQ(dev->live, all);
  EXPECT_EQ(r.resident_bytes(s), all);
  EXPECT_TRUE(at::equal(s.block("b0").host.at("w"), host0));

  r.evict(s);
  EXPECT_EQ(dev->live, 0);
  EXPECT_EQ(r.resident_bytes(s), 0);
}

TEST(ModelResidency, PatchedBlocksReplaceTheirUnpatchedCopies) {
  Fixture f(1024 * kMiB);
  auto s = make_store("m", {0.25, 0.25});
  expect_one_version_resident(f.mm.residency(), f.state, *s);
}

TEST(AllResident, PatchedBlocksReplaceTheirUnpatchedCopies) {
  FakeDevice device(1024 * kMiB);
  auto r = make_all_resident(device);
  auto s = make_store("m", {0.25, 0.25});
  expect_one_version_resident(*r, device.state(), *s);
}

TEST(AllResident, CpuCopiesAliasTheHostAndPatchesNeverWriteIt) {
  auto cpu = make_cpu_device();
  auto r = make_all_resident(*cpu);
  auto s = make_store("m", {0.25});
  const at::Tensor& host = s->block("b0").host.at("w");
  const at::Tensor before = host.clone();
  AddPatch one(101, 1.0, {"b0"});
  EXPECT_EQ(r->acquire(*s, "b0").at("w").data_ptr(), host.data_ptr());  // zero-copy
  {
    BlockLease patched = r->acquire(*s, "b0", &one);
    EXPECT_NE(patched.at("w").data_ptr(), host.data_ptr());
    EXPECT_TRUE(at::equal(patched.at("w"), before + 1));
  }
  EXPECT_TRUE(at::equal(host, before));
  EXPECT_EQ(r->resident_bytes(*s), s->block("b0").bytes);
  EXPECT_EQ(r->acquire(*s, "b0").at("w").data_ptr(), host.data_ptr());

  // The count is at the compute dtype, which is what the device holds.
  WeightStore half("h", at::kHalf, at::kFloat);
  half.add_block("b", {{"w", at::ones({4, 4})}});
  r->acquire(half, "b");
  EXPECT_EQ(r->resident_bytes(half), 16 * 4);
  EXPECT_EQ(r->resident_bytes(), s->block("b0").bytes + 16 * 4);
}

TEST(ModelResidency, CpuDeviceComputesOnHostTensors) {
  MemoryOptions o;
  o.vram = VramMode::kCpu;
  MemoryManager mm(o);
  auto s = make_store("m", {0.25});
  BlockLease lease = mm.residency().acquire(*s, "b0");
  EXPECT_EQ(lease.at("w").data_ptr(), s->block("b0").host.at("w").data_ptr());  // zero-copy
  MemoryActivity a = mm.take_activity();
  EXPECT_EQ(a.models_loaded, std::vector<std::string>{"m"});
  EXPECT_EQ(a.bytes_loaded, 0);
}

}  // namespace
}  // namespace sdflow
