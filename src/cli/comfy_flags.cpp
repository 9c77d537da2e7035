#include "cli/comfy_flags.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace sdflow::cli {

namespace {

struct FlagChoice {
  const char* flag;
  const char* help;
};

// Exclusive groups: the first flag given wins; two given is an error (argparse semantics).
const std::vector<std::pair<FlagChoice, VramMode>> kVramFlags = {
    {{"--gpu-only", "Keep everything (models, text encoders, VAE, intermediates) on the GPU."}, VramMode::kGpuOnly},
    {{"--highvram", "Keep models in VRAM after use instead of offloading them."}, VramMode::kHighVram},
    {{"--normalvram", "Default policy: load what fits, offload the rest."}, VramMode::kNormalVram},
    {{"--lowvram", "Split the UNet and stream its weights; text encoder on the CPU."}, VramMode::kLowVram},
    {{"--novram", "Keep no weights resident (every block streams); tile the VAE when one image needs > 0.8 GiB."}, VramMode::kNoVram},
    {{"--cpu", "Run everything on the CPU."}, VramMode::kCpu},
};

const std::vector<std::pair<FlagChoice, Precision>> kUnetFlags = {
    {{"--fp32-unet", "Store and run the diffusion model in fp32."}, Precision::kFp32},
    {{"--fp64-unet", "Store and run the diffusion model in fp64."}, Precision::kFp64},
    {{"--bf16-unet", "Store and run the diffusion model in bf16."}, Precision::kBf16},
    {{"--fp16-unet", "Store and run the diffusion model in fp16."}, Precision::kFp16},
    {{"--fp8_e4m3fn-unet", "Store the diffusion model weights in fp8_e4m3fn."}, Precision::kFp8E4M3},
    {{"--fp8_e5m2-unet", "Store the diffusion model weights in fp8_e5m2."}, Precision::kFp8E5M2},
    {{"--fp8_e8m0fnu-unet", "Store the diffusion model weights in fp8_e8m0fnu."}, Precision::kFp8E8M0},
};

const std::vector<std::pair<FlagChoice, Precision>> kVaeFlags = {
    {{"--fp16-vae", "Run the VAE in fp16 (may give black images)."}, Precision::kFp16},
    {{"--fp32-vae", "Run the VAE in fp32."}, Precision::kFp32},
    {{"--bf16-vae", "Run the VAE in bf16."}, Precision::kBf16},
};

const std::vector<std::pair<FlagChoice, Precision>> kTextEncFlags = {
    {{"--fp8_e4m3fn-text-enc", "Store text encoder weights in fp8 (e4m3fn)."}, Precision::kFp8E4M3},
    {{"--fp8_e5m2-text-enc", "Store text encoder weights in fp8 (e5m2)."}, Precision::kFp8E5M2},
    {{"--fp16-text-enc", "Store text encoder weights in fp16."}, Precision::kFp16},
    {{"--fp32-text-enc", "Store text encoder weights in fp32."}, Precision::kFp32},
    {{"--bf16-text-enc", "Store text encoder weights in bf16."}, Precision::kBf16},
};

const std::vector<std::pair<FlagChoice, AttentionBackend>> kAttentionFlags = {
    {{"--use-split-cross-attention", "Sliced attention (lower peak memory)."}, AttentionBackend::kSplit},
    {{"--use-quad-cross-attention", "Sub-quadratic attention."}, AttentionBackend::kQuad},
    {{"--use-pytorch-cross-attention", "PyTorch scaled-dot-product attention."}, AttentionBackend::kPytorch},
    {{"--use-sage-attention", "INT8 Q.K^T attention (SageAttention's idea)."}, AttentionBackend::kSage},
    {{"--use-flash-attention", "Flash attention (runs PyTorch SDPA)."}, AttentionBackend::kFlash},
};

// Flags registered by add_comfy_flags and resolved in finish_comfy_flags.
struct Registered {
  std::map<std::string, bool> flags;  // flag → set
};
Registered& registered(CLI::App& app) {
  static std::map<CLI::App*, Registered> per_app;
  return per_app[&app];
}

template <typename T>
void add_group(CLI::App& app, const std::vector<std::pair<FlagChoice, T>>& group, const char* group_name) {
  auto& reg = registered(app);
  for (const auto& [choice, value] : group) {
    reg.flags[choice.flag] = false;
    app.add_flag(choice.flag, reg.flags[choice.flag], choice.help)->group(group_name);
  }
}

template <typename T>
void resolve_group(CLI::App& app, const std::vector<std::pair<FlagChoice, T>>& group, T& out) {
  auto& reg = registered(app);
  const char* chosen = nullptr;
  for (const auto& [choice, value] : group) {
    if (!reg.flags[choice.flag]) continue;
    if (chosen)
      throw CLI::ValidationError(std::string("argument ") + choice.flag + ": not allowed with argument " + chosen);
    chosen = choice.flag;
    out = value;
  }
}

}  // namespace

