// The Engine: the library's front door. It owns the node registry, the memory manager, the
// executor (and so the output cache) and the services nodes use, and is the one place where
// internal errors and events are turned into the public API's types.
#include "sdflow/engine.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "engine/memory_plan.h"
#include "engine/oom_ladder.h"
#include "engine/workflow_handle_impl.h"
#include "exec/executor.h"
#include "graph/plan.h"
#include "io/model_folders.h"
#include "io/png_text.h"
#include "memory/memory_manager.h"
#include "nodes/builtin.h"
#include "nodes/services.h"
#include "workflow/load.h"
#include "workflow/overrides.h"

namespace sdflow {

namespace fs = std::filesystem;

// ---- WorkflowHandle -------------------------------------------------------------------------

WorkflowHandle::WorkflowHandle() : impl_(std::make_unique<Impl>()) {}
WorkflowHandle::~WorkflowHandle() = default;
WorkflowHandle::WorkflowHandle(WorkflowHandle&&) noexcept = default;
WorkflowHandle& WorkflowHandle::operator=(WorkflowHandle&&) noexcept = default;
WorkflowHandle::WorkflowHandle(const WorkflowHandle& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
WorkflowHandle& WorkflowHandle::operator=(const WorkflowHandle& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}

void WorkflowHandle::set(const std::string& node, const std::string& input, const std::string& value) {
  apply_override(impl_->workflow, node + "." + input + "=" + value, impl_->registry);
}

void WorkflowHandle::set(const std::string& assignment) {
  apply_override(impl_->workflow, assignment, impl_->registry);
}

std::string WorkflowHandle::to_api_json() const { return impl_->workflow.to_api_json().dump(2); }

std::string ValidationResult::text() const {
  std::ostringstream out;
  for (const auto& p : problems) {
    out << "[" << (p.class_type.empty() ? "?" : p.class_type) << " #" << p.node_id << "] ";
    if (!p.input.empty()) out << "input '" << p.input << "': ";
    out << p.message << " (" << p.kind << ")\n";
  }
  return out.str();
}

// ---- Engine ---------------------------------------------------------------------------------

namespace {

CacheMode to_cache_mode(CachePolicy policy) {
  switch (policy) {
    case CachePolicy::kNone: return CacheMode::kNone;
    case CachePolicy::kLru: return CacheMode::kLru;
    case CachePolicy::kRamPressure:
      log::warn("--cache-ram is not implemented yet; using the classic cache");
      return CacheMode::kClassic;
    case CachePolicy::kClassic: break;
  }
  return CacheMode::kClassic;
}

ProgressEvent::Type to_public(ExecEvent::Type t) {
  switch (t) {
    case ExecEvent::Type::kStart: return ProgressEvent::Type::kStart;
    case ExecEvent::Type::kCached: return ProgressEvent::Type::kCached;
    case ExecEvent::Type::kNodeStart: return ProgressEvent::Type::kNodeStart;
    case ExecEvent::Type::kProgress: return ProgressEvent::Type::kProgress;
    case ExecEvent::Type::kNodeDone: return ProgressEvent::Type::kNodeDone;
    case ExecEvent::Type::kError: return ProgressEvent::Type::kError;
    case ExecEvent::Type::kInterrupted: return ProgressEvent::Type::kInterrupted;
    case ExecEvent::Type::kSuccess: return ProgressEvent::Type::kSuccess;
  }
  return ProgressEvent::Type::kStart;
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, "cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool has_png_signature(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char sig[8] = {};
  in.read(sig, 8);
  return in.gcount() == 8 && std::string(sig, 8) == std::string("\x89PNG\r\n\x1a\n", 8);
}

}  // namespace

class Engine::Impl {
 public:
  explicit Impl(const EngineOptions& options)
      : options_(options), memory_(options.memory), ladder_(memory_), folders_(options.models_dir) {
    nodes::register_builtin_nodes(registry_);
    executor_ = std::make_unique<Executor>(registry_, to_cache_mode(options.memory.cache),
                                           options.memory.cache_lru_size > 0 ? options.memory.cache_lru_size : 64);
    paths_.models = options.models_dir;
    paths_.input = options.input_dir;
    paths_.output = options.output_dir;
    paths_.temp = options.temp_dir;
    paths_.clip_vocab_dir = options.clip_vocab_dir;
    settings_.disable_metadata = options.disable_metadata;
    services_.provide(&paths_);
    services_.provide(&settings_);
    services_.provide(&recorder_);
    services_.provide(&memory_);
    services_.provide(&folders_);
  }

  WorkflowHandle load(const fs::path& path) const {
    WorkflowHandle handle;
    handle.impl().label = path.string();
    handle.impl().registry = &registry_;
    if (!fs::exists(path)) throw Error(ErrorKind::kUsage, "workflow file not found: " + path.string());
    if (has_png_signature(path)) {
      handle.impl().workflow = load_workflow_from_png_chunks(read_png_text_file(path), registry_, path.string());
    } else {
      handle.impl().workflow = load_workflow_json(read_text_file(path), registry_, path.string());
    }
    return handle;
  }

  WorkflowHandle parse(const std::string& text, const std::string& label) const {
    WorkflowHandle handle;
    handle.impl().label = label;
    handle.impl().registry = &registry_;
    handle.impl().workflow = load_workflow_json(text, registry_, label);
    return handle;
  }

  ValidationOptions validation_options(bool strict) const {
    ValidationOptions v;
    v.strict = strict;
    v.services = &services_;
    // Model folders list model files; nodes reading the input folder (LoadImage, LoadLatent)
    // check their own files in Node::validate, so strict mode has nothing to add for them.
    v.list_files = [this](const std::string& folder) -> std::vector<std::string> {
      if (folder == "vae") return vae_loader_names(folders_);  // VAELoader adds the TAESD names
      if (ModelFolders::is_known_kind(folder)) return folders_.list(folder);
      return {};
    };
    v.skip_list_check = [](const std::string& folder) { return !ModelFolders::is_known_kind(folder); };
    return v;
  }

  ValidationResult validate(const WorkflowHandle& wf, bool strict) const {
    ValidationReport report = validate_workflow(wf.impl().workflow, registry_, validation_options(strict));
    ValidationResult result;
    result.ok = report.ok();
    for (const auto& issue : report.issues)
      result.problems.push_back({issue.kind, issue.node_id, issue.class_type, issue.input, issue.message});
    return result;
  }

  RunResult run(const WorkflowHandle& wf, const ProgressCallback& on_progress) {
    cancel_.reset();
    recorder_.take();
    const Workflow& workflow = wf.impl().workflow;
    nlohmann::json prompt = workflow.to_api_json();
    nlohmann::json extra = nlohmann::json::object();
    if (workflow.ui_graph) extra["workflow"] = *workflow.ui_graph;

    RunResult result;
    std::map<std::string, NodeReport> reports;
    auto sink = [&](const ExecEvent& e) {
      if (e.type == ExecEvent::Type::kNodeStart) {
        memory_.begin_node();
        reset_peak_rss();
        ladder_.take_rungs();
      }
      if (e.type == ExecEvent::Type::kNodeDone || e.type == ExecEvent::Type::kCached) {
        NodeReport r;
        r.node_id = e.node_id;
        r.class_type = e.class_type;
        r.cached = e.type == ExecEvent::Type::kCached;
        r.seconds = e.seconds;
        if (!r.cached) {
          MemoryStats s = memory_.end_node();
          r.peak_vram_allocated = memory_.device().is_cuda() ? s.peak_allocated : 0;
          r.peak_vram_reserved = memory_.device().is_cuda() ? s.peak_reserved : 0;
          r.peak_host_rss = host_memory().peak_rss;
          MemoryActivity a = memory_.take_activity();
          r.bytes_loaded = a.bytes_loaded;
          r.bytes_streamed = a.bytes_streamed;
          r.models_loaded = std::move(a.models_loaded);
          r.models_evicted = std::move(a.models_evicted);
          r.oom_recovery = ladder_.take_rungs();
        }
        result.nodes.push_back(r);
      }
      if (on_progress) {
        ProgressEvent p;
        p.type = to_public(e.type);
        p.node_id = e.node_id;
        p.class_type = e.class_type;
        p.value = e.value;
        p.max = e.max;
        p.seconds = e.seconds;
        p.message = e.message;
        on_progress(p);
      }
    };

    RunContext ctx;
    ctx.services = &services_;
    ctx.cancel = &cancel_;
    ctx.on_event = sink;
    ctx.prompt = &prompt;
    ctx.extra_pnginfo = extra.empty() ? nullptr : &extra;
    // A run checks files too, so a missing model or image fails before anything starts.
    ValidationOptions vopts = validation_options(/*strict=*/true);
    ctx.validation = &vopts;
    ctx.recovery = &ladder_;

    const auto t0 = std::chrono::steady_clock::now();
    try {
      executor_->run(workflow, ctx);
    } catch (...) {
      if (options_.memory.disable_smart_memory) memory_.unload_all();
      throw;
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (auto& f : recorder_.take())
      (f.kind == "latent" ? result.latents : result.images).push_back({f.node_id, f.path, f.subfolder, f.type});
    if (options_.memory.disable_smart_memory) memory_.unload_all();
    return result;
  }

  void cancel() { cancel_.request(); }

  MemoryPlan plan(const WorkflowHandle& wf, const PlanOptions& options) const {
    ValidationReport report =
        validate_workflow(wf.impl().workflow, registry_, validation_options(/*strict=*/true));
    if (!report.ok()) throw ValidationFailed(std::move(report));
    const ExecutionPlan order = plan_execution(report.normalized, report.outputs);
    PlanEnvironment env;
    env.registry = &registry_;
    env.folders = &folders_;
    env.paths = &paths_;
    env.options = options_.memory;
    if (memory_.device().is_cuda()) {
      env.caps = memory_.caps();
      env.device_name = memory_.device().name();
      env.total_vram = memory_.device().stats().total;
    } else if (options_.memory.vram == VramMode::kCpu) {
      env.device_name = "cpu (--cpu): nothing runs on a GPU";
    } else {
      // No GPU here: plan for the kind the workflow will run on.
      env.caps = {true, options.assume_compute_capability};
      env.device_name =
          "assumed CUDA GPU (compute capability " + std::to_string(options.assume_compute_capability) + ")";
    }
    return plan_memory(report.normalized, order.order, env, options);
  }

  std::string schemas_json() const {
    nlohmann::json out = nlohmann::json::object();
    for (const NodeSchema* s : registry_.schemas()) out[s->class_type] = s->to_object_info();
    return out.dump(2);
  }

  MemoryStats memory_stats() const { return memory_.stats(); }

 private:
  EngineOptions options_;
  NodeRegistry registry_;
  MemoryManager memory_;
  OomLadder ladder_;
  ModelFolders folders_;
  nodes::EnginePaths paths_;
  nodes::NodeSettings settings_;
  nodes::OutputRecorder recorder_;
  Services services_;
  CancelToken cancel_;
  std::unique_ptr<Executor> executor_;
};

std::unique_ptr<Engine> Engine::create(const EngineOptions& options) {
  return std::unique_ptr<Engine>(new Engine(std::make_unique<Impl>(options)));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

WorkflowHandle Engine::load_workflow(const std::string& path) const { return impl_->load(path); }
WorkflowHandle Engine::parse_workflow(const std::string& text, const std::string& label) const {
  return impl_->parse(text, label);
}
ValidationResult Engine::validate(const WorkflowHandle& wf, bool strict) const { return impl_->validate(wf, strict); }
RunResult Engine::run(const WorkflowHandle& wf, const ProgressCallback& cb) { return impl_->run(wf, cb); }
void Engine::cancel() { impl_->cancel(); }
MemoryPlan Engine::plan(const WorkflowHandle& wf, const PlanOptions& options) const {
  return impl_->plan(wf, options);
}
std::string Engine::node_schemas_json() const { return impl_->schemas_json(); }
MemoryStats Engine::memory_stats() const { return impl_->memory_stats(); }

}  // namespace sdflow
