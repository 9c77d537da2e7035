#include <gtest/gtest.h>

#include "core/error.h"
#include "memory/memory_manager.h"
#include "memory/weight_store.h"

namespace sdflow {
namespace {

TEST(WeightStore, ConvertsFloatingTensorsToStorageDtypeAndCountsBytes) {
  WeightStore store("test", at::kHalf, at::kFloat);
  store.add_block("layer.0", {{"w", at::ones({4, 4})}, {"idx", at::arange(3, at::kLong)}});
  const WeightBlock& b = store.block("layer.0");
  EXPECT_EQ(b.host.at("w").scalar_type(), at::kHalf);
  EXPECT_EQ(b.host.at("idx").scalar_type(), at::kLong);  // integer tensors are left alone
  EXPECT_EQ(b.bytes, 16 * 2 + 3 * 8);
  EXPECT_EQ(store.total_bytes(), b.bytes);
  EXPECT_THROW(store.add_block("layer.0", {}), Error);
  EXPECT_THROW(store.block("missing"), Error);
}

TEST(AllResident, LeasesHoldComputeDtypeTensorsAndEvictionFreesThem) {
  MemoryOptions opts;
  opts.vram = VramMode::kCpu;
  MemoryManager mm(opts);
  EXPECT_EQ(mm.vram_state(), VramState::kDisabled);
  WeightStore store("test", at::kHalf, at::kFloat);
  store.add_block("b", {{"w", at::full({2, 2}, 0.5)}});
  {
    BlockLease lease = mm.residency().acquire(store, "b");
    EXPECT_EQ(lease.at("w").scalar_type(), at::kFloat);
    EXPECT_FLOAT_EQ(lease.at("w")[0][0].item<float>(), 0.5f);
    EXPECT_THROW(lease.at("nope"), Error);
  }
  EXPECT_EQ(mm.residency().resident_bytes(store), 16);  // what the device holds: fp32 (compute), not fp16
  // A second acquire is a lookup: the same tensor object.
  auto a = mm.residency().acquire(store, "b");
  auto b = mm.residency().acquire(store, "b");
  EXPECT_EQ(a.at("w").data_ptr(), b.at("w").data_ptr());
  mm.residency().evict(store);
  EXPECT_EQ(mm.residency().resident_bytes(store), 0);
}

TEST(VramState, ResolvesLikeComfy) {
  MemoryOptions o;
  EXPECT_EQ(resolve_vram_state(o, true), VramState::kNormalVram);
  EXPECT_EQ(resolve_vram_state(o, false), VramState::kDisabled);
  o.vram = VramMode::kLowVram;
  EXPECT_EQ(resolve_vram_state(o, true), VramState::kLowVram);
  o.vram = VramMode::kNoVram;
  EXPECT_EQ(resolve_vram_state(o, true), VramState::kNoVram);
  o.vram = VramMode::kGpuOnly;
  EXPECT_EQ(resolve_vram_state(o, true), VramState::kHighVram);
  o.vram = VramMode::kCpu;
  EXPECT_EQ(resolve_vram_state(o, true), VramState::kDisabled);
  EXPECT_EQ(extra_reserved_vram(MemoryOptions{}), int64_t{400} << 20);
  o.reserve_vram_gb = 2.0;
  EXPECT_EQ(extra_reserved_vram(o), int64_t{2} << 30);
}

TEST(MemoryManager, BudgetMustBePositive) {
  MemoryOptions o;
  o.vram = VramMode::kCpu;
  o.vram_budget_gb = -1;
  EXPECT_THROW(MemoryManager{o}, Error);
}

}  // namespace
}  // namespace sdflow

#include "memory/precision.h"

namespace sdflow {
namespace {

TEST(Precision, DefaultsFollowComfyOnAmpereAndCpu) {
  MemoryOptions o;
  DeviceCaps ampere{true, 8}, cpu{};
  auto unet = choose_unet_dtype(o, ampere, at::kFloat);
  EXPECT_EQ(unet.storage, at::kHalf);
  EXPECT_EQ(unet.compute, at::kHalf);
  EXPECT_EQ(choose_unet_dtype(o, cpu, at::kHalf).compute, at::kFloat);
  auto te = choose_text_encoder_dtype(o, ampere);
  EXPECT_EQ(te.storage, at::kHalf);
  EXPECT_EQ(te.compute, at::kFloat);
  EXPECT_EQ(choose_vae_dtype(o, ampere).compute, at::kBFloat16);
  EXPECT_EQ(choose_vae_dtype(o, DeviceCaps{true, 7}).compute, at::kFloat);
  EXPECT_EQ(choose_vae_dtype(o, cpu).compute, at::kFloat);
}

TEST(Precision, FlagsOverride) {
  DeviceCaps ampere{true, 8};
  MemoryOptions o;
  o.unet = Precision::kBf16;
  EXPECT_EQ(choose_unet_dtype(o, ampere, at::kHalf).storage, at::kBFloat16);
  o = {};
  o.force_fp32 = true;
  EXPECT_EQ(choose_unet_dtype(o, ampere, at::kHalf).compute, at::kFloat);
  EXPECT_EQ(choose_vae_dtype(o, ampere).compute, at::kFloat);
  o = {};
  o.vae = Precision::kFp16;
  EXPECT_EQ(choose_vae_dtype(o, ampere).compute, at::kHalf);
  o = {};
  o.cpu_vae = true;
  EXPECT_EQ(choose_vae_dtype(o, ampere).compute, at::kFloat);
  o = {};
  o.text_encoder = Precision::kFp32;
  EXPECT_EQ(choose_text_encoder_dtype(o, ampere).storage, at::kFloat);
}

}  // namespace
}  // namespace sdflow
