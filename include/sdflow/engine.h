// sdflow/engine.h — run ComfyUI workflows from C++.
//
//   sdflow::EngineOptions opts;
//   opts.models_dir = "models";
//   auto engine = sdflow::Engine::create(opts);
//   auto wf = engine->load_workflow("workflows/sd15_txt2img.json");
//   wf.set("3", "seed", "42");
//   sdflow::RunResult r = engine->run(wf);
//   for (auto& img : r.images) std::cout << img.path << "\n";
//
// Thread-safety: an Engine runs one workflow at a time (run() is not reentrant); cancel() may
// be called from any thread or a signal handler. Two Engines in one process are independent.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sdflow/memory.h"
#include "sdflow/plan.h"
#include "sdflow/progress.h"

namespace sdflow {

struct EngineOptions {
  std::string models_dir = "models";   // models/checkpoints, vae, loras, embeddings, ...
  std::string input_dir = "input";     // LoadImage reads here
  std::string output_dir = "output";   // SaveImage writes here
  std::string temp_dir = "temp";       // PreviewImage writes here
  std::string clip_vocab_dir;          // --clip-vocab: folder with vocab.json + merges.txt
  bool disable_metadata = false;       // --disable-metadata: no prompt/workflow in PNGs
  MemoryOptions memory;
};

// A loaded workflow (API or UI format, or a ComfyUI PNG), ready to be changed and run.
class WorkflowHandle {
 public:
  WorkflowHandle();
  ~WorkflowHandle();
  WorkflowHandle(WorkflowHandle&&) noexcept;
  WorkflowHandle& operator=(WorkflowHandle&&) noexcept;
  WorkflowHandle(const WorkflowHandle&);
  WorkflowHandle& operator=(const WorkflowHandle&);

  // Sets a constant input, like `--set NODE.INPUT=VALUE`. node = id or unique title; value is
  // parsed as JSON when it is a JSON scalar, else taken as a string. Throws on bad names.
  void set(const std::string& node, const std::string& input, const std::string& value);
  // The same from one "NODE.INPUT=VALUE" string (the CLI's --set).
  void set(const std::string& assignment);
  // ComfyUI API-format JSON of the workflow as it will run.
  std::string to_api_json() const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

struct ValidationProblem {
  std::string kind;  // machine-readable, ComfyUI's names (required_input_missing, ...)
  std::string node_id;
  std::string class_type;
  std::string input;
  std::string message;
};

struct ValidationResult {
  bool ok = false;
  std::vector<ValidationProblem> problems;
  std::string text() const;  // one line per problem
};

struct NodeReport {
  std::string node_id;
  std::string class_type;
  bool cached = false;
  double seconds = 0;
  int64_t peak_vram_allocated = 0;  // CUDA only (0 on the CPU)
  int64_t peak_vram_reserved = 0;
  int64_t peak_host_rss = 0;
  // Weights moved host→device during the node: blocks loaded to stay, blocks streamed (each
  // use counts), and the models (weight stores, "unet (file.safetensors)") loaded and unloaded.
  int64_t bytes_loaded = 0;
  int64_t bytes_streamed = 0;
  std::vector<std::string> models_loaded;
  std::vector<std::string> models_evicted;
  std::vector<std::string> oom_recovery;  // OOM ladder rungs taken before it succeeded
};

struct OutputImage {
  std::string node_id;
  std::string path;       // file written (absolute)
  std::string subfolder;  // relative to the output or temp folder
  std::string type;       // "output" or "temp"
};

struct RunResult {
  std::vector<OutputImage> images;   // PNGs written by SaveImage / PreviewImage
  std::vector<OutputImage> latents;  // .latent files written by SaveLatent
  std::vector<NodeReport> nodes;
  double seconds = 0;
};

class Engine {
 public:
  static std::unique_ptr<Engine> create(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Reads a .json (API or UI format) or a ComfyUI .png. Throws sdflow::Error.
  WorkflowHandle load_workflow(const std::string& path) const;
  WorkflowHandle parse_workflow(const std::string& json_text, const std::string& label = "<memory>") const;

  // Checks everything without running anything; strict also checks that model files exist.
  ValidationResult validate(const WorkflowHandle& workflow, bool strict = false) const;

  // Validates, then runs what the output nodes need. Results of unchanged nodes are reused
  // from earlier runs of this Engine. Throws sdflow::Error (kValidation, kCancelled, ...).
  RunResult run(const WorkflowHandle& workflow, const ProgressCallback& on_progress = {});

  // Predicts the workflow's VRAM needs per node and per VRAM mode without running it, and
  // which flags fit a budget (sdflow/plan.h). Validates strictly first (Error(kValidation));
  // model files are read for their headers only (Error(kIo/kFormat/kModel) naming the node).
  MemoryPlan plan(const WorkflowHandle& workflow, const PlanOptions& options = {}) const;

  // Asks a running run() to stop at the next node or step. Async-signal-safe.
  void cancel();

  // Every node's schema, shaped like ComfyUI's /object_info (JSON text).
  std::string node_schemas_json() const;
  // Memory figures of the compute device.
  MemoryStats memory_stats() const;

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdflow
