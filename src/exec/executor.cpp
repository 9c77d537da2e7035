#include "exec/executor.h"

#include <algorithm>
#include <chrono>
#include <new>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/log.h"
#include "graph/plan.h"

namespace sdflow {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

const Services& no_services() {
  static const Services kNone;
  return kNone;
}

const CancelToken& never_cancelled() {
  static const CancelToken kNever;
  return kNever;
}

std::string with_prefix(const std::string& where, const std::string& message) {
  // A nested engine call may already have said where (inner node, sub-workflow).
  if (!message.empty() && message.front() == '[') return message;
  return where + message;
}

// The constant (non-link) inputs a node declares, as Node::fingerprint and validate see them.
nlohmann::json declared_constants(const WorkflowNode& node, const NodeSchema& schema) {
  nlohmann::json out = nlohmann::json::object();
  for (const InputSpec& spec : schema.inputs) {
    auto it = node.inputs.find(spec.name);
    if (it != node.inputs.end() && !looks_like_link(*it)) out[spec.name] = *it;
  }
  return out;
}

class Emitter {
 public:
  explicit Emitter(const EventSink& sink) : sink_(sink) {}
  void operator()(ExecEvent::Type type, const WorkflowNode* node = nullptr, double seconds = 0,
                  std::string message = {}) const {
    if (!sink_) return;
    ExecEvent e;
    e.type = type;
    if (node) {
      e.node_id = node->id;
      e.class_type = node->class_type;
    }
    e.seconds = seconds;
    e.message = std::move(message);
    sink_(e);
  }

 private:
  const EventSink& sink_;
};

}  // namespace

size_t RunSummary::executed_count() const {
  size_t n = 0;
  for (const auto& r : nodes) n += r.cached ? 0 : 1;
  return n;
}

size_t RunSummary::cached_count() const { return nodes.size() - executed_count(); }

Executor::Executor(const NodeRegistry& registry, CacheMode mode, size_t lru_capacity)
    : registry_(registry), cache_(mode, lru_capacity) {}

Executor::~Executor() = default;

Node* Executor::instance(const std::string& node_id, const std::string& class_type) {
  auto key = std::make_pair(node_id, class_type);
  auto it = instances_.find(key);
  if (it != instances_.end()) return it->second.get();
  std::unique_ptr<Node> node = registry_.create(class_type);
  if (!node) return nullptr;
  return instances_.emplace(std::move(key), std::move(node)).first->second.get();
}

void Executor::drop_instances_not_in(const Workflow& workflow) {
  std::set<std::pair<std::string, std::string>> present;
  for (const auto& n : workflow.nodes) present.emplace(n.id, n.class_type);
  for (auto it = instances_.begin(); it != instances_.end();) {
    if (present.count(it->first))
      ++it;
    else
      it = instances_.erase(it);
  }
}

ValidationOptions Executor::validation_options(const RunContext& context, const Services& services) {
  ValidationOptions opts = context.validation ? *context.validation : ValidationOptions{};
  opts.services = &services;
  opts.require_runnable = true;
  opts.node_for = [this](const WorkflowNode& n) -> const Node* { return instance(n.id, n.class_type); };
  return opts;
}

ValidationReport Executor::validate(const Workflow& workflow, const ValidationOptions& options) {
  ValidationOptions opts = options;
  if (!opts.node_for)
    opts.node_for = [this](const WorkflowNode& n) -> const Node* { return instance(n.id, n.class_type); };
  return validate_workflow(workflow, registry_, opts);
}

