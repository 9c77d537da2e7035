// A small harness for running one built-in node outside the executor: a registry with the
// built-in nodes, services with folders in a fresh temporary directory, and a NodeContext.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "core/cancel.h"
#include "nodeapi/node.h"
#include "nodeapi/registry.h"
#include "nodes/builtin.h"
#include "nodes/services.h"
#include "nodes/values.h"

namespace sdflow::nodes::testing {

class NodeHarness {
 public:
  NodeHarness() {
    std::random_device rd;
    root_ = std::filesystem::temp_directory_path() / ("sdflow_nodes_test_" + std::to_string(rd()));
    paths_.models = root_ / "models";
    paths_.input = root_ / "input";
    paths_.output = root_ / "output";
    paths_.temp = root_ / "temp";
    for (const auto* p : {&paths_.models, &paths_.input, &paths_.output, &paths_.temp})
      std::filesystem::create_directories(*p);
    services_.provide(&paths_);
    services_.provide(&settings_);
    services_.provide(&recorder_);
    register_builtin_nodes(registry_);
  }
  ~NodeHarness() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  NodeHarness(const NodeHarness&) = delete;
  NodeHarness& operator=(const NodeHarness&) = delete;

  // Runs class_type once with these inputs; prompt/extra are the hidden inputs.
  ValueList run(const std::string& class_type, const NodeInputs& inputs,
                const nlohmann::json* prompt = nullptr, const nlohmann::json* extra = nullptr) {
    std::unique_ptr<Node> node = registry_.create(class_type);
    if (!node) throw std::runtime_error("no runnable node " + class_type);
    NodeContext ctx("7", class_type, cancel_, services_, nullptr, prompt, extra);
    return node->run(ctx, inputs);
  }

  const NodeRegistry& registry() const { return registry_; }
  const Services& services() const { return services_; }
  const EnginePaths& paths() const { return paths_; }
  NodeSettings& settings() { return settings_; }
  OutputRecorder& recorder() { return recorder_; }

 private:
  std::filesystem::path root_;
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

inline Value latent(at::Tensor samples) {
  LatentValue l;
  l.samples = std::move(samples);
  return make_latent(std::move(l));
}

}  // namespace sdflow::nodes::testing
