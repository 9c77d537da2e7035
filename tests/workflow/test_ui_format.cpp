#include <gtest/gtest.h>

#include "core/error.h"
#include "workflow/api_format.h"
#include "workflow/registry_fixture.h"
#include "workflow/ui_format.h"

namespace sdflow {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// The converted workflow must be the expected prompt: same ids in the same order, classes,
// titles and inputs.
void expect_prompt(const Workflow& got, const ordered_json& expected) {
  Workflow want = workflow_from_api(expected);
  std::vector<std::string> got_ids, want_ids;
  for (const auto& n : got.nodes) got_ids.push_back(n.id);
  for (const auto& n : want.nodes) want_ids.push_back(n.id);
  ASSERT_EQ(got_ids, want_ids);
  for (const auto& w : want.nodes) {
    const WorkflowNode* g = got.find(w.id);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->class_type, w.class_type) << "node " << w.id;
    EXPECT_EQ(g->title, w.title) << "node " << w.id;
    EXPECT_EQ(g->inputs, w.inputs) << "node " << w.id << "\n got: " << g->inputs.dump()
                                   << "\nwant: " << w.inputs.dump();
  }
}

class UiFormat : public ::testing::Test {
 protected:
  NodeRegistry registry = testing::make_test_registry();
  json fixture(const std::string& name) { return json::parse(testing::read_fixture(name)); }
};

TEST_F(UiFormat, DefaultGraphConvertsToTheDefaultPrompt) {
  json ui = fixture("default_ui.json");
  Workflow wf = workflow_from_ui(ui, registry);
  expect_prompt(wf, ordered_json::parse(testing::read_fixture("default_api.json")));
  ASSERT_TRUE(wf.ui_graph.has_value());
  EXPECT_EQ(*wf.ui_graph, ui);
}

TEST_F(UiFormat, SchemaOneLinkObjectsAndWidgetInputs) {
  Workflow wf = workflow_from_ui(fixture("default_ui_v1.json"), registry);
  expect_prompt(wf, ordered_json::parse(testing::read_fixture("default_api.json")));
}

TEST_F(UiFormat, ReroutesPrimitivesMutedBypassedNotesAndLegacyWidgets) {
  Workflow wf = workflow_from_ui(fixture("features_ui.json"), registry);
  expect_prompt(wf, ordered_json::parse(testing::read_fixture("features_expected_api.json")));
  const WorkflowNode* custom = wf.find("70");
  ASSERT_NE(custom, nullptr);
  EXPECT_EQ(custom->unmapped_widget_values, json::array({"4x", 2.0}));
  EXPECT_TRUE(wf.find("3")->unmapped_widget_values.is_null());
}

TEST_F(UiFormat, FewerWidgetValuesTakeDefaultsAndControlValueIsSkipped) {
  json ui = fixture("default_ui.json");
  for (auto& n : ui["nodes"]) {
    if (n["type"] == "KSampler") n["widgets_values"] = {5, "fixed", 30};  // old file, cut short
    if (n["type"] == "EmptyLatentImage") n.erase("widgets_values");
  }
  Workflow wf = workflow_from_ui(ui, registry);
  const json& ks = wf.find("3")->inputs;
  EXPECT_EQ(ks["seed"], 5);
  EXPECT_EQ(ks["steps"], 30);
  EXPECT_EQ(ks["cfg"], 8.0);
  EXPECT_EQ(ks["sampler_name"], "euler");
  EXPECT_EQ(ks["denoise"], 1.0);
  EXPECT_EQ(wf.find("5")->inputs, json({{"width", 512}, {"height", 512}, {"batch_size", 1}}));
}

TEST_F(UiFormat, OldBooleanControlValueIsSkippedToo) {
  json ui = fixture("default_ui.json");
  for (auto& n : ui["nodes"])
    if (n["type"] == "KSampler") n["widgets_values"] = {77, true, 12, 6, "euler", "karras", 0.5};
  const json ks = workflow_from_ui(ui, registry).find("3")->inputs;
  EXPECT_EQ(ks["seed"], 77);
  EXPECT_EQ(ks["steps"], 12);
  EXPECT_EQ(ks["scheduler"], "karras");
  EXPECT_EQ(ks["denoise"], 0.5);
}

