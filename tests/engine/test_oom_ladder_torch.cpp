// The OOM ladder (src/engine/oom_ladder.h) driven by the real executor: stub nodes throw the
// errors libtorch throws for a CUDA out-of-memory a set number of times, on a fake GPU that
// counts cache flushes. Each rung, the order, the skips and the final message are checked.
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include "core/torch_compat.h"
#include "engine/oom_ladder.h"
#include "exec/executor.h"
#include "fake_gpu.h"
#include "graph/stub_nodes.h"
#include "memory/memory_manager.h"

namespace sdflow {
namespace {

using test::link;
using test::node;
using test::num;
using test::workflow;

c10::OutOfMemoryError cuda_oom() {
  return c10::OutOfMemoryError(
      {__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
      "CUDA out of memory. Tried to allocate 1.00 GiB (GPU 0; 4.00 GiB total capacity)");
}

// libtorch builds and code paths that report the failure as a plain c10::Error.
c10::Error plain_oom(const std::string& message) {
  return c10::Error({__func__, __FILE__, static_cast<uint32_t>(__LINE__)}, message);
}

TEST(OomDetection, RecognisesEveryWayLibtorchSaysCudaOutOfMemory) {
  EXPECT_TRUE(compat::is_cuda_out_of_memory(cuda_oom()));
  EXPECT_TRUE(compat::is_cuda_out_of_memory(plain_oom("CUDA out of memory. Tried to allocate 20.00 MiB")));
  EXPECT_TRUE(compat::is_cuda_out_of_memory(plain_oom("CUDA error: out of memory\nCUDA kernel errors ...")));
  EXPECT_TRUE(
      compat::is_cuda_out_of_memory(plain_oom("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling ...")));
  EXPECT_FALSE(compat::is_cuda_out_of_memory(plain_oom("DefaultCPUAllocator: can't allocate memory")));
  EXPECT_FALSE(compat::is_cuda_out_of_memory(plain_oom("shape mismatch")));
  // Only libtorch's own errors count: a message alone proves nothing.
  EXPECT_FALSE(compat::is_cuda_out_of_memory(std::runtime_error("CUDA out of memory")));

  MemoryOptions o;
  MemoryManager mm(o, std::make_unique<test::FakeGpu>(std::make_shared<test::FakeGpuState>()));
  OomLadder ladder(mm);
  EXPECT_TRUE(ladder.recoverable(cuda_oom()));
  EXPECT_TRUE(ladder.recoverable(Error(ErrorKind::kOutOfMemory, "budget")));
  EXPECT_FALSE(ladder.recoverable(Error(ErrorKind::kCancelled, "stop")));
  EXPECT_FALSE(ladder.recoverable(std::bad_alloc()));  // host memory: freeing VRAM cannot help
}

class OomLadderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state->stats.device = "cuda:0";
    registry = test::make_registry(&rec);
    for (const char* cls : {"KSampler", "VAEDecode"}) {
      test::add_lambda(registry, &rec, SchemaBuilder(cls).socket("x", "NUMBER").output("NUMBER").build(),
                       [this](NodeContext&, const NodeInputs& in) -> ValueList {
                         if (consults) levels.push_back(memory->low_memory_level());
                         if (failures_left != 0) {
                           if (failures_left > 0) --failures_left;
                           if (plain_message) throw plain_oom("CUDA error: out of memory");
                           throw cuda_oom();
                         }
                         return {in.at("x")};
                       });
    }
  }

  void make_memory(MemoryOptions o = {}) {
    // Room for ModelResidency to keep a small model resident.
    if (state->stats.total == 0) state->stats.total = state->stats.free = int64_t{8} << 30;
    memory = std::make_unique<MemoryManager>(o, std::make_unique<test::FakeGpu>(state));
    ladder = std::make_unique<OomLadder>(*memory);
  }

  // A model resident on the fake device, so "unload idle models" has something to do.
  void load_a_model() {
    store = std::make_shared<WeightStore>("unet", at::kFloat, at::kFloat);
    store->add_block("input_blocks.0", {{"w", at::ones({256})}});
    memory->residency().acquire(*store, "input_blocks.0");
    ASSERT_EQ(memory->residency().resident_bytes(), 1024);
  }

  RunSummary run(const std::string& cls) {
    RunContext ctx;
    ctx.recovery = ladder.get();
    return Executor(registry).run(
        workflow({node("1", "Const", {{"value", 5}}), node("2", cls, {{"x", link("1")}}),
                  node("3", "Sink", {{"x", link("2")}})}),
        ctx);
  }

  std::string run_error(const std::string& cls) {
    try {
      run(cls);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
      return e.what();
    }
    ADD_FAILURE() << "the run did not fail";
    return "";
  }

