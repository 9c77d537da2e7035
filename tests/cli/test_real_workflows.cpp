// Every real workflow in ../shared/data/comfyui-workflows either validates (when sdflow knows
// all its node types) or is refused with a message naming the missing node type.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <set>

#include "sdflow/engine.h"
#include "sdflow/error.h"

namespace sdflow {
namespace {

TEST(RealWorkflows, ValidateOrNameTheMissingNodeType) {
  const std::filesystem::path dir = std::filesystem::path(SDFLOW_SHARED_DIR) / "data/comfyui-workflows";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "../shared/data/comfyui-workflows not present";
  EngineOptions opts;
  opts.memory.vram = VramMode::kCpu;
  auto engine = Engine::create(opts);
  const std::set<std::string> known = [&] {
    std::set<std::string> s;
    auto j = nlohmann::json::parse(engine->node_schemas_json());
    for (const auto& [k, v] : j.items()) s.insert(k);
    return s;
  }();
  int files = 0, valid = 0, refused_unknown = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    ++files;
    const std::string name = entry.path().lexically_relative(dir).string();
    WorkflowHandle wf;
    ASSERT_NO_THROW(wf = engine->load_workflow(entry.path().string())) << name;
    auto api = nlohmann::json::parse(wf.to_api_json());
    std::set<std::string> missing;
    for (const auto& [id, node] : api.items()) {
      const std::string cls = node.value("class_type", "");
      if (!known.count(cls)) missing.insert(cls);
    }
    ValidationResult v = engine->validate(wf);
    if (missing.empty()) {
      // Only problems that come from the file itself (values that ComfyUI's current schemas
      // reject) are allowed, and they must name node and input.
      for (const auto& p : v.problems) {
        EXPECT_FALSE(p.node_id.empty()) << name << ": " << p.message;
        std::cout << "  note " << name << ": " << p.kind << " [" << p.class_type << " #" << p.node_id << "] "
                  << p.input << ": " << p.message << "\n";
      }
      if (v.ok) ++valid;
      std::cout << (v.ok ? "valid    " : "problems ") << name << "\n";
    } else {
      ++refused_unknown;
      EXPECT_FALSE(v.ok) << name;
      const std::string text = v.text();
      for (const auto& cls : missing) {
        const std::string shown = cls.empty() ? "class_type" : cls;
        EXPECT_NE(text.find(shown), std::string::npos) << name << " does not name " << shown << ":\n" << text;
      }
      std::cout << "refused  " << name << " (unknown:";
      for (const auto& m : missing) std::cout << " " << (m.empty() ? "<none>" : m);
      std::cout << ")\n";
    }
  }
  std::cout << files << " workflows: " << valid << " valid, " << refused_unknown << " need node types sdflow lacks\n";
  EXPECT_EQ(files, 55);
}

}  // namespace
}  // namespace sdflow
