// Every ComfyUI flag the CLI takes (src/cli/comfy_flags.cpp), parsed as `sdflow` parses it, sets
// its MemoryOptions field and nothing else; the cases below name every flag the CLI registers
// (a new flag fails the test until it has a case). Two flags of one of ComfyUI's exclusive
// groups, unknown flags and bad values are usage errors, through the binary too (exit code 2).
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/comfy_flags.h"
#include "core/error.h"
#include "core/torch_compat.h"
#include "memory/precision.h"
#include "sdflow/memory.h"

namespace sdflow {
namespace {

// What `sdflow` does with its global options: add the flags, parse, resolve the groups.
MemoryOptions parse(const std::string& args) {
  CLI::App app;
  MemoryOptions o;
  cli::add_comfy_flags(app, o);
  app.parse(args, /*program_name_included=*/false);
  cli::finish_comfy_flags(app, o);
  return o;
}

template <typename T>
std::string opt(const std::optional<T>& v) {
  if (!v) return "unset";
  std::ostringstream s;
  s << *v;
  return s.str();
}

// Every field, one per line, so that a mismatch shows which field and how.
std::string describe(const MemoryOptions& o) {
  std::ostringstream s;
  s << "vram " << to_string(o.vram) << "\nreserve_vram_gb " << opt(o.reserve_vram_gb) << "\nvram_budget_gb "
    << opt(o.vram_budget_gb) << "\ncuda_device " << opt(o.cuda_device) << "\ndefault_device "
    << opt(o.default_device) << "\ndisable_smart_memory " << o.disable_smart_memory << "\nasync_offload "
    << opt(o.async_offload) << "\ndisable_async_offload " << o.disable_async_offload
    << "\nforce_non_blocking " << o.force_non_blocking << "\ndisable_pinned_memory "
    << o.disable_pinned_memory << "\ncuda_malloc " << o.cuda_malloc << "\ndisable_cuda_malloc "
    << o.disable_cuda_malloc << "\nsupports_fp8_compute " << o.supports_fp8_compute
    << "\nforce_channels_last " << o.force_channels_last << "\ndisable_mmap " << o.disable_mmap
    << "\nmmap_torch_files " << o.mmap_torch_files << "\nforce_fp32 " << o.force_fp32 << "\nforce_fp16 "
    << o.force_fp16 << "\nunet " << to_string(o.unet) << "\nvae " << to_string(o.vae) << "\ntext_encoder "
    << to_string(o.text_encoder) << "\ncpu_vae " << o.cpu_vae << "\nattention " << to_string(o.attention)
    << "\nupcast_attention " << static_cast<int>(o.upcast_attention) << "\ndisable_xformers "
    << o.disable_xformers << "\ncache " << static_cast<int>(o.cache) << "\ncache_lru_size "
    << o.cache_lru_size << "\ncache_ram_gb " << o.cache_ram_gb << "\nfast";
  for (const std::string& f : o.fast) s << " " << f;
  s << "\ndeterministic " << o.deterministic << "\n";
  return s.str();
}

struct FlagCase {
  std::string args;
  std::function<void(MemoryOptions&)> expect;  // applied to the defaults
};

std::vector<FlagCase> cases() {
  using O = MemoryOptions;
  return {
      // Memory.
      {"--gpu-only", [](O& o) { o.vram = VramMode::kGpuOnly; }},
      {"--highvram", [](O& o) { o.vram = VramMode::kHighVram; }},
      {"--normalvram", [](O& o) { o.vram = VramMode::kNormalVram; }},
      {"--lowvram", [](O& o) { o.vram = VramMode::kLowVram; }},
      {"--novram", [](O& o) { o.vram = VramMode::kNoVram; }},
      {"--cpu", [](O& o) { o.vram = VramMode::kCpu; }},
      {"--reserve-vram 1.5", [](O& o) { o.reserve_vram_gb = 1.5; }},
      {"--reserve-vram 0", [](O& o) { o.reserve_vram_gb = 0.0; }},
      // ComfyUI takes any float here, and so does sdflow (it only shrinks what is kept free).
      {"--reserve-vram -0.25", [](O& o) { o.reserve_vram_gb = -0.25; }},
      {"--vram-budget 2", [](O& o) { o.vram_budget_gb = 2.0; }},
      {"--vram-budget 0.5", [](O& o) { o.vram_budget_gb = 0.5; }},
      {"--cuda-device 1", [](O& o) { o.cuda_device = 1; }},
      {"--default-device 2", [](O& o) { o.default_device = 2; }},
      {"--disable-smart-memory", [](O& o) { o.disable_smart_memory = true; }},
      {"--async-offload", [](O& o) { o.async_offload = 2; }},  // ComfyUI's const=2
      {"--async-offload 0", [](O& o) { o.async_offload = 0; }},
      {"--async-offload 3", [](O& o) { o.async_offload = 3; }},
      {"--disable-async-offload", [](O& o) { o.disable_async_offload = true; }},
      {"--force-non-blocking", [](O& o) { o.force_non_blocking = true; }},
      {"--disable-pinned-memory", [](O& o) { o.disable_pinned_memory = true; }},
      {"--cuda-malloc", [](O& o) { o.cuda_malloc = true; }},
      {"--disable-cuda-malloc", [](O& o) { o.disable_cuda_malloc = true; }},
      {"--supports-fp8-compute", [](O& o) { o.supports_fp8_compute = true; }},
      {"--force-channels-last", [](O& o) { o.force_channels_last = true; }},
      {"--disable-mmap", [](O& o) { o.disable_mmap = true; }},
      {"--mmap-torch-files", [](O& o) { o.mmap_torch_files = true; }},
      // Precision.
      {"--force-fp32", [](O& o) { o.force_fp32 = true; }},
      {"--force-fp16", [](O& o) { o.force_fp16 = true, o.unet = Precision::kFp16; }},  // implies --fp16-unet
      {"--force-fp16 --bf16-unet", [](O& o) { o.force_fp16 = true, o.unet = Precision::kBf16; }},
      {"--fp32-unet", [](O& o) { o.unet = Precision::kFp32; }},
      {"--fp64-unet", [](O& o) { o.unet = Precision::kFp64; }},
      {"--bf16-unet", [](O& o) { o.unet = Precision::kBf16; }},
      {"--fp16-unet", [](O& o) { o.unet = Precision::kFp16; }},
      {"--fp8_e4m3fn-unet", [](O& o) { o.unet = Precision::kFp8E4M3; }},
      {"--fp8_e5m2-unet", [](O& o) { o.unet = Precision::kFp8E5M2; }},
      {"--fp8_e8m0fnu-unet", [](O& o) { o.unet = Precision::kFp8E8M0; }},
      {"--fp16-vae", [](O& o) { o.vae = Precision::kFp16; }},
      {"--fp32-vae", [](O& o) { o.vae = Precision::kFp32; }},
      {"--bf16-vae", [](O& o) { o.vae = Precision::kBf16; }},
      {"--cpu-vae", [](O& o) { o.cpu_vae = true; }},
      {"--fp8_e4m3fn-text-enc", [](O& o) { o.text_encoder = Precision::kFp8E4M3; }},
      {"--fp8_e5m2-text-enc", [](O& o) { o.text_encoder = Precision::kFp8E5M2; }},
      {"--fp16-text-enc", [](O& o) { o.text_encoder = Precision::kFp16; }},
      {"--fp32-text-enc", [](O& o) { o.text_encoder = Precision::kFp32; }},
      {"--bf16-text-enc", [](O& o) { o.text_encoder = Precision::kBf16; }},
      // Attention.
      {"--use-split-cross-attention", [](O& o) { o.attention = AttentionBackend::kSplit; }},
      {"--use-quad-cross-attention", [](O& o) { o.attention = AttentionBackend::kQuad; }},
      {"--use-pytorch-cross-attention", [](O& o) { o.attention = AttentionBackend::kPytorch; }},
      {"--use-sage-attention", [](O& o) { o.attention = AttentionBackend::kSage; }},
      {"--use-flash-attention", [](O& o) { o.attention = AttentionBackend::kFlash; }},
      {"--force-upcast-attention", [](O& o) { o.upcast_attention = UpcastAttention::kForce; }},
      {"--dont-upcast-attention", [](O& o) { o.upcast_attention = UpcastAttention::kNever; }},
      {"--disable-xformers", [](O& o) { o.disable_xformers = true; }},
      // Cache and execution.
      {"--cache-classic", [](O& o) { o.cache = CachePolicy::kClassic; }},
      {"--cache-lru 8", [](O& o) { o.cache = CachePolicy::kLru, o.cache_lru_size = 8; }},
      {"--cache-ram", [](O& o) { o.cache = CachePolicy::kRamPressure, o.cache_ram_gb = 4.0; }},  // const=4.0
      {"--cache-ram 2.5", [](O& o) { o.cache = CachePolicy::kRamPressure, o.cache_ram_gb = 2.5; }},
      {"--cache-none", [](O& o) { o.cache = CachePolicy::kNone; }},
      {"--fast",
       [](O& o) {
         o.fast = {"fp16_accumulation", "fp8_matrix_mult", "cublas_ops", "autotune"};
       }},
      {"--fast fp16_accumulation autotune",
       [](O& o) {
         o.fast = {"fp16_accumulation", "autotune"};
       }},
      {"--deterministic", [](O& o) { o.deterministic = true; }},
      // Several at once, from different groups.
      {"--lowvram --reserve-vram 2 --vram-budget 6 --disable-smart-memory --fp16-unet --bf16-vae "
       "--fp32-text-enc "
       "--use-quad-cross-attention --cache-lru 4",
       [](O& o) {
         o.vram = VramMode::kLowVram;
         o.reserve_vram_gb = 2.0;
         o.vram_budget_gb = 6.0;
         o.disable_smart_memory = true;
         o.unet = Precision::kFp16;
         o.vae = Precision::kBf16;
         o.text_encoder = Precision::kFp32;
         o.attention = AttentionBackend::kQuad;
         o.cache = CachePolicy::kLru;
         o.cache_lru_size = 4;
       }},
  };
}

TEST(ComfyFlags, NoFlagsGiveTheDefaults) { EXPECT_EQ(describe(parse("")), describe(MemoryOptions{})); }

TEST(ComfyFlags, EachFlagSetsItsFieldAndNothingElse) {
  for (const FlagCase& c : cases()) {
    SCOPED_TRACE(c.args);
    MemoryOptions want;
    c.expect(want);
    try {
      EXPECT_EQ(describe(parse(c.args)), describe(want));
    } catch (const CLI::Error& e) {
      ADD_FAILURE() << e.get_name() << ": " << e.what();
    }
  }
}

TEST(ComfyFlags, EveryRegisteredFlagHasACase) {
  std::set<std::string> tested;
  for (const FlagCase& c : cases()) {
    std::istringstream words(c.args);
    for (std::string w; words >> w;)
      if (w.rfind("--", 0) == 0) tested.insert(w);
  }
  CLI::App app;
  MemoryOptions o;
  cli::add_comfy_flags(app, o);
  int flags = 0;
  for (const CLI::Option* option : app.get_options()) {
    const std::string& group = option->get_group();
    if (group.find("(ComfyUI flags)") == std::string::npos) continue;
    ++flags;
    ASSERT_FALSE(option->get_lnames().empty());
    const std::string name = "--" + option->get_lnames().front();
    EXPECT_TRUE(tested.count(name)) << name << " (" << group << ") has no case in this test";
  }
  EXPECT_GE(flags, 53);  // the test really saw the CLI's flags
}

// ComfyUI's mutually exclusive groups (comfy/cli_args.py): any two of one group is an error
// naming both, as argparse says it.
TEST(ComfyFlags, TwoFlagsOfAnExclusiveGroupAreAUsageError) {
  const std::vector<std::vector<std::string>> groups = {
      {"--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu"},
      {"--fp32-unet", "--fp64-unet", "--bf16-unet", "--fp16-unet", "--fp8_e4m3fn-unet", "--fp8_e5m2-unet",
       "--fp8_e8m0fnu-unet"},
      {"--fp16-vae", "--fp32-vae", "--bf16-vae"},
      {"--fp8_e4m3fn-text-enc", "--fp8_e5m2-text-enc", "--fp16-text-enc", "--fp32-text-enc",
       "--bf16-text-enc"},
      {"--use-split-cross-attention", "--use-quad-cross-attention", "--use-pytorch-cross-attention",
       "--use-sage-attention", "--use-flash-attention"},
      {"--force-upcast-attention", "--dont-upcast-attention"},
      {"--force-fp32", "--force-fp16"},
      {"--cuda-malloc", "--disable-cuda-malloc"},
  };
  for (const auto& group : groups)
    for (size_t i = 0; i < group.size(); ++i)
      for (size_t j = 0; j < group.size(); ++j) {
        if (i == j) continue;
        const std::string args = group[i] + " " + group[j];
        SCOPED_TRACE(args);
        try {
          parse(args);
          ADD_FAILURE() << "accepted";
        } catch (const CLI::ValidationError& e) {
          const std::string msg = e.what();
          EXPECT_NE(msg.find("not allowed with"), std::string::npos) << msg;
          EXPECT_NE(msg.find(group[i]), std::string::npos) << msg;
          EXPECT_NE(msg.find(group[j]), std::string::npos) << msg;
        }
      }
  const std::vector<std::string> cache = {"--cache-classic", "--cache-lru 2", "--cache-ram", "--cache-none"};
  for (size_t i = 0; i < cache.size(); ++i)
    for (size_t j = i + 1; j < cache.size(); ++j) {
      SCOPED_TRACE(cache[i] + " " + cache[j]);
      try {
        parse(cache[i] + " " + cache[j]);
        ADD_FAILURE() << "accepted";
      } catch (const CLI::ValidationError& e) {
        EXPECT_NE(std::string(e.what()).find("mutually exclusive"), std::string::npos) << e.what();
      }
    }
}

TEST(ComfyFlags, BadValuesAreUsageErrorsNamingTheFlag) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--vram-budget -1", "--vram-budget"},    {"--vram-budget 0", "--vram-budget"},
      {"--vram-budget nan", "--vram-budget"},   {"--vram-budget inf", "--vram-budget"},
      {"--vram-budget abc", "--vram-budget"},   {"--vram-budget", "--vram-budget"},
      {"--reserve-vram nan", "--reserve-vram"}, {"--reserve-vram x", "--reserve-vram"},
      {"--cuda-device one", "--cuda-device"},   {"--cuda-device 1.5", "--cuda-device"},
      {"--cache-lru x", "--cache-lru"},         {"--async-offload x", "x"},
      {"--frobnicate", "--frobnicate"},
  };
  for (const auto& [args, named] : bad) {
    SCOPED_TRACE(args);
    try {
      parse(args);
      ADD_FAILURE() << "accepted";
    } catch (const CLI::ParseError& e) {
      EXPECT_NE(std::string(e.what()).find(named), std::string::npos) << e.get_name() << ": " << e.what();
    }
  }
}

