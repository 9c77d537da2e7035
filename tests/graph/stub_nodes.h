// Stub node classes for graph and executor tests: integer arithmetic on a NUMBER socket type,
// plus nodes that misbehave on purpose. A Recorder shared by the nodes of one registry counts
// executions, so tests can assert what ran.
#pragma once

#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/cancel.h"
#include "core/error.h"
#include "nodeapi/node.h"
#include "nodeapi/registry.h"
#include "nodeapi/schema.h"
#include "workflow/workflow.h"

namespace sdflow::test {

struct Number : Object {
  explicit Number(int64_t v) : value(v) {}
  int64_t value;
};

inline Value number(int64_t v) { return Value::object(std::make_shared<const Number>(v)); }
inline int64_t num(const Value& v) { return v.as<Number>()->value; }

struct Recorder {
  std::vector<std::string> order;      // node ids in the order they ran
  std::map<std::string, int> runs;     // per node id
  std::map<std::string, int> created;  // node objects made, per class
  std::string external_state = "v1";   // what Fingerprinted's fingerprint reports
  CancelToken* cancel = nullptr;       // what Canceller / CancelInside request
  int total() const { return static_cast<int>(order.size()); }
};

// Generic stub: run() is a lambda over (ctx, inputs).
class LambdaNode : public Node {
 public:
  using Fn = std::function<ValueList(NodeContext&, const NodeInputs&)>;
  LambdaNode(Recorder* rec, Fn fn) : rec_(rec), fn_(std::move(fn)) {}
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    rec_->order.push_back(ctx.node_id());
    ++rec_->runs[ctx.node_id()];
    return fn_(ctx, in);
  }

 protected:
  Recorder* rec_;
  Fn fn_;
};

class FingerprintedNode : public LambdaNode {
 public:
  using LambdaNode::LambdaNode;
  std::string fingerprint(const Services&, const nlohmann::json&) const override {
    return rec_->external_state;
  }
};

// Refuses the value 13 through the custom-validation hook (ComfyUI's VALIDATE_INPUTS).
class PickyNode : public LambdaNode {
 public:
  using LambdaNode::LambdaNode;
  std::vector<std::pair<std::string, std::string>> validate(const ValidationEnv&,
                                                            const nlohmann::json& c) const override {
    if (c.value("value", 0) == 13) return {{"value", "13 is unlucky"}};
    return {};
  }
};

inline void add_lambda(NodeRegistry& reg, Recorder* rec, NodeSchema schema, LambdaNode::Fn fn) {
  std::string cls = schema.class_type;
  reg.add(std::move(schema), [rec, fn, cls] {
    ++rec->created[cls];
    return std::make_unique<LambdaNode>(rec, fn);
  });
}

