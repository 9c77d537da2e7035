// The split / sub-quadratic / basic attention kernels against ComfyUI's attention_split,
// attention_sub_quad and attention_basic on random q, k, v (tests/data/attention, made by
// tools/goldens/make_attention_goldens.py with each case's free-memory figure fixed), and their
// chunk plans against the chunk sizes ComfyUI chose for the same figures.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "models/common/attention.h"
#include "models/loader/state_dict.h"

namespace sdflow {
namespace {

const std::string kDir = SDFLOW_SOURCE_DIR "/tests/data/attention/";

struct Golden {
  StateDict tensors;
  nlohmann::json cases;
};

const Golden* golden() {
  static const Golden* g = [] () -> const Golden* {
    std::ifstream json(kDir + "attention_goldens.json");
    if (!json || !std::ifstream(kDir + "attention_goldens.safetensors")) return nullptr;
    std::stringstream ss;
    ss << json.rdbuf();
    return new Golden{StateDict::open(kDir + "attention_goldens.safetensors"), nlohmann::json::parse(ss.str())["cases"]};
  }();
  return g;
}

#define REQUIRE_GOLDEN()                                                                            \
  if (!golden())                                                                                    \
  GTEST_SKIP() << "no " << kDir << "attention_goldens.*: run tools/goldens/make_attention_goldens.py " \
                                   "--comfy <ComfyUI dir>"

at::ScalarType dtype_of(const nlohmann::json& c) { return c["dtype"] == "bfloat16" ? at::kBFloat16 : at::kFloat; }

ops::AttentionOptions options_of(const nlohmann::json& c) {
  ops::AttentionOptions o;
  o.heads = c["heads"];
  o.upcast = !c["prec"].is_null();
  const int64_t free = c["free"];
  o.free_memory = [free] { return free; };
  const std::string name = c["name"];
  if (golden()->tensors.has(name + ".mask")) o.mask = golden()->tensors.at(name + ".mask").to(dtype_of(c));
  return o;
}

using Kernel = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, const ops::AttentionOptions&);

struct KernelCase {
  const char* name;  // ComfyUI's function, the output's key suffix
  Kernel kernel;
};

void PrintTo(const KernelCase& k, std::ostream* os) { *os << k.name; }

class AttentionGolden : public ::testing::TestWithParam<KernelCase> {};

// fp32: the same operations in the same order on the same libtorch; only BLAS blocking can
// differ, so 1e-5 of the output's scale. bf16: one differently rounded bf16 step moves an output
// by up to a bf16 ulp (2^-8 of its size), hence 4e-3 of the scale.
TEST_P(AttentionGolden, MatchesComfyUI) {
  REQUIRE_GOLDEN();
  const KernelCase& kc = GetParam();
  for (const nlohmann::json& c : golden()->cases) {
    const std::string name = c["name"];
    const at::ScalarType dt = dtype_of(c);
    const StateDict& t = golden()->tensors;
    const at::Tensor q = t.at(name + ".q").to(dt), k = t.at(name + ".k").to(dt), v = t.at(name + ".v").to(dt);
    const at::Tensor out = kc.kernel(q, k, v, options_of(c));
    const at::Tensor& ref = t.at(name + "." + kc.name);
    ASSERT_EQ(out.sizes(), ref.sizes()) << name;
    EXPECT_EQ(out.scalar_type(), dt) << name;
    const double scale = ref.abs().max().item<double>();
    const double max_diff = (out.to(at::kFloat) - ref).abs().max().item<double>();
    const double tol = dt == at::kFloat ? 1e-5 : 4e-3;
    EXPECT_LE(max_diff, tol * scale) << name << ": max |diff| " << max_diff << " of max |ref| " << scale;
    std::printf("%-9s %-16s max|diff|/max|ref| = %.3g\n", kc.name, name.c_str(), max_diff / scale);
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, AttentionGolden,
                         ::testing::Values(KernelCase{"basic", &ops::attention_basic},
                                           KernelCase{"split", &ops::attention_split},
                                           KernelCase{"sub_quad", &ops::attention_sub_quad}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(AttentionPlan, SplitSlicesAsComfyUIDid) {
  REQUIRE_GOLDEN();
  for (const nlohmann::json& c : golden()->cases) {
    const int64_t element = !c["prec"].is_null() ? 4 : (c["dtype"] == "bfloat16" ? 2 : 4);
    const int64_t bh = c["batch"].get<int64_t>() * c["heads"].get<int64_t>();
    const ops::SplitPlan p = ops::split_attention_plan(bh, c["nq"], c["nk"], element, c["free"]);
    EXPECT_EQ(p.slice, c["split_slice"].get<int64_t>()) << c["name"];
  }
}

TEST(AttentionPlan, SubQuadChunksAsComfyUIDid) {
  REQUIRE_GOLDEN();
  for (const nlohmann::json& c : golden()->cases) {
    const bool upcast = !c["prec"].is_null() && c["dtype"] != "float32";
    EXPECT_EQ(upcast, c["sub_quad_upcast"].get<bool>()) << c["name"];
    const int64_t bytes = upcast ? 4 : (c["dtype"] == "bfloat16" ? 2 : 4);
    const int64_t bh = c["batch"].get<int64_t>() * c["heads"].get<int64_t>();
    const ops::SubQuadPlan p = ops::sub_quad_plan(bh, c["nk"], bytes, c["free"]);
    EXPECT_EQ(p.query_chunk, c["sub_quad_query_chunk"].get<int64_t>()) << c["name"];
    EXPECT_EQ(p.kv_chunk, c["sub_quad_kv_chunk"].get<int64_t>()) << c["name"];
  }
}

TEST(AttentionPlan, SplitStepsArePowersOfTwoAndOnlyDividingSlicesAreTaken) {
  // 3 · 8 · 1024 · 1024 · 2 bytes = 48 MiB of scores.
  EXPECT_EQ(ops::split_attention_plan(8, 1024, 1024, 2, int64_t{64} << 20).steps, 1);
  EXPECT_EQ(ops::split_attention_plan(8, 1024, 1024, 2, int64_t{24} << 20).steps, 2);
  EXPECT_EQ(ops::split_attention_plan(8, 1024, 1024, 2, int64_t{23} << 20).steps, 4);
  EXPECT_EQ(ops::split_attention_plan(8, 1024, 1024, 2, int64_t{23} << 20).slice, 256);
  EXPECT_EQ(ops::split_attention_plan(8, 1000, 1000, 2, int64_t{1} << 20).slice, 1000);  // 64 ∤ 1000
}

TEST(AttentionSplit, MoreThan64SlicesIsAnOutOfMemoryError) {
  ops::AttentionOptions o;
  o.heads = 1;
  o.free_memory = [] { return int64_t{1024}; };
  const at::Tensor q = at::randn({1, 256, 8});
  try {
    ops::attention_split(q, q, q, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
    EXPECT_NE(std::string(e.what()).find("attention_split"), std::string::npos) << e.what();
  }
}

TEST(Attention, BadShapesAreClearErrors) {
  ops::AttentionOptions o;
  o.heads = 3;
  const at::Tensor q = at::randn({1, 4, 8});
  EXPECT_THROW(ops::attention(q, q, q, o), Error);  // 3 heads do not divide 8 channels
  o.heads = 2;
  o.mask = at::zeros({4, 5});  // 5 keys, 4 given
  EXPECT_THROW(ops::attention_sub_quad(q, q, q, o), Error);
  o.mask = at::zeros({4, 4}, at::kBool);
  EXPECT_THROW(ops::attention_split(q, q, q, o), Error);
}

// Every backend of the dispatcher gives the same attention (fp32, sage aside).
TEST(Attention, DispatcherBackendsAgree) {
  at::manual_seed(3);
  const at::Tensor q = at::randn({2, 70, 32}), k = at::randn({2, 20, 32}), v = at::randn({2, 20, 32});
  ops::AttentionOptions o;
  o.heads = 4;
  o.mask = at::randn({2, 1, 1, 20});
  const at::Tensor ref = ops::attention_basic(q, k, v, o);
  for (AttentionBackend b : {AttentionBackend::kDefault, AttentionBackend::kPytorch, AttentionBackend::kSplit,
                             AttentionBackend::kQuad, AttentionBackend::kFlash}) {
    o.backend = b;
    o.free_memory = [] { return int64_t{4096}; };  // forces slices / key chunks
    EXPECT_LT((ops::attention(q, k, v, o) - ref).abs().max().item<double>(), 1e-5) << to_string(b);
  }
}

}  // namespace
}  // namespace sdflow