// The fp8 flags parse everywhere; a libtorch without fp8 (Debian's 1.13) refuses them when the
// dtype is chosen, with the usage error docs/MEMORY.md names ("needs libtorch ≥ 2.1").
TEST(ComfyFlags, Fp8FlagsNeedAnFp8Libtorch) {
  const DeviceCaps cpu{};
  for (const char* flag : {"--fp8_e4m3fn-unet", "--fp8_e5m2-unet"}) {
    SCOPED_TRACE(flag);
    const MemoryOptions o = parse(flag);
    if (compat::kHasFp8) {
      EXPECT_EQ(c10::elementSize(choose_unet_dtype(o, cpu, at::kHalf).storage), 1u);
      continue;
    }
    try {
      choose_unet_dtype(o, cpu, at::kHalf);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage);
      EXPECT_NE(
          std::string(e.what()).find(std::string(flag) + " needs fp8 support in libtorch (2.1 or newer)"),
          std::string::npos)
          << e.what();
    }
  }
  for (const char* flag : {"--fp8_e4m3fn-text-enc", "--fp8_e5m2-text-enc"}) {
    SCOPED_TRACE(flag);
    const MemoryOptions o = parse(flag);
    if (compat::kHasFp8) {
      EXPECT_EQ(c10::elementSize(choose_text_encoder_dtype(o, cpu).storage), 1u);
      continue;
    }
    try {
      choose_text_encoder_dtype(o, cpu);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage);
      EXPECT_NE(
          std::string(e.what()).find(std::string(flag) + " needs fp8 support in libtorch (2.1 or newer)"),
          std::string::npos)
          << e.what();
    }
  }
}