TEST_F(UiFormat, ComboControlSkipsModeAndFilterList) {
  json ui = json::parse(R"({"nodes": [{"id": 1, "type": "PresetPicker", "mode": 0,
                                       "widgets_values": ["b", "increment", "", 3]}], "links": []})");
  EXPECT_EQ(workflow_from_ui(ui, registry).find("1")->inputs, json({{"preset", "b"}, {"count", 3}}));
}

TEST_F(UiFormat, LinkToConvertedWidgetWinsOverItsStoredValue) {
  json ui = fixture("default_ui.json");
  // EmptyLatentImage's width converted to an input, fed by a primitive; the stale stored 640
  // keeps its slot, so height and batch_size still line up.
  for (auto& n : ui["nodes"])
    if (n["type"] == "EmptyLatentImage") {
      n["inputs"] =
          json::array({{{"name", "width"}, {"type", "INT"}, {"widget", {{"name", "width"}}}, {"link", 50}}});
      n["widgets_values"] = {640, 384, 3};
    }
  ui["nodes"].push_back({{"id", 30},
                         {"type", "PrimitiveNode"},
                         {"mode", 0},
                         {"outputs", json::array({{{"name", "INT"}, {"type", "INT"}, {"links", {50}}}})},
                         {"widgets_values", {1024, "fixed"}}});
  ui["links"].push_back({50, 30, 0, 5, 0, "INT"});
  const json latent = workflow_from_ui(ui, registry).find("5")->inputs;
  EXPECT_EQ(latent, json({{"width", 1024}, {"height", 384}, {"batch_size", 3}}));
}

TEST_F(UiFormat, UnknownNodeKeepsClassTypeAndLinks) {
  json ui = fixture("default_ui.json");
  for (auto& n : ui["nodes"])
    if (n["type"] == "VAEDecode") n["type"] = "FancyDecoder";
  Workflow wf = workflow_from_ui(ui, registry);
  const WorkflowNode* n = wf.find("8");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->class_type, "FancyDecoder");
  EXPECT_EQ(n->inputs, json({{"samples", {"3", 0}}, {"vae", {"4", 2}}}));
  EXPECT_EQ(n->title, "");
  EXPECT_EQ(wf.find("9")->inputs["images"], json({"8", 0}));
}

TEST_F(UiFormat, BypassTriesTheOriginSlotFirst) {
  // A bypassed ConditioningCombine with two CONDITIONING inputs: output slot 0 continues at
  // input 0; if that is unconnected the walk stops there and no link is emitted.
  json ui = fixture("default_ui.json");
  ui["nodes"].push_back(
      {{"id", 20},
       {"type", "ConditioningCombine"},
       {"mode", 4},
       {"inputs", json::array({{{"name", "conditioning_1"}, {"type", "CONDITIONING"}, {"link", 60}},
                               {{"name", "conditioning_2"}, {"type", "CONDITIONING"}, {"link", 61}}})},
       {"outputs", json::array({{{"name", "CONDITIONING"}, {"type", "CONDITIONING"}, {"links", {62}}}})}});
  ui["links"] = json::array({{1, 4, 0, 3, 0, "MODEL"},
                             {2, 5, 0, 3, 3, "LATENT"},
                             {3, 4, 1, 6, 0, "CLIP"},
                             {60, 7, 0, 20, 0, "CONDITIONING"},
                             {61, 6, 0, 20, 1, "CONDITIONING"},
                             {62, 20, 0, 3, 1, "CONDITIONING"},
                             {5, 4, 1, 7, 0, "CLIP"},
                             {6, 7, 0, 3, 2, "CONDITIONING"},
                             {7, 3, 0, 8, 0, "LATENT"},
                             {8, 4, 2, 8, 1, "VAE"},
                             {9, 8, 0, 9, 0, "IMAGE"}});
  for (auto& n : ui["nodes"])
    if (n["type"] == "KSampler") n["inputs"][1]["link"] = 62;
  Workflow wf = workflow_from_ui(ui, registry);
  EXPECT_EQ(wf.find("20"), nullptr);
  EXPECT_EQ(wf.find("3")->inputs["positive"], json({"7", 0}));

  for (auto& n : ui["nodes"])
    if (n["id"] == 20) n["inputs"][0]["link"] = nullptr;
  EXPECT_FALSE(workflow_from_ui(ui, registry).find("3")->inputs.contains("positive"));
}