std::string Executor::signature(const WorkflowNode& n, const NodeSchema& schema, const Services& services,
                                const std::unordered_map<std::string, std::string>& keys) {
  std::string fingerprint;
  try {
    if (Node* node = instance(n.id, n.class_type))
      fingerprint = node->fingerprint(services, declared_constants(n, schema));
  } catch (const std::exception& e) {
    // ComfyUI turns a failing IS_CHANGED into NaN, which never equals itself: always re-run.
    log::debug("[{} #{}] fingerprint failed ({}); the node will run", n.class_type, n.id, e.what());
    fingerprint = "\x01unstable#" + std::to_string(++unstable_counter_);
  }
  const auto& hidden = schema.hidden;
  bool by_id = schema.not_idempotent || std::find(hidden.begin(), hidden.end(), "UNIQUE_ID") != hidden.end();
  nlohmann::json inputs = nlohmann::json::array();
  for (const auto& [name, value] : n.inputs.items()) {  // sorted by name (std::map)
    if (!schema.find_input(name)) continue;             // ignored inputs must not change the key
    if (auto link = parse_link(value))
      inputs.push_back({name, {"ANCESTOR", keys.at(link->node_id), link->slot}});
    else
      inputs.push_back({name, value});
  }
  nlohmann::json sig = {n.class_type, fingerprint, by_id ? nlohmann::json(n.id) : nlohmann::json(), inputs};
  return hash128_hex(sig.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

ValueList Executor::run_node(const WorkflowNode& n, const NodeSchema& schema, const NodeInputs& inputs,
                             const RunContext& context, const Services& services, const CancelToken& cancel,
                             const nlohmann::json* prompt) {
  const EventSink& sink = context.on_event;
  auto on_progress = [&sink, &n](const ProgressUpdate& p) {
    if (!sink) return;
    ExecEvent e;
    e.type = ExecEvent::Type::kProgress;
    e.node_id = n.id;
    e.class_type = n.class_type;
    e.value = p.value;
    e.max = p.max;
    sink(e);
  };
  NodeContext ctx(n.id, n.class_type, cancel, services, on_progress, prompt, context.extra_pnginfo);
  const std::string where = ctx.where();
  NodeRecovery* recovery = context.recovery;
  ErrorKind kind = ErrorKind::kRuntime;
  std::string failure;
  ValueList result;
  for (int attempt = 1;; ++attempt) {
    std::string recoverable;  // the message of an error the recovery may help with
    try {
      Node* node = instance(n.id, n.class_type);
      if (!node) throw Error(ErrorKind::kRuntime, "no implementation is registered for " + n.class_type);
      result = node->run(ctx, inputs);
    } catch (const std::exception& e) {
      if (recovery && recovery->recoverable(e)) {
        recoverable = e.what();
      } else if (const auto* err = dynamic_cast<const Error*>(&e)) {
        kind = err->kind();
        failure = with_prefix(where, err->what());
      } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
        kind = ErrorKind::kOutOfMemory;
        failure = where + "out of memory";
      } else {
        failure = where + e.what();
      }
    }
    if (recoverable.empty()) break;
    // Outside the catch block: the node's stack, and the tensors on it, are gone by now.
    const NodeFailure f{n.id, n.class_type, attempt, recoverable};
    if (cancel.requested()) {
      kind = ErrorKind::kCancelled;
      failure = where + "interrupted by the user";
      break;
    }
    if (recovery->next(f)) continue;
    kind = ErrorKind::kOutOfMemory;
    failure = with_prefix(where, recovery->give_up(f));
    break;
  }
  if (recovery) recovery->node_finished(n.id);
  if (failure.empty() && result.size() != schema.outputs.size()) {
    failure = where + "internal error: the node returned " + std::to_string(result.size()) +
              " output(s), its schema declares " + std::to_string(schema.outputs.size());
  }
  if (!failure.empty()) {
    Emitter emit(sink);
    emit(kind == ErrorKind::kCancelled ? ExecEvent::Type::kInterrupted : ExecEvent::Type::kError, &n, 0,
         failure);
    throw Error(kind, failure);
  }
  return result;
}

RunSummary Executor::run(const Workflow& workflow, const RunContext& context) {
  const auto run_start = Clock::now();
  const Services& services = context.services ? *context.services : no_services();
  const CancelToken& cancel = context.cancel ? *context.cancel : never_cancelled();
  Emitter emit(context.on_event);

  ValidationReport report = validate_workflow(workflow, registry_, validation_options(context, services));
  if (!report.ok()) throw ValidationFailed(std::move(report));
  drop_instances_not_in(workflow);
  const Workflow& wf = report.normalized;
  const ExecutionPlan plan = plan_execution(wf, report.outputs);
  nlohmann::json own_prompt;
  const nlohmann::json* prompt = context.prompt;
  if (!prompt) {
    own_prompt = wf.to_api_json();
    prompt = &own_prompt;
  }

  struct Step {
    const WorkflowNode* node;
    const NodeSchema* schema;
    std::string key;
    std::vector<std::string> sources;  // distinct linked-from node ids
    bool cached = false;
    bool required = false;
  };
  std::vector<Step> steps;
  std::unordered_map<std::string, std::string> keys;
  std::vector<std::string> key_list;
  for (const auto& id : plan.order) {  // ancestors first, as signatures need
    Step s{wf.find(id), registry_.find(wf.find(id)->class_type), {}, {}};
    s.key = signature(*s.node, *s.schema, services, keys);
    for (const auto& [name, value] : s.node->inputs.items()) {
      auto link = s.schema->find_input(name) ? parse_link(value) : std::nullopt;
      if (link && std::find(s.sources.begin(), s.sources.end(), link->node_id) == s.sources.end())
        s.sources.push_back(link->node_id);
    }
    keys.emplace(id, s.key);
    key_list.push_back(s.key);
    steps.push_back(std::move(s));
  }
  cache_.begin_run(key_list);

  // A cached node needs nothing upstream, so ancestors that only feed cached nodes are skipped
  // (they may have been evicted while their consumer stayed). Walk consumers before producers.
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < steps.size(); ++i) index.emplace(steps[i].node->id, i);
  std::unordered_set<std::string> output_ids(plan.outputs.begin(), plan.outputs.end());
  std::unordered_map<std::string, size_t> consumers;  // executing nodes that still need a value
  for (size_t i = steps.size(); i-- > 0;) {
    Step& s = steps[i];
    s.required = s.required || output_ids.count(s.node->id) > 0;
    if (!s.required) continue;
    s.cached = cache_.find(s.key) != nullptr;
    if (s.cached) continue;
    for (const auto& src : s.sources) {
      steps[index.at(src)].required = true;
      ++consumers[src];
    }
  }

  emit(ExecEvent::Type::kStart);
  RunSummary summary;
  std::unordered_map<std::string, ValueList> values;  // this run's outputs still needed downstream
  for (const Step& s : steps) {
    const WorkflowNode& n = *s.node;
    if (!s.required) {
      // Only feeds cached nodes. Reported as cached when it is, as ComfyUI lists every cached
      // node of the prompt; not run when it is not.
      if (cache_.find(s.key)) {
        emit(ExecEvent::Type::kCached, &n);
        summary.nodes.push_back({n.id, n.class_type, true, 0});
      }
      continue;
    }
    if (cancel.requested()) {
      emit(ExecEvent::Type::kInterrupted, &n, 0, "interrupted by the user");
      throw Error(ErrorKind::kCancelled, "interrupted by the user");
    }
    ValueList result;
    // Looked up again: an identical node earlier in this run may have just filled the entry.
    if (const ValueList* hit = cache_.find(s.key)) {
      result = *hit;
      emit(ExecEvent::Type::kCached, &n);
      summary.nodes.push_back({n.id, n.class_type, true, 0});
    } else {
      NodeInputs inputs;
      for (const auto& [name, value] : n.inputs.items()) {
        if (!s.schema->find_input(name)) continue;
        if (auto link = parse_link(value))
          inputs.set(name, values.at(link->node_id).at(static_cast<size_t>(link->slot)));
        else
          inputs.set(name, Value::primitive(value));
      }
      emit(ExecEvent::Type::kNodeStart, &n);
      const auto node_start = Clock::now();
      result = run_node(n, *s.schema, inputs, context, services, cancel, prompt);
      double secs = seconds_since(node_start);
      emit(ExecEvent::Type::kNodeDone, &n, secs);
      summary.nodes.push_back({n.id, n.class_type, false, secs});
      cache_.store(s.key, result);
    }
    if (!s.cached) {
      for (const auto& src : s.sources)
        if (--consumers[src] == 0) values.erase(src);
    }
    if (output_ids.count(n.id)) summary.outputs[n.id] = result;
    if (consumers[n.id] > 0) values[n.id] = std::move(result);
  }
  summary.seconds = seconds_since(run_start);
  emit(ExecEvent::Type::kSuccess, nullptr, summary.seconds);
  return summary;
}

}  // namespace sdflow