void add_comfy_flags(CLI::App& app, MemoryOptions& o) {
  add_group(app, kVramFlags, "Memory (ComfyUI flags)");
  app.add_option("--reserve-vram", o.reserve_vram_gb, "GB of VRAM to leave free for other software (default 0.4).")
      ->group("Memory (ComfyUI flags)");
  app.add_option("--vram-budget", o.vram_budget_gb,
                 "Enforce a VRAM budget in GB through the allocator (acts like a smaller card).")
      ->group("Memory (ComfyUI flags)");
  app.add_option("--cuda-device", o.cuda_device, "CUDA device index to use.")->group("Memory (ComfyUI flags)");
  app.add_option("--default-device", o.default_device, "Default CUDA device index.")->group("Memory (ComfyUI flags)");
  app.add_flag("--disable-smart-memory", o.disable_smart_memory, "Unload every model after each run.")
      ->group("Memory (ComfyUI flags)");
  app.add_option("--async-offload", o.async_offload, "Copy streams for offloaded weights (default 2).")
      ->expected(0, 1)
      ->default_str("2")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--disable-async-offload", o.disable_async_offload, "Copy weights on the compute stream.")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--force-non-blocking", o.force_non_blocking, "Always use non-blocking copies.")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--disable-pinned-memory", o.disable_pinned_memory, "Do not pin host copies of weights.")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--cuda-malloc", o.cuda_malloc, "Use cudaMallocAsync.")->group("Memory (ComfyUI flags)");
  app.add_flag("--disable-cuda-malloc", o.disable_cuda_malloc, "Do not use cudaMallocAsync.")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--supports-fp8-compute", o.supports_fp8_compute, "Assume the GPU computes in fp8.")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--force-channels-last", o.force_channels_last, "Run the UNet in channels-last layout.")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--disable-mmap", o.disable_mmap, "Copy model files into memory instead of mapping them.")
      ->group("Memory (ComfyUI flags)");
  app.add_flag("--mmap-torch-files", o.mmap_torch_files, "Map .pt/.ckpt files (accepted for compatibility).")
      ->group("Memory (ComfyUI flags)");

  app.add_flag("--force-fp32", o.force_fp32, "Run every model in fp32.")->group("Precision (ComfyUI flags)");
  app.add_flag("--force-fp16", o.force_fp16, "Run models in fp16 where possible.")->group("Precision (ComfyUI flags)");
  add_group(app, kUnetFlags, "Precision (ComfyUI flags)");
  add_group(app, kVaeFlags, "Precision (ComfyUI flags)");
  app.add_flag("--cpu-vae", o.cpu_vae, "Run the VAE on the CPU.")->group("Precision (ComfyUI flags)");
  add_group(app, kTextEncFlags, "Precision (ComfyUI flags)");

  add_group(app, kAttentionFlags, "Attention (ComfyUI flags)");
  registered(app).flags["--force-upcast-attention"] = false;
  registered(app).flags["--dont-upcast-attention"] = false;
  app.add_flag("--force-upcast-attention", registered(app).flags["--force-upcast-attention"],
               "Compute attention scores in fp32.")
      ->group("Attention (ComfyUI flags)");
  app.add_flag("--dont-upcast-attention", registered(app).flags["--dont-upcast-attention"],
               "Never upcast attention.")
      ->group("Attention (ComfyUI flags)");
  app.add_flag("--disable-xformers", o.disable_xformers, "Accepted for compatibility (sdflow has no xformers).")
      ->group("Attention (ComfyUI flags)");

  auto& reg = registered(app);
  reg.flags["--cache-classic"] = false;
  reg.flags["--cache-none"] = false;
  app.add_flag("--cache-classic", reg.flags["--cache-classic"], "Reuse unchanged node results (default).")
      ->group("Cache (ComfyUI flags)");
  app.add_option("--cache-lru", o.cache_lru_size, "Keep up to N node results (LRU).")->group("Cache (ComfyUI flags)");
  app.add_option("--cache-ram", o.cache_ram_gb, "Evict cached results when free RAM is below GB.")
      ->expected(0, 1)
      ->default_str("4.0")
      ->group("Cache (ComfyUI flags)");
  app.add_flag("--cache-none", reg.flags["--cache-none"], "Run every node on every run.")
      ->group("Cache (ComfyUI flags)");
  app.add_option("--fast", o.fast, "Speed features: fp16_accumulation fp8_matrix_mult cublas_ops autotune.")
      ->expected(0, -1)
      ->group("Execution (ComfyUI flags)");
  app.add_flag("--deterministic", o.deterministic, "Use deterministic algorithms where possible.")
      ->group("Execution (ComfyUI flags)");
}