TEST_F(UiFormat, MutedAndBypassedNodesAreNotEmitted) {
  json ui = fixture("default_ui.json");
  for (auto& n : ui["nodes"])
    if (n["type"] == "SaveImage") n["mode"] = 2;
  Workflow wf = workflow_from_ui(ui, registry);
  EXPECT_EQ(wf.find("9"), nullptr);
  EXPECT_EQ(wf.nodes.size(), 6u);
}

TEST_F(UiFormat, SubgraphIsFlattenedWithPathIds) {
  Workflow wf = workflow_from_ui(fixture("subgraph_ui.json"), registry);
  std::vector<std::string> ids;
  for (const auto& n : wf.nodes) ids.push_back(n.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"4", "5", "8", "9", "10:1", "10:2", "10:3"}));
  const json& ks = wf.find("10:3")->inputs;
  EXPECT_EQ(ks["model"], json({"4", 0}));
  EXPECT_EQ(ks["positive"], json({"10:1", 0}));
  EXPECT_EQ(ks["negative"], json({"10:2", 0}));
  EXPECT_EQ(ks["latent_image"], json({"5", 0}));
  EXPECT_EQ(ks["steps"], 30);  // promoted onto the instance
  EXPECT_EQ(ks["seed"], 1234);
  EXPECT_EQ(wf.find("10:1")->inputs, json({{"text", "inner positive"}, {"clip", {"4", 1}}}));
  EXPECT_EQ(wf.find("8")->inputs["samples"], json({"10:3", 0}));
}

TEST_F(UiFormat, SubgraphProxyWidgetsOverrideInnerValues) {
  json ui = fixture("subgraph_ui.json");
  auto& instance = ui["nodes"][2];
  instance["properties"]["proxyWidgets"] =
      json::array({json::array({"-1", "steps"}), json::array({"3", "cfg"})});
  instance["widgets_values"] = {12, 4.5};
  const json ks = workflow_from_ui(ui, registry).find("10:3")->inputs;
  EXPECT_EQ(ks["steps"], 12);
  EXPECT_EQ(ks["cfg"], 4.5);
}

TEST_F(UiFormat, SubgraphWithUnmappableWidgetValuesIsAClearError) {
  json ui = fixture("subgraph_ui.json");
  ui["nodes"][2]["widgets_values"] = {30, 7};
  try {
    workflow_from_ui(ui, registry);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValidation);
    EXPECT_NE(std::string(e.what()).find("subgraph node 10"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
  }
}

TEST_F(UiFormat, SubgraphThatContainsItselfIsAnError) {
  json ui = fixture("subgraph_ui.json");
  auto& sg = ui["definitions"]["subgraphs"][0];
  sg["nodes"].push_back({{"id", 9}, {"type", sg["id"]}, {"mode", 0}});
  EXPECT_THROW(workflow_from_ui(ui, registry), Error);
}

TEST_F(UiFormat, MutedSubgraphInstanceDropsItsInnerNodes) {
  json ui = fixture("subgraph_ui.json");
  ui["nodes"][2]["mode"] = 2;
  Workflow wf = workflow_from_ui(ui, registry);
  EXPECT_EQ(wf.find("10:3"), nullptr);
  EXPECT_FALSE(wf.find("8")->inputs.contains("samples"));
}

TEST_F(UiFormat, MalformedGraphsAreValidationErrors) {
  auto kind = [&](const json& ui) -> std::string {
    try {
      workflow_from_ui(ui, registry);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kValidation);
      return e.what();
    }
    return "";
  };
  EXPECT_NE(kind(json::array()).find("JSON object"), std::string::npos);
  EXPECT_NE(kind(json({{"nodes", 3}, {"links", json::array()}})).find("nodes"), std::string::npos);
  EXPECT_NE(kind(json::parse(R"({"nodes": [{"type": "KSampler"}], "links": []})")).find("nodes[0]"),
            std::string::npos);
  EXPECT_NE(kind(json::parse(R"({"nodes": [{"id": 1, "type": "A"}, {"id": "1", "type": "B"}], "links": []})"))
                .find("duplicate node id 1"),
            std::string::npos);
}