// The same through the binary: exit code 2, the reason and the flag on stderr, nothing run.
TEST(ComfyFlags, TheBinaryExitsWithTwoOnBadFlags) {
  test::TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--frobnicate nodes", "--frobnicate"},
      {"--vram-budget -1 nodes", "--vram-budget: must be a number of GB > 0 (got -1)"},
      {"--vram-budget 0 info x.safetensors", "--vram-budget: must be a number of GB > 0 (got 0)"},
      {"--vram-budget abc nodes", "--vram-budget"},
      {"--lowvram --cpu nodes", "argument --cpu: not allowed with argument --lowvram"},
      {"--fp16-vae --bf16-vae nodes", "argument --bf16-vae: not allowed with argument --fp16-vae"},
      {"--cache-none --cache-lru 3 nodes", "mutually exclusive"},
      {"nodes --novram --gpu-only", "argument --novram: not allowed with argument --gpu-only"},
  };
  for (const auto& [args, message] : bad) {
    SCOPED_TRACE(args);
    const test::CommandResult r = test::run_sdflow(args, tmp);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // And a good one is taken (the nodes list is printed).
  const test::CommandResult ok = test::run_sdflow("--lowvram --reserve-vram 1 --fp16-unet nodes", tmp);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("KSampler"), std::string::npos);
}

}  // namespace
}  // namespace sdflow