void finish_comfy_flags(CLI::App& app, MemoryOptions& o) {
  resolve_group(app, kVramFlags, o.vram);
  resolve_group(app, kUnetFlags, o.unet);
  resolve_group(app, kVaeFlags, o.vae);
  resolve_group(app, kTextEncFlags, o.text_encoder);
  resolve_group(app, kAttentionFlags, o.attention);
  auto& reg = registered(app);
  if (reg.flags["--force-upcast-attention"] && reg.flags["--dont-upcast-attention"])
    throw CLI::ValidationError("argument --dont-upcast-attention: not allowed with argument --force-upcast-attention");
  if (reg.flags["--force-upcast-attention"]) o.upcast_attention = UpcastAttention::kForce;
  if (reg.flags["--dont-upcast-attention"]) o.upcast_attention = UpcastAttention::kNever;
  if (o.force_fp16 && o.force_fp32)
    throw CLI::ValidationError("argument --force-fp16: not allowed with argument --force-fp32");
  if (o.cuda_malloc && o.disable_cuda_malloc)
    throw CLI::ValidationError("argument --disable-cuda-malloc: not allowed with argument --cuda-malloc");
  // argparse would take these; sdflow's own --vram-budget is a cap, so only > 0 means anything.
  if (o.vram_budget_gb && !(*o.vram_budget_gb > 0 && std::isfinite(*o.vram_budget_gb)))
    throw CLI::ValidationError(
        "--vram-budget", "must be a number of GB > 0 (got " + app["--vram-budget"]->results().at(0) + ")");
  if (o.reserve_vram_gb && !std::isfinite(*o.reserve_vram_gb))
    throw CLI::ValidationError("--reserve-vram",
                               "must be a number of GB (got " + app["--reserve-vram"]->results().at(0) + ")");
  if (app.count("--async-offload") && !o.async_offload) o.async_offload = 2;
  if (app.count("--cache-ram") && o.cache_ram_gb == 0) o.cache_ram_gb = 4.0;
  // ComfyUI: --force-fp16 implies --fp16-unet.
  if (o.force_fp16 && o.unet == Precision::kDefault) o.unet = Precision::kFp16;
  // `--fast` alone leaves one empty value (CLI11); ComfyUI's nargs="*" then means every feature.
  o.fast.erase(std::remove(o.fast.begin(), o.fast.end(), std::string()), o.fast.end());
  if (app.count("--fast") && o.fast.empty())
    o.fast = {"fp16_accumulation", "fp8_matrix_mult", "cublas_ops", "autotune"};
  // Cache policy priority as in ComfyUI's worker: lru > ram > none > classic.
  int cache_flags = (o.cache_lru_size > 0) + (o.cache_ram_gb > 0) + reg.flags["--cache-none"] + reg.flags["--cache-classic"];
  if (cache_flags > 1) throw CLI::ValidationError("the --cache-* flags are mutually exclusive");
  if (o.cache_lru_size > 0) o.cache = CachePolicy::kLru;
  else if (o.cache_ram_gb > 0) o.cache = CachePolicy::kRamPressure;
  else if (reg.flags["--cache-none"]) o.cache = CachePolicy::kNone;
  else o.cache = CachePolicy::kClassic;
}

}  // namespace sdflow::cli
