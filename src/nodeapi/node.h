// The contract between the executor and a node implementation. Torch-free: node bodies in
// nodes/ use torch, but the executor only sees schemas, Values and this interface.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <typeindex>
#include <unordered_map>
#include <vector>

#include "core/cancel.h"
#include "nodeapi/value.h"

namespace sdflow {

// Engine services a node may use (paths, memory manager, options), looked up by type so the
// executor need not know them. Owned by the Engine; the executor only passes it along.
class Services {
 public:
  template <typename T>
  void provide(T* service) {
    map_[std::type_index(typeid(T))] = service;
  }
  template <typename T>
  T* find() const {
    auto it = map_.find(std::type_index(typeid(T)));
    return it == map_.end() ? nullptr : static_cast<T*>(it->second);
  }
  // Throws Error(kRuntime) when the engine did not provide T.
  template <typename T>
  T& get() const {
    T* s = find<T>();
    if (!s) throw_missing(typeid(T).name());
    return *s;
  }

 private:
  [[noreturn]] static void throw_missing(const char* name);
  std::unordered_map<std::type_index, void*> map_;
};

// The inputs of one node invocation: links resolved to upstream Values, constants as
// primitives, optional inputs that were not given are absent.
class NodeInputs {
 public:
  void set(const std::string& name, Value value) { values_[name] = std::move(value); }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  // Throws Error(kRuntime) naming the input when it is absent.
  const Value& at(const std::string& name) const;
  const std::map<std::string, Value>& all() const { return values_; }

 private:
  std::map<std::string, Value> values_;
};

struct ProgressUpdate {
  int64_t value = 0;
  int64_t max = 0;
};

// What a running node can see and do besides its inputs.
class NodeContext {
 public:
  NodeContext(std::string node_id, std::string class_type, const CancelToken& cancel,
              const Services& services, std::function<void(const ProgressUpdate&)> on_progress,
              const nlohmann::json* prompt, const nlohmann::json* extra_pnginfo)
      : node_id_(std::move(node_id)),
        class_type_(std::move(class_type)),
        cancel_(cancel),
        services_(services),
        on_progress_(std::move(on_progress)),
        prompt_(prompt),
        extra_pnginfo_(extra_pnginfo) {}

  const std::string& node_id() const { return node_id_; }
  const std::string& class_type() const { return class_type_; }
  const Services& services() const { return services_; }
  // Long nodes call this between steps/layers; throws Error(kCancelled).
  void check_cancelled() const { cancel_.throw_if_cancelled(); }
  void progress(int64_t value, int64_t max) const {
    if (on_progress_) on_progress_({value, max});
  }
  // Hidden inputs, as ComfyUI passes them (PROMPT, EXTRA_PNGINFO); null when absent.
  const nlohmann::json* prompt() const { return prompt_; }
  const nlohmann::json* extra_pnginfo() const { return extra_pnginfo_; }
  // "[KSampler #3] " — the prefix every node error message starts with.
  std::string where() const { return "[" + class_type_ + " #" + node_id_ + "] "; }

 private:
  std::string node_id_;
  std::string class_type_;
  const CancelToken& cancel_;
  const Services& services_;
  std::function<void(const ProgressUpdate&)> on_progress_;
  const nlohmann::json* prompt_;
  const nlohmann::json* extra_pnginfo_;
};

// Read-only context for validation-time checks that need the environment (files exist).
struct ValidationEnv {
  const Services* services = nullptr;
  bool strict = false;  // check model files exist
};

class Node {
 public:
  virtual ~Node() = default;
  // One output Value per schema output, in order.
  virtual ValueList run(NodeContext& ctx, const NodeInputs& inputs) = 0;
  // ComfyUI's IS_CHANGED: a fingerprint of external state the constant inputs do not show
  // (e.g. an input image's hash). Empty = depends only on inputs.
  virtual std::string fingerprint(const Services& services, const nlohmann::json& constants) const { return ""; }
  // ComfyUI's VALIDATE_INPUTS for constant inputs: messages keyed by input name.
  virtual std::vector<std::pair<std::string, std::string>> validate(const ValidationEnv& env,
                                                                    const nlohmann::json& constants) const {
    return {};
  }
};

}  // namespace sdflow
