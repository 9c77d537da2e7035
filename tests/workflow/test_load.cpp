#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "workflow/load.h"
#include "workflow/registry_fixture.h"

namespace sdflow {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

struct Caught {
  ErrorKind kind = ErrorKind::kRuntime;
  std::string message;
};

Caught catch_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  ADD_FAILURE() << "no sdflow::Error thrown";
  return {};
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::filesystem::path write_temp(const std::string& name, const std::string& bytes) {
  auto path = std::filesystem::path(::testing::TempDir()) / ("sdflow_wf_" + name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

class Load : public ::testing::Test {
 protected:
  NodeRegistry registry = testing::make_test_registry();
};

TEST_F(Load, DetectsFormats) {
  EXPECT_EQ(detect_workflow_format(ordered_json::parse(testing::read_fixture("default_ui.json"))),
            WorkflowFormat::kUi);
  EXPECT_EQ(detect_workflow_format(ordered_json::parse(testing::read_fixture("default_ui_v1.json"))),
            WorkflowFormat::kUi);
  EXPECT_EQ(detect_workflow_format(ordered_json::parse(testing::read_fixture("default_api.json"))),
            WorkflowFormat::kApi);
  EXPECT_EQ(detect_workflow_format(ordered_json::parse(R"({"prompt": {}, "extra_data": {}})")),
            WorkflowFormat::kApi);
}

TEST_F(Load, UiAndApiTextGiveTheSamePrompt) {
  Workflow api = load_workflow_json(testing::read_fixture("default_api.json"), registry, "api");
  Workflow ui = load_workflow_json(testing::read_fixture("default_ui.json"), registry, "ui");
  EXPECT_EQ(ui.to_api_json(), api.to_api_json());
  EXPECT_TRUE(ui.ui_graph.has_value());
  EXPECT_FALSE(api.ui_graph.has_value());
}

TEST_F(Load, GraphSavedUnderWorkflowKeyIsConverted) {
  std::string text = "{\"workflow\": " + testing::read_fixture("default_ui.json") + "}";
  Workflow wf = load_workflow_json(text, registry, "dump");
  EXPECT_EQ(wf.nodes.size(), 7u);
}

TEST_F(Load, MalformedJsonReportsLineAndColumnAndFile) {
  auto path = testing::fixture_path("malformed.json");
  Caught c = catch_error([&] { load_workflow_file(path, registry); });
  EXPECT_EQ(c.kind, ErrorKind::kValidation);
  EXPECT_TRUE(contains(c.message, path)) << c.message;
  EXPECT_TRUE(contains(c.message, "line 4, column 26")) << c.message;
  EXPECT_FALSE(contains(c.message, "json.exception")) << c.message;
}

TEST_F(Load, ParsePositionsOnFirstLineAndAtEnd) {
  Caught c = catch_error([&] { load_workflow_json("{\"3\": tru}", registry, "inline"); });
  EXPECT_TRUE(contains(c.message, "inline: not valid JSON (line 1, column ")) << c.message;
  c = catch_error([&] { load_workflow_json("{\n  \"3\": {}\n", registry, "cut"); });
  EXPECT_TRUE(contains(c.message, "line 3, column 1")) << c.message;
  EXPECT_TRUE(contains(c.message, "end of input")) << c.message;
  c = catch_error([&] { load_workflow_json("", registry, "empty"); });
  EXPECT_TRUE(contains(c.message, "line 1, column 1")) << c.message;
}

TEST_F(Load, ConversionErrorsNameTheSource) {
  Caught c = catch_error([&] { load_workflow_json("[1, 2]", registry, "list.json"); });
  EXPECT_EQ(c.kind, ErrorKind::kValidation);
  EXPECT_TRUE(contains(c.message, "list.json: ")) << c.message;
  c = catch_error([&] { load_workflow_json(R"({"3": "KSampler"})", registry, "bad.json"); });
  EXPECT_TRUE(contains(c.message, "bad.json: node 3")) << c.message;
}

TEST_F(Load, MissingFileAndDirectoryAreIoErrors) {
  Caught c = catch_error([&] { load_workflow_file("/nonexistent/dir/wf.json", registry); });
  EXPECT_EQ(c.kind, ErrorKind::kIo);
  EXPECT_TRUE(contains(c.message, "/nonexistent/dir/wf.json")) << c.message;
  c = catch_error([&] { load_workflow_file(::testing::TempDir(), registry); });
  EXPECT_EQ(c.kind, ErrorKind::kIo);
}

TEST_F(Load, JsonFileLoads) {
  Workflow wf = load_workflow_file(testing::fixture_path("features_ui.json"), registry);
  EXPECT_EQ(wf.nodes.size(), 15u);
}

TEST_F(Load, PngNeedsAReaderAndUsesItsChunks) {
  auto png = write_temp("image.png", std::string("\x89PNG\r\n\x1a\n", 8) + "rest of file");
  Caught c = catch_error([&] { load_workflow_file(png, registry); });
  EXPECT_EQ(c.kind, ErrorKind::kUsage);
  EXPECT_TRUE(contains(c.message, png.string())) << c.message;

  std::filesystem::path seen;
  PngTextReader reader = [&](const std::filesystem::path& p) {
    seen = p;
    return PngTextChunks{{"workflow", testing::read_fixture("default_ui.json")}};
  };
  Workflow wf = load_workflow_file(png, registry, reader);
  EXPECT_EQ(seen, png);
  EXPECT_EQ(wf.nodes.size(), 7u);
  ASSERT_TRUE(wf.ui_graph.has_value());
}

TEST_F(Load, PngPrefersThePromptAndAttachesTheGraph) {
  PngTextChunks chunks = {{"workflow", testing::read_fixture("features_ui.json")},
                          {"prompt", testing::read_fixture("default_api.json")}};
  Workflow wf = load_workflow_from_png_chunks(chunks, registry, "x.png");
  EXPECT_EQ(wf.nodes.size(), 7u);  // the prompt's nodes, not the graph's
  ASSERT_TRUE(wf.ui_graph.has_value());
  EXPECT_EQ((*wf.ui_graph)["last_node_id"], 91);
}

TEST_F(Load, PngWithBrokenPromptFallsBackToTheGraph) {
  PngTextChunks chunks = {{"prompt", "{broken"}, {"workflow", testing::read_fixture("default_ui.json")}};
  Workflow wf = load_workflow_from_png_chunks(chunks, registry, "x.png");
  EXPECT_EQ(wf.nodes.size(), 7u);
}

TEST_F(Load, PngWithoutWorkflowIsAnErrorNamingTheFile) {
  Caught c = catch_error([&] { load_workflow_from_png_chunks({{"Software", "x"}}, registry, "pic.png"); });
  EXPECT_EQ(c.kind, ErrorKind::kValidation);
  EXPECT_TRUE(contains(c.message, "pic.png: ")) << c.message;
  c = catch_error([&] {
    load_workflow_from_png_chunks({{"parameters", "a cat, Steps: 20"}}, registry, "a1111.png");
  });
  EXPECT_TRUE(contains(c.message, "parameters")) << c.message;
  c = catch_error([&] { load_workflow_from_png_chunks({{"prompt", "[1"}}, registry, "bad.png"); });
  EXPECT_TRUE(contains(c.message, "bad.png: text chunk \"prompt\": not valid JSON")) << c.message;
}

TEST_F(Load, BinaryFileIsNamedAsSuch) {
  auto bin = write_temp("model.bin", std::string("\x01\x00\x02\x03", 4));
  Caught c = catch_error([&] { load_workflow_file(bin, registry); });
  EXPECT_TRUE(contains(c.message, "binary")) << c.message;
}

}  // namespace
}  // namespace sdflow
