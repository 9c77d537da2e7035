#include "cli/commands.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "models/loader/make_checkpoint.h"
#include "models/loader/state_dict.h"
#include "models/lora/make_lora.h"

namespace sdflow::cli {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Ctrl-C asks the running engine to stop at the next node or step; a second Ctrl-C kills.
Engine* g_running_engine = nullptr;
void on_sigint(int) {
  if (g_running_engine) g_running_engine->cancel();
  std::signal(SIGINT, SIG_DFL);
}

class SigintScope {
 public:
  explicit SigintScope(Engine& engine) {
    g_running_engine = &engine;
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &previous_);
  }
  ~SigintScope() {
    sigaction(SIGINT, &previous_, nullptr);
    g_running_engine = nullptr;
  }

 private:
  struct sigaction previous_ {};
};

std::string fmt_bytes(int64_t b) {
  char buf[32];
  if (b >= (int64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(int64_t{1} << 30));
  else if (b >= (int64_t{1} << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(int64_t{1} << 20));
  else std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(b));
  return buf;
}

// Progress on a terminal: one line per node, a bar for steps inside a node.
class TerminalProgress {
 public:
  void operator()(const ProgressEvent& e) {
    const bool tty = isatty(STDERR_FILENO);
    switch (e.type) {
      case ProgressEvent::Type::kNodeStart:
        log::debug("[{} #{}] running", e.class_type, e.node_id);
        break;
      case ProgressEvent::Type::kProgress:
        if (tty && e.max > 0) {
          const int width = 30;
          const int filled = static_cast<int>(width * e.value / e.max);
          std::fprintf(stderr, "\r[%s #%s] %s%s %lld/%lld", e.class_type.c_str(), e.node_id.c_str(),
                       std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                       static_cast<long long>(e.value), static_cast<long long>(e.max));
          if (e.value >= e.max) std::fprintf(stderr, "\n");
        }
        break;
      case ProgressEvent::Type::kNodeDone:
        log::info("[{} #{}] done in {:.3f} s", e.class_type, e.node_id, e.seconds);
        break;
      case ProgressEvent::Type::kCached:
        log::debug("[{} #{}] cached", e.class_type, e.node_id);
        break;
      default:
        break;
    }
  }
};

// `elapsed`: seconds since the run started, so a reader can time steps without trusting the
// pipe's delivery (bench/run_bench.py computes ms/step from it).
nlohmann::json event_json(const ProgressEvent& e, double elapsed) {
  nlohmann::json j = {{"event", to_string(e.type)}, {"elapsed", elapsed}};
  if (!e.node_id.empty()) j["node"] = e.node_id;
  if (!e.class_type.empty()) j["class_type"] = e.class_type;
  if (e.type == ProgressEvent::Type::kProgress) {
    j["value"] = e.value;
    j["max"] = e.max;
  }
  if (e.seconds > 0) j["seconds"] = e.seconds;
  if (!e.message.empty()) j["message"] = e.message;
  return j;
}

void write_report(const std::string& path, const RunResult* result, const std::string& error,
                  const Engine& engine) {
  nlohmann::json nodes = nlohmann::json::array();
  if (result) {
    for (const auto& n : result->nodes)
      nodes.push_back({{"node", n.node_id},
                       {"class_type", n.class_type},
                       {"cached", n.cached},
                       {"seconds", n.seconds},
                       {"peak_vram_allocated", n.peak_vram_allocated},
                       {"peak_vram_reserved", n.peak_vram_reserved},
                       {"peak_host_rss", n.peak_host_rss},
                       {"bytes_loaded", n.bytes_loaded},
                       {"bytes_streamed", n.bytes_streamed},
                       {"models_loaded", n.models_loaded},
                       {"models_evicted", n.models_evicted},
                       {"oom_recovery", n.oom_recovery}});
  }
  MemoryStats m = engine.memory_stats();
  nlohmann::json report = {{"ok", error.empty()},
                           {"device", m.device},
                           {"seconds", result ? result->seconds : 0.0},
                           {"nodes", nodes}};
  if (!error.empty()) report["error"] = error;
  if (result) {
    nlohmann::json images = nlohmann::json::array();
    for (const auto& img : result->images) images.push_back({{"node", img.node_id}, {"path", img.path}, {"type", img.type}});
    report["images"] = images;
  }
  const std::string text = report.dump(2) + "\n";
  write_file_atomic(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

void print_node_table(const RunResult& r) {
  std::fprintf(stderr, "%-8s %-26s %9s %11s %11s %11s %10s  %s\n", "node", "class_type", "seconds",
               "VRAM peak", "reserved", "RSS peak", "streamed", "loaded/evicted");
  for (const auto& n : r.nodes) {
    if (n.cached) {
      std::fprintf(stderr, "%-8s %-26s %9s\n", n.node_id.c_str(), n.class_type.c_str(), "cached");
      continue;
    }
    std::string models;
    for (const auto& m : n.models_loaded) models += "+" + m + " ";
    for (const auto& m : n.models_evicted) models += "-" + m + " ";
    for (const auto& m : n.oom_recovery) models += "oom:" + m + " ";
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.3f", n.seconds);
    std::fprintf(stderr, "%-8s %-26s %9s %11s %11s %11s %10s  %s\n", n.node_id.c_str(), n.class_type.c_str(),
                 secs, fmt_bytes(n.peak_vram_allocated).c_str(), fmt_bytes(n.peak_vram_reserved).c_str(),
                 fmt_bytes(n.peak_host_rss).c_str(), fmt_bytes(n.bytes_streamed).c_str(), models.c_str());
  }
}

}  // namespace

int command_run(const CommonOptions& common, const RunArgs& args) {
  auto engine = Engine::create(common.engine);
  WorkflowHandle wf = engine->load_workflow(args.workflow);
  for (const auto& s : args.sets) wf.set(s);

  ProgressCallback progress;
  TerminalProgress terminal;
  if (args.json_progress) {
    const auto start = std::chrono::steady_clock::now();
    progress = [start](const ProgressEvent& e) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cout << event_json(e, elapsed).dump() << std::endl;
    };
  } else if (!common.quiet) {
    progress = [&terminal](const ProgressEvent& e) { terminal(e); };
  }

  SigintScope sigint(*engine);
  try {
    RunResult result = engine->run(wf, progress);
    if (!args.json_progress) {
      for (const auto& img : result.images) std::cout << img.path << "\n";
      if (!common.quiet) print_node_table(result);
    }
    if (!args.report.empty()) write_report(args.report, &result, "", *engine);
    return kExitOk;
  } catch (const Error& e) {
    if (!args.report.empty()) write_report(args.report, nullptr, e.what(), *engine);
    if (e.kind() == ErrorKind::kCancelled) {
      log::error("interrupted");
      return kExitFailed;
    }
    throw;
  }
}

int command_validate(const CommonOptions& common, const ValidateArgs& args) {
  auto engine = Engine::create(common.engine);
  WorkflowHandle wf = engine->load_workflow(args.workflow);
  for (const auto& s : args.sets) wf.set(s);
  ValidationResult v = engine->validate(wf, args.strict);
  if (args.json) {
    nlohmann::json problems = nlohmann::json::array();
    for (const auto& p : v.problems)
      problems.push_back({{"kind", p.kind},
                          {"node_id", p.node_id},
                          {"class_type", p.class_type},
                          {"input", p.input},
                          {"message", p.message}});
    std::cout << nlohmann::json({{"ok", v.ok}, {"problems", problems}}).dump(2) << "\n";
  } else if (v.ok) {
    std::cout << args.workflow << ": ok\n";
  } else {
    std::cerr << v.text();
  }
  return v.ok ? kExitOk : kExitUsage;
}

namespace {

nlohmann::json plan_json(const MemoryPlan& p) {
  nlohmann::json models = nlohmann::json::array();
  for (const auto& m : p.models)
    models.push_back({{"id", m.id},
                      {"file", m.file},
                      {"dtype", m.dtype},
                      {"bytes", m.bytes},
                      {"largest_block_bytes", m.largest_block_bytes},
                      {"text_encoder", m.text_encoder}});
  nlohmann::json nodes = nlohmann::json::array();
  for (size_t i = 0; i < p.nodes.size(); ++i) {
    const PlannedNode& n = p.nodes[i];
    nlohmann::json need = nlohmann::json::object();
    for (const auto& m : p.modes) need[m.flags] = m.node_need_bytes.at(i);
    nodes.push_back({{"node", n.node_id},
                     {"class_type", n.class_type},
                     {"models", n.models},
                     {"shape", n.shape},
                     {"weight_bytes", n.weight_bytes},
                     {"activation_bytes", n.activation_bytes},
                     {"min_activation_bytes", n.min_activation_bytes},
                     {"tiled_activation_bytes", n.tiled_activation_bytes},
                     {"need_bytes", need},
                     {"note", n.note}});
  }
  nlohmann::json modes = nlohmann::json::array();
  for (const auto& m : p.modes)
    modes.push_back({{"flags", m.flags},
                     {"need_bytes", m.need_bytes},
                     {"need_node", m.need_node},
                     {"fits", m.fits},
                     {"needs_tiling", m.needs_tiling}});
  return {{"device", p.device},
          {"total_vram", p.total_vram},
          {"budget_bytes", p.budget_bytes},
          {"budget_source", p.budget_source},
          {"models", models},
          {"nodes", nodes},
          {"modes", modes},
          {"advice", p.advice}};
}

void print_plan(const MemoryPlan& p) {
  std::printf("device: %s\n", p.device.c_str());
  if (p.budget_bytes > 0)
    std::printf("budget: %s (%s)\n", fmt_bytes(p.budget_bytes).c_str(), p.budget_source.c_str());
  std::printf("\nmodels:\n");
  for (const auto& m : p.models)
    std::printf("  %-14s %-10s %11s  largest block %10s  %s\n", m.id.c_str(), m.dtype.c_str(),
                fmt_bytes(m.bytes).c_str(), fmt_bytes(m.largest_block_bytes).c_str(), m.file.c_str());
  std::printf("\n%-6s %-22s %-24s %10s %10s %10s %10s", "node", "class_type", "works on", "weights", "act.",
              "act. min", "tiled");
  for (const auto& m : p.modes) std::printf(" %12s", m.flags.c_str());
  std::printf("\n");
  for (size_t i = 0; i < p.nodes.size(); ++i) {
    const PlannedNode& n = p.nodes[i];
    std::printf("%-6s %-22s %-24s %10s %10s %10s %10s", n.node_id.c_str(), n.class_type.c_str(),
                (n.shape.empty() ? n.note : n.shape).c_str(), fmt_bytes(n.weight_bytes).c_str(),
                fmt_bytes(n.activation_bytes).c_str(), fmt_bytes(n.min_activation_bytes).c_str(),
                n.tiled_activation_bytes ? fmt_bytes(n.tiled_activation_bytes).c_str() : "-");
    for (const auto& m : p.modes) std::printf(" %12s", fmt_bytes(m.node_need_bytes.at(i)).c_str());
    std::printf("\n");
  }
  std::printf("\n");
  for (const auto& m : p.modes)
    std::printf("%-12s needs %10s at %-22s %s\n", m.flags.c_str(), fmt_bytes(m.need_bytes).c_str(),
                m.need_node.c_str(),
                p.budget_bytes <= 0 ? ""
                : m.fits            ? "fits"
                                    : "does not fit");
  std::printf("\n");
  for (const auto& a : p.advice) std::printf("%s\n", a.c_str());
}

}  // namespace

int command_plan(const CommonOptions& common, const PlanArgs& args) {
  EngineOptions opts = common.engine;
  PlanOptions plan_options;
  plan_options.assume_compute_capability = args.assume_cc;
  // The budget is what to plan for, not a cap to put on this process's allocator.
  if (opts.memory.vram_budget_gb) {
    if (*opts.memory.vram_budget_gb <= 0) throw Error(ErrorKind::kUsage, "--vram-budget must be > 0");
    plan_options.budget_gb = *opts.memory.vram_budget_gb;
    opts.memory.vram_budget_gb.reset();
  }
  auto engine = Engine::create(opts);
  WorkflowHandle wf = engine->load_workflow(args.workflow);
  for (const auto& s : args.sets) wf.set(s);
  const MemoryPlan p = engine->plan(wf, plan_options);
  if (args.json)
    std::cout << plan_json(p).dump(2) << "\n";
  else
    print_plan(p);
  return kExitOk;
}

int command_nodes(const CommonOptions& common, const NodesArgs& args) {
  EngineOptions opts = common.engine;
  opts.memory.vram = VramMode::kCpu;  // listing schemas needs no GPU
  auto engine = Engine::create(opts);
  const nlohmann::json schemas = nlohmann::json::parse(engine->node_schemas_json());
  if (args.json) {
    std::cout << schemas.dump(2) << "\n";
    return kExitOk;
  }
  for (const auto& [name, s] : schemas.items()) {
    std::cout << name;
    if (!s.value("sdflow_runnable", true)) std::cout << "  (validate only: needs model support)";
    std::cout << "\n";
  }
  return kExitOk;
}

int command_info(const CommonOptions& common, const InfoArgs& args) {
  auto file = SafetensorsFile::open(args.file);
  nlohmann::json d = describe_safetensors(*file);
  if (args.json) {
    if (!args.list_tensors) d.erase("tensors");
    std::cout << d.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "file:    " << args.file << "\n"
            << "tensors: " << d.value("tensor_count", 0) << "\n"
            << "bytes:   " << fmt_bytes(d.value("total_bytes", int64_t{0})) << "\n";
  for (const auto& [dtype, count] : d["dtypes"].items()) std::cout << "  " << dtype << ": " << count << "\n";
  if (d.contains("metadata") && !d["metadata"].empty()) {
    std::cout << "metadata:\n";
    for (const auto& [k, v] : d["metadata"].items()) {
      std::string s = v.is_string() ? v.get<std::string>() : v.dump();
      if (s.size() > 200) s = s.substr(0, 200) + "...";
      std::cout << "  " << k << ": " << s << "\n";
    }
  }
  if (args.list_tensors)
    for (const auto& t : d["tensors"]) std::cout << "  " << t["name"].get<std::string>() << " " << t["dtype"].get<std::string>() << " " << t["shape"].dump() << "\n";
  return kExitOk;
}

int command_make_checkpoint(const CommonOptions& common, const MakeCheckpointArgs& args) {
  CheckpointRecipe recipe;
  recipe.arch = args.arch;
  recipe.tiny = args.tiny;
  recipe.seed = args.seed;
  if (args.dtype == "fp16") recipe.dtype = at::kHalf;
  else if (args.dtype == "fp32") recipe.dtype = at::kFloat;
  else if (args.dtype == "bf16") recipe.dtype = at::kBFloat16;
  else throw Error(ErrorKind::kUsage, "make-checkpoint: --dtype must be fp16, bf16 or fp32");
  if (args.split) {
    const std::string name = args.name.empty() ? args.arch + (args.tiny ? "-tiny" : "") : args.name;
    for (const std::string& path : write_random_split(recipe, args.out, name)) std::cout << path << "\n";
    return kExitOk;
  }
  if (!args.name.empty()) throw Error(ErrorKind::kUsage, "make-checkpoint: --name goes with --split");
  write_random_checkpoint(recipe, args.out);
  std::cout << args.out << "\n";
  return kExitOk;
}

int command_make_lora(const CommonOptions& common, const MakeLoraArgs& args) {
  (void)common;
  LoraRecipe recipe;
  recipe.rank = args.rank;
  recipe.seed = args.seed;
  recipe.format = args.format;
  if (args.alpha < 0) throw Error(ErrorKind::kUsage, "make-lora: --alpha must be positive");
  if (args.alpha > 0) recipe.alpha = args.alpha;
  write_random_lora(StateDict::open(args.checkpoint), recipe, args.out);
  std::cout << args.out << "\n";
  return kExitOk;
}

}  // namespace sdflow::cli
