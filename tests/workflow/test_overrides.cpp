#include <gtest/gtest.h>

#include "core/error.h"
#include "workflow/api_format.h"
#include "workflow/overrides.h"
#include "workflow/registry_fixture.h"

namespace sdflow {
namespace {

using nlohmann::json;

class Overrides : public ::testing::Test {
 protected:
  NodeRegistry registry = testing::make_test_registry();
  Workflow wf = workflow_from_api(nlohmann::ordered_json::parse(testing::read_fixture("default_api.json")));

  std::string usage_error(const std::string& spec, const NodeRegistry* reg) {
    try {
      apply_override(wf, spec, reg);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "no error for " << spec;
    return "";
  }
};

TEST_F(Overrides, ParsesSpec) {
  OverrideSpec o = parse_override("My v1.5 loader.ckpt_name=a=b.safetensors");
  EXPECT_EQ(o.node, "My v1.5 loader");
  EXPECT_EQ(o.input, "ckpt_name");
  EXPECT_EQ(o.value, "a=b.safetensors");
  EXPECT_EQ(parse_override("3.text=").value, "");
}

TEST_F(Overrides, MalformedSpecs) {
  for (const char* spec : {"3.steps", "steps=3", ".steps=3", "3.=3", ""})
    EXPECT_THROW(parse_override(spec), Error) << spec;
}

TEST_F(Overrides, NumbersAndBooleansAreJson) {
  apply_override(wf, "3.steps=30", &registry);
  apply_override(wf, "3.cfg=6.5", &registry);
  apply_override(wf, "3.seed=18446744073709551615", &registry);
  const json& in = wf.find("3")->inputs;
  EXPECT_EQ(in["steps"], 30);
  EXPECT_TRUE(in["steps"].is_number_integer());
  EXPECT_EQ(in["cfg"], 6.5);
  EXPECT_EQ(in["seed"].get<uint64_t>(), UINT64_MAX);
}

TEST_F(Overrides, TextInputsTakeTheTextAsIs) {
  apply_override(wf, "6.text=42", &registry);
  EXPECT_EQ(wf.find("6")->inputs["text"], "42");
  apply_override(wf, "6.text=true", nullptr);  // current value is a string
  EXPECT_EQ(wf.find("6")->inputs["text"], "true");
  apply_override(wf, "6.text=\"quoted\"", &registry);
  EXPECT_EQ(wf.find("6")->inputs["text"], "quoted");
  apply_override(wf, "3.sampler_name=dpmpp_2m", &registry);
  EXPECT_EQ(wf.find("3")->inputs["sampler_name"], "dpmpp_2m");
  apply_override(wf, "3.steps=lots", &registry);  // not JSON: text, validation rejects it
  EXPECT_EQ(wf.find("3")->inputs["steps"], "lots");
  apply_override(wf, "3.steps=[\"4\", 0]", &registry);  // never a link
  EXPECT_EQ(wf.find("3")->inputs["steps"], "[\"4\", 0]");
}

TEST_F(Overrides, NodeByTitleAndClassType) {
  apply_override(wf, "Load Checkpoint.ckpt_name=sdxl.safetensors", &registry);
  EXPECT_EQ(wf.find("4")->inputs["ckpt_name"], "sdxl.safetensors");
  apply_override(wf, "EmptyLatentImage.width=768", &registry);
  EXPECT_EQ(wf.find("5")->inputs["width"], 768);
}

TEST_F(Overrides, IdWinsOverTitle) {
  wf.find("5")->title = "3";
  apply_override(wf, "3.steps=9", &registry);
  EXPECT_EQ(wf.find("3")->inputs["steps"], 9);
}

TEST_F(Overrides, AmbiguousTitleIsAnError) {
  std::string msg = usage_error("CLIP Text Encode (Prompt).text=x", &registry);
  EXPECT_NE(msg.find("6, 7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CLIP Text Encode (Prompt)"), std::string::npos) << msg;
  msg = usage_error("CLIPTextEncode.text=x", &registry);
  EXPECT_NE(msg.find("class_type"), std::string::npos) << msg;
}

TEST_F(Overrides, UnknownNodeOrInputIsAnError) {
  EXPECT_NE(usage_error("42.steps=3", &registry).find("\"42\""), std::string::npos);
  std::string msg = usage_error("3.step=3", &registry);
  EXPECT_NE(msg.find("[KSampler #3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"step\""), std::string::npos) << msg;
  msg = usage_error("3.step=3", nullptr);
  EXPECT_NE(msg.find("inputs: "), std::string::npos) << msg;
}

TEST_F(Overrides, LinksSocketsAndNullAreRefused) {
  std::string msg = usage_error("3.model=5", nullptr);
  EXPECT_NE(msg.find("linked"), std::string::npos) << msg;
  msg = usage_error("3.positive=5", &registry);
  EXPECT_NE(msg.find("CONDITIONING socket"), std::string::npos) << msg;
  msg = usage_error("3.steps=null", &registry);
  EXPECT_NE(msg.find("null"), std::string::npos) << msg;
}

TEST_F(Overrides, OptionalInputCanBeAddedWithARegistry) {
  wf.find("3")->inputs.erase("denoise");
  apply_override(wf, "3.denoise=0.5", &registry);
  EXPECT_EQ(wf.find("3")->inputs["denoise"], 0.5);
}

TEST_F(Overrides, SeveralInOrder) {
  apply_overrides(wf, {"3.steps=10", "3.steps=11"}, &registry);
  EXPECT_EQ(wf.find("3")->inputs["steps"], 11);
}

}  // namespace
}  // namespace sdflow
