// The CLI's promises: exit codes (0 ok, 1 run failed, 2 usage/validation), messages naming
// node and input, no crash on hostile files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/cli_util.h"

namespace sdflow::test {
namespace {

const std::filesystem::path kFixtures = std::filesystem::path(SDFLOW_SOURCE_DIR) / "tests/workflow/fixtures";

// ComfyUI's default txt2img in API form, with one input replaced.
nlohmann::json default_api() {
  return nlohmann::json::parse(slurp(kFixtures / "default_api.json"));
}

class Cli : public ::testing::Test {
 protected:
  CommandResult validate(const nlohmann::json& wf, const std::string& extra = "") {
    auto path = tmp.write("wf.json", wf.dump());
    return run_sdflow("validate " + q(path) + " " + extra, tmp);
  }
  TempDir tmp;
};

TEST_F(Cli, HelpListsCommandsAndComfyFlags) {
  auto r = run_sdflow("--help", tmp);
  EXPECT_EQ(r.exit_code, 0);
  for (const char* s : {"run", "validate", "plan", "nodes", "info", "make-checkpoint", "make-lora", "--lowvram",
                        "--novram", "--gpu-only", "--reserve-vram", "--vram-budget", "--fp8_e4m3fn-unet",
                        "--use-sage-attention", "--cache-none"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

TEST_F(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(run_sdflow("", tmp).exit_code, 2);
  EXPECT_EQ(run_sdflow("frobnicate", tmp).exit_code, 2);
  EXPECT_EQ(run_sdflow("validate", tmp).exit_code, 2);
  auto r = run_sdflow("--lowvram --novram nodes", tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not allowed with"), std::string::npos) << r.err;
  EXPECT_EQ(run_sdflow("validate " + q(tmp.path() / "missing.json"), tmp).exit_code, 2);
}

TEST_F(Cli, NodesJsonIsComfyObjectInfo) {
  auto r = run_sdflow("nodes --json", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("KSampler"));
  EXPECT_EQ(j["KSampler"]["input"]["required"]["seed"][0], "INT");
  EXPECT_EQ(j["KSampler"]["input"]["required"]["seed"][1]["max"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(j["KSampler"]["output"], nlohmann::json::array({"LATENT"}));
  EXPECT_TRUE(j["SaveImage"]["output_node"].get<bool>());
  EXPECT_EQ(j["EmptyLatentImage"]["input"]["required"]["width"][1]["default"], 512);
}

TEST_F(Cli, ValidatesComfysDefaultWorkflowInBothFormats) {
  for (const char* f : {"default_api.json", "default_ui.json", "default_ui_v1.json"}) {
    auto r = run_sdflow("validate " + q(kFixtures / f), tmp);
    EXPECT_EQ(r.exit_code, 0) << f << ": " << r.err;
  }
  auto repo_demo = std::filesystem::path(SDFLOW_SOURCE_DIR) / "workflows/sd15_txt2img.json";
  EXPECT_EQ(run_sdflow("validate " + q(repo_demo), tmp).exit_code, 0);
}

struct BadCase {
  const char* name;
  void (*mutate)(nlohmann::json&);
  const char* expect_kind;
  const char* expect_text;  // must appear in stderr
};

TEST_F(Cli, RejectsEachKindOfBadWorkflowNamingNodeAndInput) {
  const BadCase cases[] = {
      {"unknown class", [](nlohmann::json& w) { w["3"]["class_type"] = "NoSuchNode"; }, "invalid_prompt", "NoSuchNode"},
      {"missing input", [](nlohmann::json& w) { w["3"]["inputs"].erase("steps"); }, "required_input_missing",
       "[KSampler #3] input 'steps'"},
      {"malformed link", [](nlohmann::json& w) { w["3"]["inputs"]["model"] = nlohmann::json::array({"4"}); },
       "bad_linked_input", "input 'model'"},
      {"dangling link", [](nlohmann::json& w) { w["3"]["inputs"]["model"] = {"99", 0}; }, "link_to_missing_node",
       "input 'model'"},
      {"slot out of range", [](nlohmann::json& w) { w["3"]["inputs"]["model"] = {"4", 7}; },
       "output_index_out_of_range", "input 'model'"},
      {"type mismatch", [](nlohmann::json& w) { w["3"]["inputs"]["model"] = {"4", 1}; }, "return_type_mismatch",
       "input 'model'"},
      {"wrong JSON type", [](nlohmann::json& w) { w["3"]["inputs"]["steps"] = "many"; }, "invalid_input_type",
       "input 'steps'"},
      {"below min", [](nlohmann::json& w) { w["3"]["inputs"]["steps"] = 0; }, "value_smaller_than_min",
       "input 'steps'"},
      {"above max", [](nlohmann::json& w) { w["3"]["inputs"]["cfg"] = 1000.0; }, "value_bigger_than_max",
       "input 'cfg'"},
      {"combo", [](nlohmann::json& w) { w["3"]["inputs"]["sampler_name"] = "warp_drive"; }, "value_not_in_list",
       "input 'sampler_name'"},
      {"path escape", [](nlohmann::json& w) { w["4"]["inputs"]["ckpt_name"] = "../../etc/passwd"; }, "path_escape",
       "input 'ckpt_name'"},
      {"cycle",
       [](nlohmann::json& w) {
         w["5"] = {{"class_type", "LatentUpscaleBy"},
                   {"inputs", {{"samples", {"3", 0}}, {"upscale_method", "nearest-exact"}, {"scale_by", 1.5}}}};
       },
       "dependency_cycle", "cycle"},
      {"no output", [](nlohmann::json& w) { w.erase("9"); }, "prompt_no_outputs", "no outputs"},
  };
  for (const auto& c : cases) {
    nlohmann::json wf = default_api();
    c.mutate(wf);
    auto r = validate(wf);
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect_kind), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect_text), std::string::npos) << c.name << ": " << r.err;
  }
}

TEST_F(Cli, ValidateJsonReportsAllProblemsAtOnce) {
  nlohmann::json wf = default_api();
  wf["3"]["inputs"]["steps"] = 0;
  wf["3"]["inputs"]["sampler_name"] = "nope";
  wf["5"]["inputs"].erase("width");
  auto r = validate(wf, "--json");
  EXPECT_EQ(r.exit_code, 2);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["ok"].get<bool>());
  EXPECT_EQ(j["problems"].size(), 3u) << r.out;
}

TEST_F(Cli, MalformedJsonIsAUsageErrorWithAPosition) {
  auto path = tmp.write("bad.json", "{\n  \"3\": {\"class_type\": \"KSampler\",, }\n}");
  auto r = run_sdflow("validate " + q(path), tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
}

TEST_F(Cli, StrictChecksModelFilesExist) {
  auto models = tmp.path() / "models";
  std::filesystem::create_directories(models / "checkpoints");
  nlohmann::json wf = default_api();
  auto r = validate(wf, "--strict --models-dir " + q(models));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("file_not_found"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ckpt_name"), std::string::npos) << r.err;
  // Without --strict no model file is needed.
  EXPECT_EQ(validate(wf, "--models-dir " + q(models)).exit_code, 0);
}

TEST_F(Cli, SetOverridesAreCheckedAndApplied) {
  auto wf = tmp.write("wf.json", default_api().dump());
  EXPECT_EQ(run_sdflow("validate " + q(wf) + " --set 3.steps=0", tmp).exit_code, 2);
  EXPECT_EQ(run_sdflow("validate " + q(wf) + " --set 3.steps=30", tmp).exit_code, 0);
  auto r = run_sdflow("validate " + q(wf) + " --set 42.steps=30", tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("42"), std::string::npos) << r.err;
}

TEST_F(Cli, HostileSafetensorsGiveAMessageNotACrash) {
  struct Case {
    const char* name;
    std::string bytes;
  };
  auto le64 = [](uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return s;
  };
  const std::string header = R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}})";
  const Case cases[] = {
      {"empty", ""},
      {"short", "abc"},
      {"huge header length", le64(uint64_t{1} << 62) + "{}"},
      {"not json", le64(5) + "hello"},
      {"overflowing shape", le64(header.size()) + header + std::string(16, '\0')},
  };
  for (const auto& c : cases) {
    auto p = tmp.write(std::string(c.name) + ".safetensors", c.bytes);
    auto r = run_sdflow("info " + q(p), tmp);
    EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << c.name << " exit " << r.exit_code;
    EXPECT_NE(r.err.find(p.filename().string()), std::string::npos) << c.name << ": " << r.err;
  }
}

TEST_F(Cli, InfoDescribesAValidFile) {
  // 2 float32 values, metadata.
  const std::string header = R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header + std::string(8, '\0');
  auto p = tmp.write("ok.safetensors", bytes);
  auto r = run_sdflow("info --json --tensors " + q(p), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tensor_count"], 1);
  EXPECT_EQ(j["metadata"]["format"], "pt");
}

TEST_F(Cli, MakeLoraWritesALoraForATinyCheckpoint) {
  auto ckpt = tmp.path() / "tiny.safetensors";
  ASSERT_EQ(run_sdflow("make-checkpoint --tiny --dtype fp32 " + q(ckpt), tmp).exit_code, 0);
  for (const char* format : {"kohya", "peft"}) {
    auto out = tmp.path() / (std::string(format) + ".safetensors");
    auto r = run_sdflow(
        "make-lora --for " + q(ckpt) + " --rank 2 --seed 3 --alpha 1 --format " + format + " " + q(out), tmp);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto info = run_sdflow("info --json --tensors " + q(out), tmp);
    ASSERT_EQ(info.exit_code, 0) << info.err;
    const auto j = nlohmann::json::parse(info.out);
    EXPECT_EQ(j["metadata"]["ss_network_dim"], "2");
    const std::string names = j["tensors"].dump();
    EXPECT_NE(
        names.find(std::string(format) == "kohya" ? "lora_unet_input_blocks_1_1_proj_in.lora_down.weight"
                                                  : "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"),
        std::string::npos);
    EXPECT_NE(names.find(std::string(format) == "kohya"
                             ? "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha"
                             : "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight"),
              std::string::npos);
  }
  EXPECT_EQ(
      run_sdflow("make-lora --for " + q(ckpt) + " --format lycoris " + q(tmp.path() / "x.safetensors"), tmp)
          .exit_code,
      2);
  EXPECT_EQ(run_sdflow("make-lora --for " + q(ckpt) + " --rank 0 " + q(tmp.path() / "x.safetensors"), tmp)
                .exit_code,
            2);
  auto missing = run_sdflow(
      "make-lora --for " + q(tmp.path() / "none.safetensors") + " " + q(tmp.path() / "x.safetensors"), tmp);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("none.safetensors"), std::string::npos) << missing.err;
}

TEST_F(Cli, PlanPredictsEachNodeAndTheFlagsThatFit) {
  auto models = tmp.path() / "models";
  std::filesystem::create_directories(models / "checkpoints");
  auto r =
      run_sdflow("make-checkpoint --tiny --arch sd15 " + q(models / "checkpoints" / "tiny.safetensors"), tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json wf = default_api();
  wf["4"]["inputs"]["ckpt_name"] = "tiny.safetensors";
  auto path = tmp.write("wf.json", wf.dump());

  r = run_sdflow("--models-dir " + q(models) + " plan " + q(path) + " --vram-budget 2 --json", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["budget_bytes"], int64_t{2} << 30);
  EXPECT_EQ(j["budget_source"], "--vram-budget");
  EXPECT_EQ(j["models"].size(), 3u);
  ASSERT_EQ(j["nodes"].size(), 4u);  // two text encodes, the sampler, the decode
  EXPECT_EQ(j["nodes"][2]["class_type"], "KSampler");
  EXPECT_EQ(j["nodes"][2]["shape"], "latent [1, 4, 64, 64]");
  EXPECT_EQ(j["modes"].size(), 4u);
  ASSERT_FALSE(j["advice"].empty());
  EXPECT_EQ(j["advice"][0].get<std::string>().rfind("fits in 2.00 GiB", 0), 0u) << j["advice"][0];

  r = run_sdflow("--models-dir " + q(models) + " plan " + q(path) + " --vram-budget 2", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* s :
       {"unet@4", "clip_l@4", "vae@4", "KSampler", "VAEDecode", "--lowvram", "fits in 2.00 GiB"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;

  // A missing model is a validation error, before anything is read.
  wf["4"]["inputs"]["ckpt_name"] = "absent.safetensors";
  path = tmp.write("wf2.json", wf.dump());
  r = run_sdflow("--models-dir " + q(models) + " plan " + q(path), tmp);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("absent.safetensors"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace sdflow::test
