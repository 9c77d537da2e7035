// The `sdflow` command: a thin client of the public API (include/sdflow/).
// Exit codes: 0 success, 1 the run failed, 2 usage or validation error. Messages go to
// stderr; results (JSON, tables, written file names) to stdout.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "cli/comfy_flags.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  using namespace sdflow;
  using namespace sdflow::cli;

  CLI::App app{"sdflow — runs ComfyUI workflows (Stable Diffusion) with ComfyUI's results, in C++.", "sdflow"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("sdflow ") + SDFLOW_VERSION);
  CommonOptions common;
  app.add_flag("-v,--verbose", common.verbose, "Log debug messages.");
  app.add_flag("-q,--quiet", common.quiet, "Log only errors.");
  app.add_option("--models-dir", common.engine.models_dir,
                 "Folder with checkpoints/, vae/, loras/, embeddings/, ... (default: models).")
      ->capture_default_str();
  app.add_option("--input-dir", common.engine.input_dir, "Folder LoadImage reads from (default: input).")
      ->capture_default_str();
  app.add_option("--output-dir", common.engine.output_dir, "Folder SaveImage writes to (default: output).")
      ->capture_default_str();
  app.add_option("--temp-dir", common.engine.temp_dir, "Folder PreviewImage writes to (default: temp).")
      ->capture_default_str();
  app.add_option("--clip-vocab", common.engine.clip_vocab_dir,
                 "Folder with the CLIP tokenizer's vocab.json and merges.txt.");
  app.add_flag("--disable-metadata", common.engine.disable_metadata,
               "Do not store the workflow in saved images and latents.");
  add_comfy_flags(app, common.engine.memory);

  RunArgs run_args;
  auto* run = app.add_subcommand("run", "Validate and run a workflow (API or UI JSON, or a ComfyUI PNG).");
  run->fallthrough();
  run->add_option("workflow", run_args.workflow, "Workflow file.")->required();
  run->add_option("--set", run_args.sets, "Change a constant input: NODE.INPUT=VALUE (NODE = id or title).")
      ->take_all();
  run->add_flag("--json-progress", run_args.json_progress, "Print progress events as JSON lines on stdout.");
  run->add_option("--report", run_args.report, "Write per-node timings and memory peaks to this JSON file.");

  ValidateArgs validate_args;
  auto* validate = app.add_subcommand("validate", "Check a workflow without running it (no model files needed).");
  validate->fallthrough();
  validate->add_option("workflow", validate_args.workflow, "Workflow file.")->required();
  validate->add_option("--set", validate_args.sets, "Change a constant input first: NODE.INPUT=VALUE.")
      ->take_all();
  validate->add_flag("--strict", validate_args.strict, "Also check that model and input files exist.");
  validate->add_flag("--json", validate_args.json, "Print the result as JSON.");

  PlanArgs plan_args;
  auto* plan = app.add_subcommand(
      "plan",
      "Predict each node's VRAM need and which flags fit a budget (--vram-budget GB), without running.");
  plan->fallthrough();
  plan->add_option("workflow", plan_args.workflow, "Workflow file.")->required();
  plan->add_option("--set", plan_args.sets, "Change a constant input first: NODE.INPUT=VALUE.")->take_all();
  plan->add_flag("--json", plan_args.json, "Print the plan as JSON.");
  plan->add_option(
          "--assume-cc", plan_args.assume_cc,
          "Without a GPU here, plan for a CUDA GPU of this compute capability (default 8: fp16 UNet, "
          "bf16 VAE).")
      ->capture_default_str();

  NodesArgs nodes_args;
  auto* nodes = app.add_subcommand("nodes", "List the node types sdflow knows.");
  nodes->fallthrough();
  nodes->add_flag("--json", nodes_args.json, "Print every schema, shaped like ComfyUI's /object_info.");

  InfoArgs info_args;
  auto* info = app.add_subcommand("info", "Describe a .safetensors file (tensors, dtypes, bytes, metadata).");
  info->fallthrough();
  info->add_option("file", info_args.file, "Model file.")->required();
  info->add_flag("--json", info_args.json, "Print JSON.");
  info->add_flag("--tensors", info_args.list_tensors, "List every tensor.");

  MakeCheckpointArgs make_args;
  auto* make = app.add_subcommand(
      "make-checkpoint",
      "Write a random-weight checkpoint in the real SD1.5/SD2/SDXL/SDXL-refiner layout (for tests and benchmarks).");
  make->fallthrough();
  make->add_option("out", make_args.out, "Output .safetensors file (with --split: the models folder).")->required();
  make->add_option("--arch", make_args.arch, "sd15, sd2, sdxl or sdxl_refiner.")
      ->check(CLI::IsMember({"sd15", "sd2", "sdxl", "sdxl_refiner"}))
      ->capture_default_str();
  make->add_flag("--split", make_args.split,
                 "Write the UNet, text encoders and VAE as separate files under OUT/diffusion_models, "
                 "OUT/text_encoders and OUT/vae (for UNETLoader, CLIPLoader, DualCLIPLoader, VAELoader).");
  make->add_option("--name", make_args.name, "File name stem for --split (default: ARCH, or ARCH-tiny).");
  make->add_flag("--tiny", make_args.tiny, "Same structure with small widths and depths (CPU tests).");
  make->add_option("--seed", make_args.seed, "Random seed.")->capture_default_str();
  make->add_option("--dtype", make_args.dtype, "fp16, bf16 or fp32.")->capture_default_str();

  MakeLoraArgs lora_args;
  auto* make_lora = app.add_subcommand(
      "make-lora",
      "Write a random LoRA for a checkpoint's UNet and text encoders (for tests and benchmarks).");
  make_lora->fallthrough();
  make_lora->add_option("out", lora_args.out, "Output .safetensors file.")->required();
  make_lora->add_option("--for", lora_args.checkpoint, "The checkpoint (.safetensors) the LoRA is for.")
      ->required();
  make_lora->add_option("--rank", lora_args.rank, "LoRA rank.")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  make_lora->add_option("--seed", lora_args.seed, "Random seed.")->capture_default_str();
  make_lora
      ->add_option("--format", lora_args.format,
                   "kohya (lora_unet_/lora_te*_ with lora_up/lora_down) or peft (unet./text_encoder*. with "
                   "lora_A/lora_B).")
      ->check(CLI::IsMember({"kohya", "peft"}))
      ->capture_default_str();
  make_lora->add_option("--alpha", lora_args.alpha, "Stored alpha (scale = alpha/rank); default: the rank.");

  try {
    app.parse(argc, argv);
    finish_comfy_flags(app, common.engine.memory);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  log::set_level(common.verbose ? log::Level::kDebug : common.quiet ? log::Level::kError : log::Level::kInfo);
  try {
    if (*run) return command_run(common, run_args);
    if (*validate) return command_validate(common, validate_args);
    if (*plan) return command_plan(common, plan_args);
    if (*nodes) return command_nodes(common, nodes_args);
    if (*info) return command_info(common, info_args);
    if (*make) return command_make_checkpoint(common, make_args);
    if (*make_lora) return command_make_lora(common, lora_args);
  } catch (const Error& e) {
    log::error("{}", e.what());
    return exit_code_for(e.kind());
  } catch (const std::bad_alloc&) {
    log::error("out of memory");
    return kExitFailed;
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return kExitFailed;
  }
  return kExitUsage;
}
