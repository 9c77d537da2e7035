// Real workflows from ../shared (never copied into the repository): every file must load, UI
// files must name the node types we lack, and for the PNG-derived pairs (the graph and the
// prompt ComfyUI actually ran) our conversion of the graph must give that prompt.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>

#include "core/error.h"
#include "workflow/api_format.h"
#include "workflow/load.h"
#include "workflow/registry_fixture.h"
#include "workflow/ui_format.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path corpus_dir() { return fs::path(SDFLOW_SHARED_DIR) / "data" / "comfyui-workflows"; }

std::vector<fs::path> corpus_files() {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(corpus_dir(), ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file() && it->path().extension() == ".json") files.push_back(it->path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string corpus_name(const fs::path& p) { return fs::relative(p, corpus_dir()).string(); }

// Node types of a UI graph that reach the backend but that the registry lacks.
std::set<std::string> expected_unknown_types(const json& ui, const NodeRegistry& registry) {
  std::set<std::string> subgraph_ids;
  if (ui.contains("definitions") && ui["definitions"].contains("subgraphs"))
    for (const auto& sg : ui["definitions"]["subgraphs"]) subgraph_ids.insert(sg.value("id", ""));
  std::set<std::string> out;
  for (const auto& n : ui["nodes"]) {
    std::string type = n.value("type", "");
    int mode = n.value("mode", 0);
    if (mode == 2 || mode == 4 || is_frontend_only_type(type) || registry.find(type) ||
        subgraph_ids.count(type))
      continue;
    out.insert(type);
  }
  return out;
}

void expect_links_resolve(const Workflow& wf, const std::string& file) {
  for (const auto& n : wf.nodes)
    for (const auto& [name, value] : n.inputs.items()) {
      auto link = parse_link(value);
      if (link) {
        EXPECT_NE(wf.find(link->node_id), nullptr) << file << ": node " << n.id << "." << name;
      }
    }
}

// The converted graph against the prompt ComfyUI ran. Old frontends also sent LoadImage's
// upload button ("choose file to upload"); no backend input reads it.
void expect_matches_prompt(const Workflow& got, const Workflow& ran, const NodeRegistry& registry,
                           const std::string& file) {
  std::vector<std::string> got_ids, ran_ids;
  for (const auto& n : got.nodes) got_ids.push_back(n.id);
  for (const auto& n : ran.nodes) ran_ids.push_back(n.id);
  std::sort(got_ids.begin(), got_ids.end());
  std::sort(ran_ids.begin(), ran_ids.end());
  EXPECT_EQ(got_ids, ran_ids) << file;
  for (const auto& r : ran.nodes) {
    const WorkflowNode* g = got.find(r.id);
    if (!g) continue;
    EXPECT_EQ(g->class_type, r.class_type) << file << " node " << r.id;
    json want = r.inputs;
    want.erase("choose file to upload");
    want.erase("upload");
    if (const NodeSchema* schema = registry.find(r.class_type)) {
      // A graph saved before the node gained an input has no value for it; ComfyUI of the
      // time sent nothing, we (like today's frontend) send the default.
      json have = g->inputs;
      for (const auto& spec : schema->inputs)
        if (!want.contains(spec.name) && have.contains(spec.name) && have[spec.name] == spec.default_value)
          have.erase(spec.name);
      EXPECT_EQ(have, want) << file << " node " << r.id << " (" << r.class_type
                            << ")\n got: " << g->inputs.dump() << "\nwant: " << want.dump();
      continue;
    }
    // Without a schema only links (and primitive-fed values) come through; they must agree.
    for (const auto& [name, value] : g->inputs.items())
      EXPECT_EQ(value, want.value(name, json())) << file << " node " << r.id << "." << name;
    for (const auto& [name, value] : want.items())
      if (parse_link(value)) {
        EXPECT_TRUE(g->inputs.contains(name)) << file << " node " << r.id << "." << name;
      }
  }
}

TEST(RealWorkflows, EveryFileLoads) {
  if (!fs::is_directory(corpus_dir())) GTEST_SKIP() << "no corpus at " << corpus_dir();
  NodeRegistry registry = testing::make_test_registry();
  auto files = corpus_files();
  ASSERT_FALSE(files.empty());
  size_t loaded = 0;
  for (const auto& path : files) {
    const std::string name = corpus_name(path);
    json doc = json::parse(testing::read_text(path.string()));
    const bool ui = is_ui_graph(doc);
    try {
      Workflow wf = load_workflow_file(path, registry);
      ++loaded;
      std::set<std::string> classes, unknown;
      for (const auto& n : wf.nodes) {
        classes.insert(n.class_type);
        if (!registry.find(n.class_type)) unknown.insert(n.class_type.empty() ? "(none)" : n.class_type);
      }
      std::string unknown_list;
      for (const auto& u : unknown) unknown_list += (unknown_list.empty() ? "" : ", ") + u;
      std::cout << "[loaded] " << name << ": " << (ui ? "UI" : "API") << ", "
                << (ui ? std::to_string(doc["nodes"].size()) + " graph nodes -> " : "") << wf.nodes.size()
                << " nodes" << (unknown.empty() ? "" : "; not in test registry: " + unknown_list) << "\n";
      if (ui) {
        for (const auto& type : expected_unknown_types(doc, registry))
          EXPECT_TRUE(classes.count(type)) << name << ": unknown type " << type << " missing from the prompt";
        expect_links_resolve(wf, name);
        EXPECT_TRUE(wf.ui_graph.has_value()) << name;
      }
    } catch (const Error& e) {
      std::cout << "[error]  " << name << ": " << e.what() << "\n";
      EXPECT_NE(std::string(e.what()), "") << name;
      ADD_FAILURE() << name << " did not load: " << e.what();
    }
  }
  std::cout << loaded << " of " << files.size() << " workflows loaded\n";
}

TEST(RealWorkflows, PngPairsConvertToThePromptThatRan) {
  const fs::path dir = corpus_dir() / "from_png";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no PNG-derived pairs at " << dir;
  NodeRegistry registry = testing::make_test_registry();
  size_t pairs = 0;
  for (const auto& path : corpus_files()) {
    const std::string file = path.filename().string();
    if (path.parent_path() != dir || file.rfind("ui_", 0) != 0) continue;
    fs::path api = dir / ("api_" + file.substr(3));
    if (!fs::exists(api)) continue;
    SCOPED_TRACE(file);
    Workflow got = load_workflow_file(path, registry);
    Workflow ran = load_workflow_file(api, registry);
    expect_matches_prompt(got, ran, registry, file);
    ++pairs;
  }
  std::cout << pairs << " graph/prompt pairs compared\n";
  EXPECT_GT(pairs, 0u);
}

}  // namespace
}  // namespace sdflow
