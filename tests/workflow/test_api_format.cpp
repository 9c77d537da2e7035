#include <gtest/gtest.h>

#include "core/error.h"
#include "workflow/api_format.h"
#include "workflow/registry_fixture.h"

namespace sdflow {
namespace {

using nlohmann::ordered_json;

std::vector<std::string> ids_of(const Workflow& wf) {
  std::vector<std::string> ids;
  for (const auto& n : wf.nodes) ids.push_back(n.id);
  return ids;
}

ErrorKind kind_of(const std::function<void()>& f, std::string* message) {
  try {
    f();
  } catch (const Error& e) {
    *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no sdflow::Error thrown";
  return ErrorKind::kRuntime;
}

TEST(ApiFormat, DefaultWorkflowKeepsNodesInputsAndTitles) {
  auto doc = ordered_json::parse(testing::read_fixture("default_api.json"));
  Workflow wf = workflow_from_api(doc);
  ASSERT_EQ(ids_of(wf), (std::vector<std::string>{"3", "4", "5", "6", "7", "8", "9"}));
  const WorkflowNode* ks = wf.find("3");
  ASSERT_NE(ks, nullptr);
  EXPECT_EQ(ks->class_type, "KSampler");
  EXPECT_EQ(ks->title, "KSampler");
  EXPECT_EQ(ks->inputs["seed"], 8566257);
  EXPECT_EQ(ks->inputs["model"], nlohmann::json::array({"4", 0}));
  EXPECT_EQ(wf.find("4")->title, "Load Checkpoint");
  EXPECT_FALSE(wf.ui_graph.has_value());
}

TEST(ApiFormat, OrderedDocumentKeepsFileOrder) {
  auto doc = ordered_json::parse(R"({"10": {"class_type": "A", "inputs": {}},
                                     "2": {"class_type": "B", "inputs": {}},
                                     "x": {"class_type": "C", "inputs": {}},
                                     "1": {"class_type": "D", "inputs": {}}})");
  EXPECT_EQ(ids_of(workflow_from_api(doc)), (std::vector<std::string>{"10", "2", "x", "1"}));
}

TEST(ApiFormat, UnorderedDocumentOrdersIdsLikeJavaScript) {
  auto doc = nlohmann::json::parse(R"({"10": {"class_type": "A", "inputs": {}},
                                      "2": {"class_type": "B", "inputs": {}},
                                      "12:5": {"class_type": "C", "inputs": {}},
                                      "007": {"class_type": "E", "inputs": {}},
                                      "1": {"class_type": "D", "inputs": {}}})");
  // Canonical integers first, numerically; "007" is not canonical, so it is a name.
  EXPECT_EQ(ids_of(workflow_from_api(doc)), (std::vector<std::string>{"1", "2", "10", "007", "12:5"}));
}

TEST(ApiFormat, WrappedPromptTakesUiGraphFromExtraPngInfo) {
  auto ui = ordered_json::parse(testing::read_fixture("default_ui.json"));
  ordered_json body = {{"client_id", "abc"},
                       {"prompt", ordered_json::parse(testing::read_fixture("default_api.json"))},
                       {"extra_data", {{"extra_pnginfo", {{"workflow", ui}}}}}};
  Workflow wf = workflow_from_api(body);
  EXPECT_EQ(wf.nodes.size(), 7u);
  ASSERT_TRUE(wf.ui_graph.has_value());
  EXPECT_EQ(*wf.ui_graph, nlohmann::json(ui));
  EXPECT_TRUE(is_wrapped_prompt(body));
  EXPECT_FALSE(is_wrapped_prompt(ordered_json::parse(testing::read_fixture("default_api.json"))));
}

TEST(ApiFormat, NodeCalledPromptIsNotAWrapper) {
  auto doc = ordered_json::parse(R"({"prompt": {"class_type": "CLIPTextEncode", "inputs": {"text": "x"}},
                                     "2": {"class_type": "B", "inputs": {}}})");
  EXPECT_FALSE(is_wrapped_prompt(doc));
  Workflow wf = workflow_from_api(doc);
  EXPECT_EQ(ids_of(wf), (std::vector<std::string>{"prompt", "2"}));
}

TEST(ApiFormat, NodeWithoutClassTypeIsKeptForValidation) {
  // As in real files that carry a non-node entry next to the nodes.
  auto doc = ordered_json::parse(R"({"stable-restyle": {"input": "15", "mask": "100"},
                                     "4": {"class_type": 4, "inputs": {}},
                                     "5": {"class_type": "VAEDecode"},
                                     "6": {"class_type": "VAEDecode", "inputs": [1, 2]}})");
  Workflow wf = workflow_from_api(doc);
  ASSERT_EQ(wf.nodes.size(), 4u);
  EXPECT_EQ(wf.nodes[0].id, "stable-restyle");
  EXPECT_EQ(wf.nodes[0].class_type, "");
  EXPECT_EQ(wf.nodes[1].class_type, "");  // not a string
  EXPECT_EQ(wf.nodes[2].inputs, nlohmann::json::object());
  EXPECT_EQ(wf.nodes[3].inputs, nlohmann::json::array({1, 2}));  // raw, validation reports it
}

TEST(ApiFormat, NonObjectNodeIsAnErrorNamingTheNode) {
  std::string msg;
  EXPECT_EQ(
      kind_of([] { workflow_from_api(ordered_json::parse(R"({"3": {"class_type": "A"}, "7": 12})")); }, &msg),
      ErrorKind::kValidation);
  EXPECT_NE(msg.find("node 7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("number"), std::string::npos) << msg;
}

TEST(ApiFormat, NonObjectDocumentIsAnError) {
  std::string msg;
  EXPECT_EQ(kind_of([] { workflow_from_api(ordered_json::parse("[1, 2]")); }, &msg), ErrorKind::kValidation);
  EXPECT_NE(msg.find("array"), std::string::npos) << msg;
  EXPECT_EQ(kind_of([] { workflow_from_api(nlohmann::json("text")); }, &msg), ErrorKind::kValidation);
}

TEST(ApiFormat, LargeSeedsAndListValuesSurvive) {
  auto doc = ordered_json::parse(R"({"3": {"class_type": "KSampler",
      "inputs": {"seed": 18446744073709551615, "list": {"__value__": [1, 2]}}}})");
  Workflow wf = workflow_from_api(doc);
  EXPECT_EQ(wf.nodes[0].inputs["seed"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(wf.nodes[0].inputs["list"]["__value__"], nlohmann::json::array({1, 2}));
}

}  // namespace
}  // namespace sdflow
