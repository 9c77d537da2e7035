// Conditioning nodes (COMFY_COMPAT.md 3.2) through the registry.
#include <gtest/gtest.h>

#include "core/error.h"
#include "node_test_util.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::NodeHarness;
using testing::prim;

CondEntry entry(at::Tensor cond, std::optional<at::Tensor> pooled = std::nullopt) {
  CondEntry e;
  e.cond = std::move(cond);
  if (pooled) e.options["pooled_output"] = *pooled;
  return e;
}

Value cond(std::vector<CondEntry> entries) {
  ConditioningValue c;
  c.entries = std::move(entries);
  return make_conditioning(std::move(c));
}

std::shared_ptr<const ConditioningValue> as_cond(const ValueList& out) {
  return out.at(0).as<ConditioningValue>();
}

const at::Tensor& tensor_opt(const CondEntry& e, const std::string& key) {
  return std::get<at::Tensor>(e.options.at(key));
}

TEST(ConditioningCombine, Concatenates) {
  NodeHarness h;
  auto out = as_cond(h.run(
      "ConditioningCombine",
      inputs({{"conditioning_1", cond({entry(at::ones({1, 77, 8}))})},
              {"conditioning_2", cond({entry(at::zeros({1, 77, 8})), entry(at::zeros({1, 154, 8}))})}})));
  ASSERT_EQ(out->entries.size(), 3u);
  EXPECT_EQ(out->entries[0].cond.sum().item<float>(), 77 * 8);
  EXPECT_EQ(out->entries[2].cond.size(1), 154);
}

TEST(ConditioningAverage, PadsShortFromWithZeros) {
  NodeHarness h;
  // to: 154 tokens of 1; from: 77 tokens of 3 → first half 0.25·1 + 0.75·3, second half 0.25.
  auto out = as_cond(
      h.run("ConditioningAverage",
            inputs({{"conditioning_to", cond({entry(at::ones({1, 154, 4}), at::ones({1, 2}))})},
                    {"conditioning_from", cond({entry(at::full({1, 77, 4}, 3.f), at::full({1, 2}, 5.f))})},
                    {"conditioning_to_strength", prim(0.25)}})));
  ASSERT_EQ(out->entries.size(), 1u);
  const at::Tensor& t = out->entries[0].cond;
  EXPECT_EQ(t.sizes(), at::IntArrayRef({1, 154, 4}));
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), 2.5f);
  EXPECT_FLOAT_EQ(t[0][100][3].item<float>(), 0.25f);
  EXPECT_FLOAT_EQ(tensor_opt(out->entries[0], "pooled_output")[0][1].item<float>(), 0.25f + 0.75f * 5.f);
}

TEST(ConditioningAverage, CutsLongFromAndCopiesMissingPooled) {
  NodeHarness h;
  auto out = as_cond(h.run(
      "ConditioningAverage",
      inputs({{"conditioning_to", cond({entry(at::zeros({1, 77, 4})), entry(at::zeros({1, 77, 4}))})},
              {"conditioning_from",
               cond({entry(at::ones({1, 231, 4}), at::full({1, 2}, 7.f)), entry(at::ones({1, 77, 4}))})},
              {"conditioning_to_strength", prim(0.5)}})));
  ASSERT_EQ(out->entries.size(), 2u);
  for (const CondEntry& e : out->entries) {
    EXPECT_EQ(e.cond.size(1), 77);
    EXPECT_FLOAT_EQ(e.cond[0][76][0].item<float>(), 0.5f);
    // No pooled output on "to": the "from" one, blended with itself.
    EXPECT_FLOAT_EQ(tensor_opt(e, "pooled_output")[0][0].item<float>(), 7.f);
  }
  // Mismatched widths are an error, with the node's prefix.
  EXPECT_THROW(
      h.run("ConditioningAverage", inputs({{"conditioning_to", cond({entry(at::zeros({1, 77, 4}))})},
                                           {"conditioning_from", cond({entry(at::zeros({1, 77, 8}))})},
                                           {"conditioning_to_strength", prim(0.5)}})),
      Error);
}

TEST(ConditioningZeroOut, ZerosTensorAndPooledKeepsOtherKeys) {
  NodeHarness h;
  CondEntry e = entry(at::ones({1, 77, 4}), at::ones({1, 2}));
  e.options["width"] = int64_t{1024};
  auto out = as_cond(h.run("ConditioningZeroOut", inputs({{"conditioning", cond({e})}})));
  const CondEntry& z = out->entries.at(0);
  EXPECT_EQ(z.cond.count_nonzero().item<int64_t>(), 0);
  EXPECT_EQ(z.cond.sizes(), at::IntArrayRef({1, 77, 4}));
  EXPECT_EQ(tensor_opt(z, "pooled_output").count_nonzero().item<int64_t>(), 0);
  EXPECT_EQ(std::get<int64_t>(z.options.at("width")), 1024);
  // The input is untouched (values are shared).
  EXPECT_EQ(e.cond.sum().item<float>(), 77 * 4);
}

TEST(ConditioningSetArea, SetsAreaInLatentCells) {
  NodeHarness h;
  auto out =
      as_cond(h.run("ConditioningSetArea", inputs({{"conditioning", cond({entry(at::ones({1, 77, 4}))})},
                                                   {"width", prim(200)},
                                                   {"height", prim(64)},
                                                   {"x", prim(16)},
                                                   {"y", prim(8)},
                                                   {"strength", prim(0.5)}})));
  const CondEntry& e = out->entries.at(0);
  EXPECT_EQ(std::get<std::vector<int64_t>>(e.options.at("area")), (std::vector<int64_t>{8, 25, 1, 2}));
  EXPECT_EQ(std::get<double>(e.options.at("strength")), 0.5);
  EXPECT_EQ(std::get<bool>(e.options.at("set_area_to_bounds")), false);
}

TEST(ConditioningNodes, RejectMalformedTensors) {
  NodeHarness h;
  EXPECT_THROW(h.run("ConditioningZeroOut", inputs({{"conditioning", cond({entry(at::ones({77, 4}))})}})),
               Error);
}

TEST(ConditioningNodes, Schemas) {
  NodeHarness h;
  const NodeSchema* s = h.registry().find("ConditioningSetArea");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->inputs.size(), 6u);
  EXPECT_EQ(s->inputs[1].name, "width");
  EXPECT_EQ(s->inputs[1].min, 64);
  EXPECT_EQ(s->inputs[1].step, 8);
  EXPECT_EQ(s->inputs[5].max, 10.0);
  EXPECT_EQ(h.registry().find("ConditioningZeroOut")->category, "advanced/conditioning");
  EXPECT_EQ(h.registry().find("ConditioningAverage")->inputs[2].default_value, 1.0);
}

}  // namespace
}  // namespace sdflow::nodes
