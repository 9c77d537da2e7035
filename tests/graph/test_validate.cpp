#include <gtest/gtest.h>

#include "graph/stub_nodes.h"
#include "graph/validate.h"

namespace sdflow {
namespace {

using test::link;
using test::node;
using test::workflow;

class ValidateTest : public ::testing::Test {
 protected:
  ValidationReport check(const Workflow& wf, const ValidationOptions& opts = {}) {
    return validate_workflow(wf, registry, opts);
  }

  // Exactly one issue, with these fields.
  static void expect_one(const ValidationReport& r, const std::string& kind, const std::string& node_id,
                         const std::string& cls, const std::string& input) {
    ASSERT_EQ(r.issues.size(), 1u) << r.to_text();
    const ValidationIssue& i = r.issues[0];
    EXPECT_EQ(i.kind, kind) << r.to_text();
    EXPECT_EQ(i.node_id, node_id);
    EXPECT_EQ(i.class_type, cls);
    EXPECT_EQ(i.input, input);
    EXPECT_FALSE(r.ok());
  }

  // A Widgets node "3" feeding a Sink, with one widget overridden.
  static Workflow widgets_with(const std::string& name, nlohmann::json value) {
    nlohmann::json in = {
        {"steps", 20}, {"cfg", 7.5}, {"sampler_name", "euler"}, {"text", "hi"}, {"flag", true}};
    in[name] = std::move(value);
    return workflow({node("3", "Widgets", in), node("9", "Sink", {{"x", link("3")}})});
  }

  static Workflow loader_with(nlohmann::json name) {
    return workflow({node("4", "Loader", {{"ckpt_name", std::move(name)}}),
                     node("5", "UseModel", {{"model", link("4")}}), node("9", "Sink", {{"x", link("5")}})});
  }

  test::Recorder rec;
  NodeRegistry registry = test::make_registry(&rec);
};

TEST_F(ValidateTest, ValidWorkflowHasNoIssuesAndListsOutputs) {
  auto r = check(workflow({node("1", "Const", {{"value", 2}}), node("2", "Const", {{"value", 3}}),
                           node("3", "Add", {{"a", link("1")}, {"b", link("2")}}),
                           node("4", "Sink", {{"x", link("3")}})}));
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_EQ(r.outputs, std::vector<std::string>{"4"});
  EXPECT_EQ(r.to_text(), "");
}

TEST_F(ValidateTest, UnknownClassAnywhereIsInvalidPrompt) {
  auto r = check(workflow(
      {node("1", "Const", {{"value", 1}}), node("2", "Sink", {{"x", link("1")}}), node("7", "NoSuchNode")}));
  expect_one(r, "invalid_prompt", "7", "NoSuchNode", "");
  EXPECT_NE(r.issues[0].message.find("NoSuchNode"), std::string::npos);
}

TEST_F(ValidateTest, MissingClassTypeIsInvalidPrompt) {
  auto r = check(
      workflow({node("1", "Const", {{"value", 1}}), node("2", "Sink", {{"x", link("1")}}), node("8", "")}));
  expect_one(r, "invalid_prompt", "8", "", "");
  EXPECT_EQ(r.issues[0].to_text().rfind("[? #8] ", 0), 0u) << r.issues[0].to_text();
}

TEST_F(ValidateTest, RequiredInputMissing) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("3", "Add", {{"a", link("1")}}),
                           node("4", "Sink", {{"x", link("3")}})}));
  expect_one(r, "required_input_missing", "3", "Add", "b");
}

TEST_F(ValidateTest, OptionalInputMayBeAbsentAndStaysAbsent) {
  Workflow wf =
      workflow({node("1", "Const", {{"value", 1}}), node("3", "Add", {{"a", link("1")}, {"b", link("1")}}),
                node("4", "Sink", {{"x", link("3")}})});
  auto r = check(wf);
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_FALSE(r.normalized.find("3")->inputs.contains("bias"));
}

TEST_F(ValidateTest, BadLinkedInput) {
  for (auto bad : {nlohmann::json::array({"1"}), nlohmann::json::array({"1", -1}),
                   nlohmann::json::array({"1", "0"}), nlohmann::json::array({"1", 0, 0})}) {
    auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("4", "Sink", {{"x", bad}})}));
    expect_one(r, "bad_linked_input", "4", "Sink", "x");
    EXPECT_EQ(r.issues[0].received, bad);
  }
}

TEST_F(ValidateTest, LinkToMissingNode) {
  auto r = check(workflow({node("4", "Sink", {{"x", link("42")}})}));
  expect_one(r, "link_to_missing_node", "4", "Sink", "x");
}