  std::shared_ptr<test::FakeGpuState> state = std::make_shared<test::FakeGpuState>();
  test::Recorder rec;
  NodeRegistry registry;
  std::unique_ptr<MemoryManager> memory;
  std::unique_ptr<OomLadder> ladder;
  std::shared_ptr<WeightStore> store;
  int failures_left = 0;
  bool consults = false;
  bool plain_message = false;
  std::vector<int> levels;
};

TEST_F(OomLadderTest, FirstRungFreesTheAllocatorCache) {
  make_memory();
  failures_left = 1;
  EXPECT_EQ(num(run("KSampler").outputs.at("3").at(0)), 5);
  EXPECT_EQ(state->empty_cache_calls, 1);
  EXPECT_EQ(rec.runs["2"], 2);
  EXPECT_EQ(ladder->rungs_taken(), (std::vector<std::string>{"empty_cache"}));
}

TEST_F(OomLadderTest, TheOlderPlainErrorMessageClimbsTheSameLadder) {
  make_memory();
  failures_left = 1;
  plain_message = true;
  EXPECT_EQ(num(run("KSampler").outputs.at("3").at(0)), 5);
  EXPECT_EQ(ladder->rungs_taken(), (std::vector<std::string>{"empty_cache"}));
}

TEST_F(OomLadderTest, SecondRungUnloadsIdleModels) {
  make_memory();
  load_a_model();
  failures_left = 2;
  EXPECT_EQ(num(run("KSampler").outputs.at("3").at(0)), 5);
  EXPECT_EQ(ladder->rungs_taken(), (std::vector<std::string>{"empty_cache", "unload_models"}));
  EXPECT_EQ(memory->residency().resident_bytes(), 0);
  // unload_all returns the freed blocks too (ModelResidency empties the cache on unload as well)
  EXPECT_GE(state->empty_cache_calls, 2);
  const MemoryActivity a = memory->take_activity();
  EXPECT_EQ(a.models_loaded, (std::vector<std::string>{"unet"}));
  EXPECT_EQ(a.models_evicted, (std::vector<std::string>{"unet"}));
}

TEST_F(OomLadderTest, ThirdRungSwitchesToLowMemoryModeForTheNodeOnly) {
  make_memory();
  load_a_model();
  failures_left = 3;
  consults = true;
  EXPECT_EQ(num(run("VAEDecode").outputs.at("3").at(0)), 5);
  EXPECT_EQ(levels, (std::vector<int>{0, 0, 0, 1}));
  EXPECT_EQ(ladder->rungs_taken(),
            (std::vector<std::string>{"empty_cache", "unload_models", "low_memory_1"}));
  EXPECT_EQ(memory->low_memory_level(), 0);  // back to normal once the node finished
}

TEST_F(OomLadderTest, AlwaysFailingNodeClimbsEveryRungThenNamesTheFlagsThatHelp) {
  MemoryOptions o;
  o.vram_budget_gb = 4;
  make_memory(o);
  load_a_model();
  failures_left = -1;
  consults = true;
  const std::string msg = run_error("VAEDecode");
  EXPECT_EQ(levels, (std::vector<int>{0, 0, 0, 1, 2}));
  EXPECT_EQ(rec.runs["2"], 5);
  EXPECT_EQ(
      msg,
      "[VAEDecode #2] out of memory on fake-gpu (--vram-budget 4.00 GiB) after trying empty_cache, "
      "unload_models, low_memory_1, low_memory_2: CUDA out of memory. Tried to allocate 1.00 GiB (GPU 0; "
      "4.00 GiB total capacity). Try --lowvram, --novram, --cpu-vae, VAEDecodeTiled with a smaller "
      "tile_size, a larger --vram-budget or a smaller batch or image size");
  EXPECT_EQ(memory->low_memory_level(), 0);
}

TEST_F(OomLadderTest, RungsThatCannotHelpAreSkipped) {
  // No model resident and a node with no low-memory path: only the cache flush is worth a try.
  MemoryOptions o;
  o.vram = VramMode::kLowVram;
  make_memory(o);
  failures_left = -1;
  const std::string msg = run_error("KSampler");
  EXPECT_EQ(rec.runs["2"], 2);
  EXPECT_EQ(
      msg,
      "[KSampler #2] out of memory on fake-gpu after trying empty_cache: CUDA out of memory. Tried to "
      "allocate 1.00 GiB (GPU 0; 4.00 GiB total capacity). Try --novram or a smaller batch or image size");
}

TEST_F(OomLadderTest, EachNodeStartsAtTheBottomRung) {
  make_memory();
  failures_left = 1;
  run("KSampler");
  failures_left = 1;
  rec = {};
  // A second workflow run: the same node fails once again and gets the first rung again.
  RunContext ctx;
  ctx.recovery = ladder.get();
  Executor(registry).run(
      workflow({node("1", "Const", {{"value", 6}}), node("2", "KSampler", {{"x", link("1")}}),
                node("3", "Sink", {{"x", link("2")}})}),
      ctx);
  EXPECT_EQ(ladder->rungs_taken(), (std::vector<std::string>{"empty_cache"}));
  EXPECT_EQ(state->empty_cache_calls, 2);
}

}  // namespace
}  // namespace sdflow