TEST_F(UiFormat, BrokenLinksAndOddEntriesDoNotCrash) {
  json ui = json::parse(R"({"nodes": [
      {"id": 1, "type": "VAEDecode", "inputs": [null, {"name": "vae", "type": "VAE", "link": 7}, 5]},
      {"id": 2, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 8}]},
      {"id": 3, "type": "SaveImage", "inputs": [{"name": "images", "type": "IMAGE", "link": 9}],
       "widgets_values": "not a list"}],
    "links": [null, [7, 2, 0, 1, 1, "VAE"], [8, 2, 0, 2, 0, "*"], {"id": 9}, [10, 1]]})");
  Workflow wf = workflow_from_ui(ui, registry);
  ASSERT_EQ(wf.nodes.size(), 2u);
  EXPECT_EQ(wf.find("1")->inputs, json::object());  // the reroute loops onto itself: nothing
  EXPECT_EQ(wf.find("3")->inputs, json({{"filename_prefix", "ComfyUI"}}));
}

TEST_F(UiFormat, FilenamePrefixTokensAreExpandedLikeTheFrontend) {
  json ui = fixture("default_ui.json");
  for (auto& n : ui["nodes"])
    if (n["type"] == "SaveImage")
      n["widgets_values"] = {"%EmptyLatentImage.width%x%Empty Latent Image.height%/%date:yyyy%_%Nope.x%"};
  std::string prefix = workflow_from_ui(ui, registry).find("9")->inputs["filename_prefix"];
  ASSERT_EQ(prefix.size(), std::string("512x512/2026_%Nope.x%").size()) << prefix;
  EXPECT_EQ(prefix.substr(0, 8), "512x512/");
  EXPECT_EQ(prefix.substr(12), "_%Nope.x%");
}

TEST(FrontendTokens, DateFormatsAndWidgetValues) {
  std::tm now{};
  now.tm_year = 2024 - 1900;
  now.tm_mon = 2;  // March
  now.tm_mday = 7;
  now.tm_hour = 9;
  now.tm_min = 5;
  now.tm_sec = 30;
  WidgetLookup lookup = [](const std::string& node, const std::string& widget) -> std::optional<json> {
    if (node == "Loader" && widget == "ckpt_name") return json("sd/v1-5.safetensors");
    if (node == "Latent" && widget == "scale") return json(2.0);
    if (node == "Latent" && widget == "cfg") return json(7.5);
    return std::nullopt;
  };
  EXPECT_EQ(expand_frontend_tokens("%date:yyyy-MM-dd%/%date:hhmmss%", now, lookup), "2024-03-07/090530");
  EXPECT_EQ(expand_frontend_tokens("%date:yy.M.d h:m:s%", now, lookup), "24.3.7 9:5:30");
  EXPECT_EQ(expand_frontend_tokens("%date:yyy y%", now, lookup), "yyy y");
  EXPECT_EQ(expand_frontend_tokens("%Loader.ckpt_name%_%Latent.scale%_%Latent.cfg%", now, lookup),
            "sd_v1-5.safetensors_2_7.5");
  EXPECT_EQ(expand_frontend_tokens("100%% %a.b.c% %missing.w% %year%", now, lookup),
            "100%% %a.b.c% %missing.w% %year%");
  EXPECT_EQ(expand_frontend_tokens("50% off", now, lookup), "50% off");
}

TEST(FrontendTypes, KnownVirtualTypes) {
  EXPECT_TRUE(is_frontend_only_type("Reroute"));
  EXPECT_TRUE(is_frontend_only_type("PrimitiveNode"));
  EXPECT_TRUE(is_frontend_only_type("Note"));
  EXPECT_TRUE(is_frontend_only_type("MarkdownNote"));
  EXPECT_FALSE(is_frontend_only_type("KSampler"));
}

}  // namespace
}  // namespace sdflow
