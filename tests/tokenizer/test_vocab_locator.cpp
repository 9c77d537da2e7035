#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "models/tokenizer/vocab_locator.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

class VocabLocator : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("sdflow_vocab_" + std::to_string(std::random_device{}()));
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path make_vocab(const fs::path& rel, bool merges = true) {
    fs::path dir = root_ / rel;
    fs::create_directories(dir);
    std::ofstream(dir / "vocab.json") << "{}";
    if (merges) std::ofstream(dir / "merges.txt") << "#version: 0.2\n";
    return dir;
  }

  std::string error_of(const ClipVocabSearch& s) {
    try {
      locate_clip_vocab(s);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModel);
      return e.what();
    }
    ADD_FAILURE() << "expected an error";
    return "";
  }

  fs::path root_;
};

TEST_F(VocabLocator, SearchOrder) {
  fs::path cli = make_vocab("cli"), env = make_vocab("env");
  make_vocab("models/tokenizers/clip");
  make_vocab("ckpt/tokenizer");
  ClipVocabSearch s;
  s.cli_dir = cli.string();
  s.env_dir = env.string();
  s.models_dir = (root_ / "models").string();
  s.checkpoint_path = (root_ / "ckpt" / "model.safetensors").string();
  EXPECT_EQ(locate_clip_vocab(s).dir, cli.string());
  s.cli_dir.clear();
  EXPECT_EQ(locate_clip_vocab(s).dir, env.string());
  s.env_dir = "";
  EXPECT_EQ(fs::path(locate_clip_vocab(s).dir), root_ / "models" / "tokenizers" / "clip");
  s.models_dir.clear();
  ClipVocabFiles f = locate_clip_vocab(s);
  EXPECT_EQ(fs::path(f.dir), root_ / "ckpt" / "tokenizer");
  EXPECT_EQ(fs::path(f.vocab_json), root_ / "ckpt" / "tokenizer" / "vocab.json");
  EXPECT_EQ(fs::path(f.merges_txt), root_ / "ckpt" / "tokenizer" / "merges.txt");
}

TEST_F(VocabLocator, HuggingFaceModelFolder) {
  make_vocab("sdxl-base/tokenizer");
  ClipVocabSearch s;
  s.env_dir = "";
  s.checkpoint_path = (root_ / "sdxl-base").string();  // a folder: its own tokenizer/
  EXPECT_EQ(fs::path(locate_clip_vocab(s).dir), root_ / "sdxl-base" / "tokenizer");
}

TEST_F(VocabLocator, FallsThroughIncompleteFolders) {
  make_vocab("models/tokenizers/clip", /*merges=*/false);
  make_vocab("ckpt/tokenizer");
  ClipVocabSearch s;
  s.env_dir = "";
  s.models_dir = (root_ / "models").string();
  s.checkpoint_path = (root_ / "ckpt" / "m.safetensors").string();
  EXPECT_EQ(fs::path(locate_clip_vocab(s).dir), root_ / "ckpt" / "tokenizer");
}

TEST_F(VocabLocator, ExplicitFolderWithoutFilesIsAnError) {
  make_vocab("models/tokenizers/clip");
  ClipVocabSearch s;
  s.cli_dir = (root_ / "typo").string();
  s.env_dir = "";
  s.models_dir = (root_ / "models").string();
  std::string msg = error_of(s);
  EXPECT_NE(msg.find("--clip-vocab"), std::string::npos) << msg;
  EXPECT_NE(msg.find("typo"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no such folder"), std::string::npos) << msg;

  s.cli_dir.clear();
  s.env_dir = make_vocab("env", /*merges=*/false).string();
  msg = error_of(s);
  EXPECT_NE(msg.find("$SDFLOW_CLIP_VOCAB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no merges.txt"), std::string::npos) << msg;
}

TEST_F(VocabLocator, ErrorListsEveryPlaceAndWhatToDo) {
  ClipVocabSearch s;
  s.env_dir = "";
  s.models_dir = (root_ / "models").string();
  s.checkpoint_path = (root_ / "ckpt" / "m.safetensors").string();
  std::string msg = error_of(s);
  EXPECT_NE(msg.find((root_ / "models" / "tokenizers" / "clip").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find((root_ / "ckpt" / "tokenizer").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocab.json and merges.txt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--clip-vocab"), std::string::npos) << msg;
  EXPECT_NE(error_of(ClipVocabSearch{"", std::string(), "", ""}).find("no folder to look in"),
            std::string::npos);
}

TEST_F(VocabLocator, ReadsTheEnvironmentVariable) {
  fs::path env = make_vocab("from_env");
  ::setenv("SDFLOW_CLIP_VOCAB", env.string().c_str(), 1);
  ClipVocabSearch s;  // env_dir unset: read the variable
  std::string found = locate_clip_vocab(s).dir;
  ::unsetenv("SDFLOW_CLIP_VOCAB");
  EXPECT_EQ(found, env.string());
}

}  // namespace
}  // namespace sdflow