TEST_F(ValidateTest, IntegerNodeIdsInLinksResolve) {
  auto r = check(workflow(
      {node("1", "Const", {{"value", 1}}), node("4", "Sink", {{"x", nlohmann::json::array({1, 0})}})}));
  EXPECT_TRUE(r.ok()) << r.to_text();
}

TEST_F(ValidateTest, OutputIndexOutOfRange) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("4", "Sink", {{"x", link("1", 1)}})}));
  expect_one(r, "output_index_out_of_range", "4", "Sink", "x");
}

TEST_F(ValidateTest, ReturnTypeMismatch) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("2", "UseModel", {{"model", link("1")}}),
                           node("4", "Sink", {{"x", link("2")}})}));
  expect_one(r, "return_type_mismatch", "2", "UseModel", "model");
  EXPECT_EQ(r.issues[0].received, "NUMBER");
}

TEST_F(ValidateTest, SecondOutputSlotTypeIsChecked) {
  auto r = check(workflow({node("1", "Pair"), node("4", "Sink", {{"x", link("1", 1)}})}));
  expect_one(r, "return_type_mismatch", "4", "Sink", "x");
}

TEST_F(ValidateTest, InvalidInputTypeForUnconvertibleConstant) {
  auto r = check(widgets_with("steps", "twenty"));
  expect_one(r, "invalid_input_type", "3", "Widgets", "steps");
  EXPECT_EQ(r.issues[0].received, "twenty");
}

TEST_F(ValidateTest, InvalidInputTypeForConstantOnSocket) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("3", "Add", {{"a", link("1")}, {"b", 5}}),
                           node("4", "Sink", {{"x", link("3")}})}));
  expect_one(r, "invalid_input_type", "3", "Add", "b");
}

TEST_F(ValidateTest, ValueSmallerThanMin) {
  auto r = check(widgets_with("steps", 0));
  expect_one(r, "value_smaller_than_min", "3", "Widgets", "steps");
  EXPECT_EQ(r.to_text(), "[Widgets #3] input 'steps': Value 0 smaller than min of 1");
}

TEST_F(ValidateTest, ValueBiggerThanMax) {
  auto r = check(widgets_with("cfg", 100.5));
  expect_one(r, "value_bigger_than_max", "3", "Widgets", "cfg");
  EXPECT_EQ(r.issues[0].message, "Value 100.5 bigger than max of 100.0");
}

TEST_F(ValidateTest, ValueNotInList) {
  auto r = check(widgets_with("sampler_name", "eulerr"));
  expect_one(r, "value_not_in_list", "3", "Widgets", "sampler_name");
  EXPECT_NE(r.issues[0].message.find("'dpmpp_2m'"), std::string::npos) << r.issues[0].message;
}

TEST_F(ValidateTest, FileNotFoundOnlyWhenStrict) {
  ValidationOptions opts;
  opts.list_files = [](const std::string& folder) {
    return folder == "checkpoints" ? std::vector<std::string>{"sd15.safetensors", "sub/xl.safetensors"}
                                   : std::vector<std::string>{};
  };
  EXPECT_TRUE(check(loader_with("missing.safetensors"), opts).ok());
  opts.strict = true;
  auto r = check(loader_with("missing.safetensors"), opts);
  expect_one(r, "file_not_found", "4", "Loader", "ckpt_name");
  EXPECT_NE(r.issues[0].message.find("'sd15.safetensors'"), std::string::npos) << r.issues[0].message;
  EXPECT_TRUE(check(loader_with("sub/xl.safetensors"), opts).ok());
  EXPECT_TRUE(check(loader_with("sub\\xl.safetensors"), opts).ok());
}

TEST_F(ValidateTest, PathEscapeAlwaysRefused) {
  for (const std::string& bad :
       std::vector<std::string>{"../secret.safetensors", "/etc/passwd", "sub/../../x", "a\\..\\b",
                                "C:\\models\\x", std::string("a\0b", 3), "..", "\\\\server\\share"}) {
    auto r = check(loader_with(bad));
    expect_one(r, "path_escape", "4", "Loader", "ckpt_name");
  }
  EXPECT_TRUE(check(loader_with("sub/model..v2.safetensors")).ok());
}

TEST_F(ValidateTest, DependencyCycleNamesItsNodes) {
  auto r = check(workflow({node("1", "Add", {{"a", link("2")}, {"b", link("2")}}),
                           node("2", "Scale", {{"x", link("1")}, {"factor", 1}}),
                           node("3", "Sink", {{"x", link("1")}})}));
  expect_one(r, "dependency_cycle", "1", "Add", "");
  EXPECT_NE(r.issues[0].message.find("Add #1"), std::string::npos);
  EXPECT_NE(r.issues[0].message.find("Scale #2"), std::string::npos);
  EXPECT_TRUE(r.outputs.empty());
}

