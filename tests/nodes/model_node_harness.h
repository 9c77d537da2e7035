// Runs loader / text / VAE nodes outside the executor with the services they need: a CPU memory
// manager, model folders in a fresh temporary directory, and the real CLIP vocabulary from
// SDFLOW_SHARED_DIR/data/clip-tokenizer (tests skip without it). Tiny random checkpoints come
// from make_random_checkpoint (the layout `sdflow make-checkpoint --tiny` writes).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "core/cancel.h"
#include "io/model_folders.h"
#include "io/safetensors_torch.h"
#include "memory/memory_manager.h"
#include "models/loader/make_checkpoint.h"
#include "nodeapi/node.h"
#include "nodeapi/registry.h"
#include "nodes/builtin.h"
#include "nodes/services.h"
#include "nodes/values.h"

namespace sdflow::nodes::testing {

inline std::filesystem::path shared_clip_vocab() {
  return std::filesystem::path(SDFLOW_SHARED_DIR) / "data" / "clip-tokenizer";
}
inline bool have_clip_vocab() {
  return std::filesystem::is_regular_file(shared_clip_vocab() / "vocab.json") &&
         std::filesystem::is_regular_file(shared_clip_vocab() / "merges.txt");
}

#define SDFLOW_REQUIRE_SHARED_VOCAB()                                 \
  if (!::sdflow::nodes::testing::have_clip_vocab())                   \
  GTEST_SKIP() << "CLIP vocab (vocab.json, merges.txt) not found in " \
               << ::sdflow::nodes::testing::shared_clip_vocab() << "; it is not part of the repository"

inline MemoryOptions cpu_options() {
  MemoryOptions o;
  o.vram = VramMode::kCpu;
  return o;
}

class ModelNodeHarness {
 public:
  ModelNodeHarness() : ModelNodeHarness(cpu_options(), nullptr) {}
  // A memory manager on `device` (a test's fake device) instead of the CPU.
  ModelNodeHarness(const MemoryOptions& options, std::unique_ptr<ComputeDevice> device)
      : memory_(device ? MemoryManager(options, std::move(device)) : MemoryManager(options)),
        folders_(make_root() / "models") {
    paths_.models = root_ / "models";
    paths_.input = root_ / "input";
    paths_.output = root_ / "output";
    paths_.temp = root_ / "temp";
    paths_.clip_vocab_dir = have_clip_vocab() ? shared_clip_vocab().string() : "";
    for (const auto* p : {&paths_.models, &paths_.input, &paths_.output, &paths_.temp})
      std::filesystem::create_directories(*p);
    services_.provide(&paths_);
    services_.provide(&settings_);
    services_.provide(&recorder_);
    services_.provide(&memory_);
    services_.provide(&folders_);
    register_builtin_nodes(registry_);
  }
  ~ModelNodeHarness() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  ModelNodeHarness(const ModelNodeHarness&) = delete;
  ModelNodeHarness& operator=(const ModelNodeHarness&) = delete;

  ValueList run(const std::string& class_type, const NodeInputs& inputs) {
    std::unique_ptr<Node> node = registry_.create(class_type);
    if (!node) throw std::runtime_error("no runnable node " + class_type);
    NodeContext ctx("7", class_type, cancel_, services_, on_progress, nullptr, nullptr);
    return node->run(ctx, inputs);
  }

  // Writes a tiny random checkpoint into models/checkpoints; returns its name.
  std::string write_checkpoint(const std::string& name, const std::string& arch, uint64_t seed = 1,
                               at::ScalarType dtype = at::kFloat) {
    CheckpointRecipe r;
    r.arch = arch;
    r.tiny = true;
    r.seed = seed;
    r.dtype = dtype;
    auto dir = paths_.models / "checkpoints";
    std::filesystem::create_directories(dir);
    write_random_checkpoint(r, (dir / name).string());
    return name;
  }
  // Writes tensors as a safetensors file under models/<sub>.
  std::filesystem::path write_file(const std::string& sub, const std::map<std::string, at::Tensor>& tensors,
                                   const std::map<std::string, std::string>& metadata = {}) {
    auto path = paths_.models / sub;
    std::filesystem::create_directories(path.parent_path());
    save_safetensors(path.string(), {tensors.begin(), tensors.end()}, metadata);
    return path;
  }

  MemoryManager& memory() { return memory_; }
  const EnginePaths& paths() const { return paths_; }
  const Services& services() const { return services_; }
  CancelToken& cancel() { return cancel_; }
  std::function<void(const ProgressUpdate&)> on_progress;

 private:
  const std::filesystem::path& make_root() {
    std::random_device rd;
    root_ = std::filesystem::temp_directory_path() / ("sdflow_model_nodes_" + std::to_string(rd()));
    return root_;
  }

  std::filesystem::path root_;
  MemoryManager memory_;
  ModelFolders folders_;
  EnginePaths paths_;
  NodeSettings settings_;
  OutputRecorder recorder_;
  Services services_;
  CancelToken cancel_;
  NodeRegistry registry_;
};

inline Value prim(nlohmann::json v) { return Value::primitive(std::move(v)); }

inline NodeInputs inputs(std::initializer_list<std::pair<const char*, Value>> items) {
  NodeInputs in;
  for (const auto& [k, v] : items) in.set(k, v);
  return in;
}

}  // namespace sdflow::nodes::testing
