#include <gtest/gtest.h>

#include "core/error.h"
#include "nodeapi/registry.h"
#include "nodeapi/schema.h"
#include "nodeapi/value.h"

namespace sdflow {
namespace {

TEST(Schema, ObjectInfoShapeMatchesComfy) {
  NodeSchema s = SchemaBuilder("KSampler")
                     .category("sampling")
                     .socket("model", "MODEL")
                     .input(seed_input("seed"))
                     .input(combo_input("sampler_name", {"euler", "heun"}))
                     .input(optional(float_input("denoise", 1.0, 0.0, 1.0, 0.01)))
                     .output("LATENT")
                     .build();
  nlohmann::json info = s.to_object_info();
  EXPECT_EQ(info["input"]["required"]["model"], nlohmann::json::array({"MODEL"}));
  EXPECT_EQ(info["input"]["required"]["seed"][0], "INT");
  EXPECT_EQ(info["input"]["required"]["seed"][1]["max"].get<uint64_t>(), UINT64_MAX);
  EXPECT_TRUE(info["input"]["required"]["seed"][1]["control_after_generate"].get<bool>());
  EXPECT_EQ(info["input"]["required"]["sampler_name"][0], nlohmann::json::array({"euler", "heun"}));
  EXPECT_EQ(info["input"]["optional"]["denoise"][0], "FLOAT");
  EXPECT_EQ(info["output"], nlohmann::json::array({"LATENT"}));
  EXPECT_FALSE(info["output_node"].get<bool>());
  EXPECT_EQ(info["input_order"]["required"], nlohmann::json::array({"model", "seed", "sampler_name"}));
}

TEST(Schema, WidgetsAreThePrimitiveInputsNotForcedToSockets) {
  InputSpec seed = seed_input("seed");
  EXPECT_TRUE(seed.is_widget());
  seed.force_input = true;
  EXPECT_FALSE(seed.is_widget());
  InputSpec model;
  model.type = "MODEL";
  EXPECT_FALSE(model.is_widget());
}

TEST(Schema, TypeCompatibilityFollowsComfy) {
  EXPECT_TRUE(types_compatible("LATENT", "LATENT"));
  EXPECT_TRUE(types_compatible("*", "LATENT"));
  EXPECT_TRUE(types_compatible("IMAGE", "*"));
  EXPECT_TRUE(types_compatible("IMAGE,MASK", "MASK"));
  EXPECT_FALSE(types_compatible("IMAGE", "LATENT"));
}

TEST(Registry, RejectsDuplicatesAndListsSorted) {
  NodeRegistry r;
  r.add(SchemaBuilder("B").build(), nullptr);
  r.add(SchemaBuilder("A").build(), nullptr);
  EXPECT_THROW(r.add(SchemaBuilder("A").build(), nullptr), Error);
  auto all = r.schemas();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]->class_type, "A");
  EXPECT_EQ(r.create("A"), nullptr);  // schema-only entry
  EXPECT_EQ(r.find("C"), nullptr);
}

TEST(Value, IntegersCoverComfysSeedRange) {
  Value big = Value::primitive(nlohmann::json(UINT64_MAX));
  EXPECT_EQ(big.as_uint64(), UINT64_MAX);
  EXPECT_THROW(big.as_int(), Error);
  Value neg = Value::primitive(-5);
  EXPECT_EQ(neg.as_int(), -5);
  EXPECT_DOUBLE_EQ(Value::primitive(2.5).as_float(), 2.5);
  EXPECT_THROW(Value::primitive("x").as_float(), Error);
  EXPECT_THROW(Value::primitive(1).as<Object>(), Error);
}

}  // namespace
}  // namespace sdflow