TEST_F(ValidateTest, SelfLoopIsACycle) {
  auto r = check(workflow(
      {node("1", "Add", {{"a", link("1")}, {"b", link("1")}}), node("3", "Sink", {{"x", link("1")}})}));
  expect_one(r, "dependency_cycle", "1", "Add", "");
}

TEST_F(ValidateTest, NoOutputs) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}})}));
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, "prompt_no_outputs");
  EXPECT_EQ(r.issues[0].node_id, "");
  EXPECT_EQ(r.to_text(), "Prompt has no outputs");
}

TEST_F(ValidateTest, NodeNotRunnable) {
  Workflow wf = workflow({node("1", "Const", {{"value", 1}}), node("2", "SchemaOnly", {{"x", link("1")}}),
                          node("3", "Sink", {{"x", link("2")}})});
  // Checking the workflow itself accepts schema-only classes; running requires them runnable.
  EXPECT_TRUE(check(wf).ok());
  ValidationOptions opts;
  opts.require_runnable = true;
  auto r = check(wf, opts);
  expect_one(r, "node_not_runnable", "2", "SchemaOnly", "");
  EXPECT_EQ(r.issues[0].message, "node type SchemaOnly is known but cannot run in this build yet");
}

TEST_F(ValidateTest, CustomValidationFailed) {
  auto r = check(workflow({node("1", "Picky", {{"value", 13}}), node("3", "Sink", {{"x", link("1")}})}));
  expect_one(r, "custom_validation_failed", "1", "Picky", "value");
  EXPECT_EQ(r.issues[0].message, "13 is unlucky");
  EXPECT_TRUE(
      check(workflow({node("1", "Picky", {{"value", 12}}), node("3", "Sink", {{"x", link("1")}})})).ok());
}

TEST_F(ValidateTest, ReportsAllErrorsAtOnce) {
  auto r = check(workflow({node("1", "Const", {{"value", 5000}}),          // above max
                           node("2", "Add", {{"a", link("1")}}),           // b missing
                           node("3", "UseModel", {{"model", link("1")}}),  // type mismatch
                           node("4", "Sink", {{"x", link("2")}}), node("5", "Sink", {{"x", link("3")}})}));
  ASSERT_EQ(r.issues.size(), 3u) << r.to_text();
  EXPECT_EQ(r.issues[0].kind, "value_bigger_than_max");
  EXPECT_EQ(r.issues[1].kind, "required_input_missing");
  EXPECT_EQ(r.issues[2].kind, "return_type_mismatch");
  const std::string text = r.to_text();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_TRUE(r.outputs.empty());
}

TEST_F(ValidateTest, OutputsListOnlyThoseWhoseUpstreamValidated) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("2", "Const", {{"value", -5000}}),
                           node("4", "Sink", {{"x", link("1")}}), node("5", "Sink", {{"x", link("2")}})}));
  EXPECT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.outputs, std::vector<std::string>{"4"});
}

TEST_F(ValidateTest, NodesNotNeededByOutputsAreNotChecked) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("2", "Add", {{"a", "junk"}}),
                           node("4", "Sink", {{"x", link("1")}})}));
  EXPECT_TRUE(r.ok()) << r.to_text();
}

TEST_F(ValidateTest, ExtraInputsAreIgnored) {
  auto r = check(workflow({node("1", "Const",
                                {{"value", 1},
                                 {"made_up",
                                  [] {
                                    return nlohmann::json::array({1, 2, 3});
                                  }()}}),
                           node("4", "Sink", {{"x", link("1")}})}));
  EXPECT_TRUE(r.ok()) << r.to_text();
}

TEST_F(ValidateTest, SeedRangeReachesTwoToThe64MinusOne) {
  auto seeded = [&](nlohmann::json seed) {
    return check(
        workflow({node("1", "Seeded", {{"seed", std::move(seed)}}), node("2", "Sink", {{"x", link("1")}})}));
  };
  auto max = nlohmann::json::parse("18446744073709551615");
  auto r = seeded(max);
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_EQ(r.normalized.find("1")->inputs["seed"].get<uint64_t>(), UINT64_MAX);

  r = seeded(nlohmann::json::parse("18446744073709551616"));
  expect_one(r, "value_bigger_than_max", "1", "Seeded", "seed");
  r = seeded("18446744073709551616");
  expect_one(r, "value_bigger_than_max", "1", "Seeded", "seed");
  r = seeded(-1);
  expect_one(r, "value_smaller_than_min", "1", "Seeded", "seed");
  EXPECT_EQ(r.issues[0].message, "Value -1 smaller than min of 0");
  EXPECT_TRUE(seeded("18446744073709551615").ok());
  EXPECT_TRUE(seeded(0).ok());
}

