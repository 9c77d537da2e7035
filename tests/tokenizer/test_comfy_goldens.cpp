// Compares the tokenizer with ComfyUI's own output, recorded by
// tools/goldens/make_tokenizer_goldens.py into tests/data/tokenizer/comfy_tokens.json.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "clip_vocab_fixture.h"
#include "models/tokenizer/clip_tokenize.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kGoldens = SDFLOW_SOURCE_DIR "/tests/data/tokenizer/comfy_tokens.json";

// ComfyUI's load_embed file search over the script's fixture files: every folder of the
// embeddings tree, the name as given or with .safetensors/.pt/.bin, never outside the folder.
class FixtureEmbeddings : public EmbeddingLookup {
 public:
  explicit FixtureEmbeddings(const json& fixtures) {
    dirs_.insert("");
    for (const json& f : fixtures) {
      std::string file = f.at("file").get<std::string>();
      files_[file] = f.at("rows").get<int>();
      std::string dir = fs::path(file).parent_path().generic_string();
      if (!dir.empty()) dirs_.insert(dir);
    }
  }

  std::optional<int> vectors_for(const std::string& name) override {
    std::string file = resolve(name);
    if (file.empty()) return std::nullopt;
    return files_.at(file);
  }

  // The fixture file a name finds, or "".
  std::string resolve(const std::string& name) const {
    if (name.empty() || name[0] == '/') return "";
    for (const std::string& dir : dirs_) {
      std::string path = (fs::path(dir) / name).lexically_normal().generic_string();
      while (!path.empty() && path.back() == '/') path.pop_back();
      if (path.rfind("..", 0) == 0 || (!dir.empty() && path.rfind(dir + "/", 0) != 0)) continue;
      for (const char* ext : {"", ".safetensors", ".pt", ".bin"}) {
        if (files_.count(path + ext)) return path + ext;
      }
    }
    return "";
  }

  static std::string stem(const std::string& file) { return fs::path(file).stem().string(); }

 private:
  std::map<std::string, int> files_;
  std::set<std::string> dirs_;
};

double weight_of(const json& w) {
  if (w.is_string()) {
    std::string s = w.get<std::string>();
    if (s == "nan") return std::nan("");
    return s == "inf" ? INFINITY : -INFINITY;
  }
  return w.get<double>();
}

bool same_weight(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

std::string describe(const json& token) { return token.dump(); }

// "" when equal, else where they first differ.
std::string compare(const json& expected, const TokenizedPrompt& got, const FixtureEmbeddings& emb) {
  std::ostringstream out;
  if (expected.size() != got.chunks.size()) {
    out << expected.size() << " chunks expected, got " << got.chunks.size();
    return out.str();
  }
  for (size_t c = 0; c < expected.size(); ++c) {
    const json& chunk = expected[c];
    const auto& mine = got.chunks[c];
    if (chunk.size() != mine.size()) {
      out << "chunk " << c << ": " << chunk.size() << " tokens expected, got " << mine.size();
      return out.str();
    }
    for (size_t i = 0; i < chunk.size(); ++i) {
      const json& tok = chunk[i];
      const WeightedToken& t = mine[i];
      bool ok = same_weight(weight_of(tok[1]), t.weight);
      std::string got_desc;
      if (tok[0].is_object()) {
        std::string stem =
            t.embedding >= 0 ? FixtureEmbeddings::stem(emb.resolve(got.embeddings[t.embedding])) : "";
        ok = ok && t.id == -1 && stem == tok[0].at("embedding").get<std::string>() &&
             t.embedding_row == tok[0].at("row").get<int>();
        got_desc = "embedding " + stem + " row " + std::to_string(t.embedding_row);
      } else {
        ok = ok && t.embedding == -1 && t.id == tok[0].get<int32_t>();
        got_desc = std::to_string(t.id);
      }
      if (!ok) {
        out << "chunk " << c << " position " << i << ": expected " << describe(tok) << ", got [" << got_desc
            << ", " << t.weight << "]";
        return out.str();
      }
    }
  }
  return "";
}

TEST(ComfyGoldens, MatchComfyUITokenizers) {
  if (!fs::exists(kGoldens))
    GTEST_SKIP()
        << "goldens not generated yet; run tools/goldens/make_tokenizer_goldens.py on the GPU machine ("
        << kGoldens << ")";
  std::ifstream in(kGoldens);
  json doc = json::parse(in);
  const json& meta = doc.at("meta");
  if (meta.value("ftfy", false))
    GTEST_SKIP() << "goldens were made with ftfy installed; sdflow does not emulate ftfy";
  ClipNormalization mode =
      meta.at("is_fast").get<bool>() ? ClipNormalization::kTokenizersBackend : ClipNormalization::kPythonSlow;
  const ClipBpe* bpe = sdflow::testing::shared_clip_bpe(mode);
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  std::cout << "[ goldens ] ComfyUI " << meta.value("comfyui_version", "?") << ", transformers "
            << meta.value("transformers_version", "?") << " (" << meta.value("tokenizer_class", "?")
            << (meta.at("is_fast").get<bool>() ? ", tokenizers backend" : ", slow") << "), "
            << doc.at("cases").size() << " prompts\n";

  FixtureEmbeddings emb(meta.at("embeddings"));
  int failures = 0, compared = 0, comfy_errors = 0, probes = 0;
  auto report = [&](const json& c, const std::string& what, const std::string& diff) {
    ++failures;
    if (failures <= 30)
      ADD_FAILURE() << what << " differs for prompt " << c.at("prompt").dump() << ": " << diff;
  };
  for (const json& c : doc.at("cases")) {
    std::string prompt = c.at("prompt").get<std::string>();
    if (c.contains("hf_ids")) {
      std::vector<int32_t> ids{bpe->start_token()};
      for (int32_t id : bpe->encode(prompt)) ids.push_back(id);
      ids.push_back(bpe->end_token());
      if (ids != c.at("hf_ids").get<std::vector<int32_t>>())
        report(c, "HF input_ids", "expected " + c.at("hf_ids").dump() + ", got " + json(ids).dump());
    }
    if (c.contains("error")) {
      ++comfy_errors;  // ComfyUI raised; see Note [Prompt chunking] for what sdflow does instead
      continue;
    }
    if (!c.contains("clip_l")) {
      ++probes;  // a Unicode probe: HF ids only
      continue;
    }
    ++compared;
    std::string d =
        compare(c.at("clip_l"), tokenize_with_weights(*bpe, prompt, TokenizeOptions::clip_l(), &emb), emb);
    if (!d.empty()) report(c, "clip_l", d);
    d = compare(c.at("clip_g"), tokenize_with_weights(*bpe, prompt, TokenizeOptions::clip_g(), &emb), emb);
    if (!d.empty()) report(c, "clip_g", d);
    if (c.contains("clip_l_no_embeddings")) {
      d = compare(c.at("clip_l_no_embeddings"),
                  tokenize_with_weights(*bpe, prompt, TokenizeOptions::clip_l()), emb);
      if (!d.empty()) report(c, "clip_l without embeddings", d);
    }
  }
  std::cout << "[ goldens ] " << compared << " prompts compared, " << probes << " Unicode probes (HF ids), "
            << comfy_errors << " where ComfyUI raised, " << failures << " differences\n";
  EXPECT_EQ(failures, 0);
  EXPECT_GT(compared, 0);
}

}  // namespace
}  // namespace sdflow