// The registry every test uses. Types: NUMBER (an Object), MODEL (a Number in disguise).
inline NodeRegistry make_registry(Recorder* rec) {
  NodeRegistry reg;
  auto pass = [](NodeContext&, const NodeInputs& in) { return ValueList{in.at("x")}; };
  add_lambda(reg, rec,
             SchemaBuilder("Const").input(int_input("value", 0, -1000, 1000)).output("NUMBER").build(),
             [](NodeContext&, const NodeInputs& in) { return ValueList{number(in.at("value").as_int())}; });
  add_lambda(reg, rec,
             SchemaBuilder("Add")
                 .socket("a", "NUMBER")
                 .socket("b", "NUMBER")
                 .input(optional(int_input("bias", 0, -1000, 1000)))
                 .output("NUMBER")
                 .build(),
             [](NodeContext&, const NodeInputs& in) {
               int64_t bias = in.has("bias") ? in.at("bias").as_int() : 0;
               return ValueList{number(num(in.at("a")) + num(in.at("b")) + bias)};
             });
  add_lambda(reg, rec,
             SchemaBuilder("Scale")
                 .socket("x", "NUMBER")
                 .input(float_input("factor", 1, 0, 10, 0.1))
                 .output("NUMBER")
                 .build(),
             [](NodeContext&, const NodeInputs& in) {
               return ValueList{number(static_cast<int64_t>(num(in.at("x")) * in.at("factor").as_float()))};
             });
  add_lambda(reg, rec, SchemaBuilder("Sink").socket("x", "NUMBER").output("NUMBER").output_node().build(),
             pass);
  add_lambda(reg, rec, SchemaBuilder("Seeded").input(seed_input("seed")).output("NUMBER").build(),
             [](NodeContext&, const NodeInputs& in) {
               return ValueList{number(static_cast<int64_t>(in.at("seed").as_uint64() % 1000))};
             });
  add_lambda(reg, rec,
             SchemaBuilder("Widgets")
                 .input(int_input("steps", 20, 1, 10000))
                 .input(float_input("cfg", 8.0, 0.0, 100.0, 0.1))
                 .input(combo_input("sampler_name", {"euler", "dpmpp_2m"}))
                 .input(string_input("text"))
                 .input(bool_input("flag", false))
                 .output("NUMBER")
                 .build(),
             [](NodeContext&, const NodeInputs& in) { return ValueList{number(in.at("steps").as_int())}; });
  add_lambda(
      reg, rec,
      SchemaBuilder("Loader").input(file_combo_input("ckpt_name", "checkpoints")).output("MODEL").build(),
      [](NodeContext&, const NodeInputs&) { return ValueList{number(1)}; });
  add_lambda(reg, rec, SchemaBuilder("UseModel").socket("model", "MODEL").output("NUMBER").build(),
             [](NodeContext&, const NodeInputs& in) { return ValueList{in.at("model")}; });
  add_lambda(reg, rec, SchemaBuilder("Pair").output("NUMBER").output("STRING").build(),
             [](NodeContext&, const NodeInputs&) {
               return ValueList{number(2), Value::primitive("two")};
             });
  reg.add(SchemaBuilder("SchemaOnly").socket("x", "NUMBER").output("NUMBER").runnable(false).build(),
          nullptr);
  reg.add(SchemaBuilder("Picky").input(int_input("value", 0, 0, 100)).output("NUMBER").build(), [rec] {
    return std::make_unique<PickyNode>(
        rec, [](NodeContext&, const NodeInputs& in) { return ValueList{number(in.at("value").as_int())}; });
  });
  reg.add(SchemaBuilder("Fingerprinted").socket("x", "NUMBER").output("NUMBER").build(),
          [rec, pass] { return std::make_unique<FingerprintedNode>(rec, pass); });
  add_lambda(reg, rec, SchemaBuilder("Canceller").socket("x", "NUMBER").output("NUMBER").build(),
             [rec](NodeContext&, const NodeInputs& in) {
               rec->cancel->request();  // as a signal handler would, mid-run
               return ValueList{in.at("x")};
             });
  add_lambda(reg, rec, SchemaBuilder("CancelInside").socket("x", "NUMBER").output("NUMBER").build(),
             [rec](NodeContext& ctx, const NodeInputs& in) {
               rec->cancel->request();
               ctx.check_cancelled();
               return ValueList{in.at("x")};
             });
  add_lambda(reg, rec, SchemaBuilder("Progress").socket("x", "NUMBER").output("NUMBER").build(),
             [](NodeContext& ctx, const NodeInputs& in) {
               for (int i = 1; i <= 3; ++i) ctx.progress(i, 3);
               return ValueList{in.at("x")};
             });
  add_lambda(reg, rec,
             SchemaBuilder("Fail")
                 .socket("x", "NUMBER")
                 .input(combo_input("mode", {"error", "prefixed", "std", "oom"}))
                 .output("NUMBER")
                 .build(),
             [](NodeContext&, const NodeInputs& in) -> ValueList {
               const std::string& mode = in.at("mode").as_string();
               if (mode == "error") throw Error(ErrorKind::kModel, "checkpoint is not a UNet");
               if (mode == "prefixed") throw Error(ErrorKind::kIo, "[Inner #9] cannot read file");
               if (mode == "std") throw std::runtime_error("something broke");
               throw std::bad_alloc();
             });
  add_lambda(reg, rec, SchemaBuilder("WrongCount").socket("x", "NUMBER").output("NUMBER").build(),
             [](NodeContext&, const NodeInputs& in) {
               return ValueList{in.at("x"), in.at("x")};
             });
  add_lambda(reg, rec,
             SchemaBuilder("Unique").socket("x", "NUMBER").output("NUMBER").not_idempotent().build(), pass);
  return reg;
}

inline WorkflowNode node(std::string id, std::string cls, nlohmann::json inputs = nlohmann::json::object()) {
  WorkflowNode n;
  n.id = std::move(id);
  n.class_type = std::move(cls);
  n.inputs = std::move(inputs);
  return n;
}

inline Workflow workflow(std::vector<WorkflowNode> nodes) {
  Workflow wf;
  wf.nodes = std::move(nodes);
  return wf;
}

inline nlohmann::json link(const std::string& id, int slot = 0) { return nlohmann::json::array({id, slot}); }

}  // namespace sdflow::test