TEST_F(ValidateTest, ConstantsAreConvertedLikeComfyUI) {
  auto r = check(widgets_with("steps", "20"));
  ASSERT_TRUE(r.ok()) << r.to_text();
  const auto& in = r.normalized.find("3")->inputs;
  EXPECT_TRUE(in["steps"].is_number_integer());
  EXPECT_EQ(in["steps"].get<int64_t>(), 20);

  EXPECT_EQ(check(widgets_with("steps", 7.9)).normalized.find("3")->inputs["steps"], 7);
  EXPECT_EQ(check(widgets_with("steps", " 12 ")).normalized.find("3")->inputs["steps"], 12);
  EXPECT_EQ(check(widgets_with("steps", "20.5")).issues.at(0).kind, "invalid_input_type");
  EXPECT_EQ(check(widgets_with("steps", nlohmann::json::object())).issues.at(0).kind, "invalid_input_type");
  EXPECT_EQ(check(widgets_with("cfg", "2.5")).normalized.find("3")->inputs["cfg"], 2.5);
  EXPECT_TRUE(check(widgets_with("cfg", 3)).normalized.find("3")->inputs["cfg"].is_number_float());
  EXPECT_EQ(check(widgets_with("cfg", "0x10")).issues.at(0).kind, "invalid_input_type");
  EXPECT_EQ(check(widgets_with("text", 42)).normalized.find("3")->inputs["text"], "42");
  EXPECT_EQ(check(widgets_with("text", 1.5)).normalized.find("3")->inputs["text"], "1.5");
  EXPECT_EQ(check(widgets_with("text", nullptr)).issues.at(0).kind, "invalid_input_type");
  EXPECT_EQ(check(widgets_with("flag", 1)).normalized.find("3")->inputs["flag"], true);
  EXPECT_EQ(check(widgets_with("flag", "false")).issues.at(0).kind, "invalid_input_type");
  EXPECT_EQ(check(widgets_with("sampler_name", 3)).issues.at(0).kind, "value_not_in_list");
}

TEST_F(ValidateTest, LinkedWidgetInputSkipsRangeChecks) {
  auto r = check(
      workflow({node("1", "Const", {{"value", 1}}), node("2", "Scale", {{"x", link("1")}, {"factor", 2}}),
                node("4", "Sink", {{"x", link("2")}})}));
  EXPECT_TRUE(r.ok()) << r.to_text();
}

TEST_F(ValidateTest, TargetsRestrictOutputs) {
  Workflow wf = workflow({node("1", "Const", {{"value", 1}}), node("2", "Const", {{"value", 5000}}),
                          node("4", "Sink", {{"x", link("1")}}), node("5", "Sink", {{"x", link("2")}})});
  ValidationOptions opts;
  opts.targets = {"4"};
  auto r = check(wf, opts);
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_EQ(r.outputs, std::vector<std::string>{"4"});
  opts.targets = {"77"};
  r = check(wf, opts);
  ASSERT_EQ(r.issues.size(), 2u) << r.to_text();
  EXPECT_EQ(r.issues[0].kind, "invalid_prompt");
  EXPECT_EQ(r.issues[1].kind, "prompt_no_outputs");
}

TEST_F(ValidateTest, JsonReport) {
  auto j = check(widgets_with("steps", 0)).to_json();
  EXPECT_EQ(j["ok"], false);
  ASSERT_EQ(j["issues"].size(), 1u);
  EXPECT_EQ(j["issues"][0]["kind"], "value_smaller_than_min");
  EXPECT_EQ(j["issues"][0]["node_id"], "3");
  EXPECT_EQ(j["issues"][0]["class_type"], "Widgets");
  EXPECT_EQ(j["issues"][0]["input"], "steps");
  EXPECT_EQ(j["issues"][0]["received"], 0);
}

TEST_F(ValidateTest, DuplicateNodeIdIsInvalidPrompt) {
  auto r = check(workflow({node("1", "Const", {{"value", 1}}), node("1", "Const", {{"value", 2}}),
                           node("4", "Sink", {{"x", link("1")}})}));
  expect_one(r, "invalid_prompt", "1", "Const", "");
}

TEST_F(ValidateTest, NonObjectInputsOfANeededNodeIsInvalidPrompt) {
  Workflow wf =
      workflow({node("1", "Const", nlohmann::json::array({1, 2})), node("4", "Sink", {{"x", link("1")}}),
                node("6", "Const", "junk")});  // not needed: not checked
  auto r = check(wf);
  expect_one(r, "invalid_prompt", "1", "Const", "");
}

}  // namespace
}  // namespace sdflow
