// Path confinement and ComfyUI's model folder layout.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/model_folders.h"
#include "io/paths.h"
#include "io_test_util.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using sdflow::testing::kind_of;
using sdflow::testing::message_of;
using sdflow::testing::TempDir;
using sdflow::testing::touch;

TEST(SafeRelativeName, LexicalRules) {
  EXPECT_TRUE(is_safe_relative_name("model.safetensors"));
  EXPECT_TRUE(is_safe_relative_name("sub/dir/model.safetensors"));
  EXPECT_TRUE(is_safe_relative_name("sub\\model.safetensors"));
  EXPECT_TRUE(is_safe_relative_name("./a//b"));
  EXPECT_TRUE(is_safe_relative_name("..foo/bar.."));  // dots inside a name are fine

  EXPECT_FALSE(is_safe_relative_name(""));
  EXPECT_FALSE(is_safe_relative_name("."));
  EXPECT_FALSE(is_safe_relative_name("./"));
  EXPECT_FALSE(is_safe_relative_name(".."));
  EXPECT_FALSE(is_safe_relative_name("../x"));
  EXPECT_FALSE(is_safe_relative_name("a/../b"));
  EXPECT_FALSE(is_safe_relative_name("a\\..\\..\\b"));
  EXPECT_FALSE(is_safe_relative_name("\\..\\b"));
  EXPECT_FALSE(is_safe_relative_name("/etc/passwd"));
  EXPECT_FALSE(is_safe_relative_name("\\server\\share"));
  EXPECT_FALSE(is_safe_relative_name("C:\\models\\x.safetensors"));
  EXPECT_FALSE(is_safe_relative_name("c:x"));
  EXPECT_FALSE(is_safe_relative_name(std::string("a\0b", 3)));
}

TEST(Confine, AcceptsNestedNames) {
  TempDir tmp;
  const fs::path root = fs::canonical(tmp.path());
  EXPECT_EQ(confine(root, "x.safetensors", "ckpt_name"), root / "x.safetensors");
  EXPECT_EQ(confine(root, "sub/x.safetensors", "ckpt_name"), root / "sub" / "x.safetensors");
  EXPECT_EQ(confine(root, "sub\\deeper\\x.safetensors", "ckpt_name"),
            root / "sub" / "deeper" / "x.safetensors");
  EXPECT_EQ(confine(root, "./sub//x", "ckpt_name"), root / "sub" / "x");
}

TEST(Confine, RejectsEscapes) {
  TempDir tmp;
  const fs::path root = tmp.path();
  for (const std::string& name :
       std::vector<std::string>{"..", "../x", "a/../../x", "a/../b", "a\\..\\..\\x", "\\..\\x", "/etc/passwd",
                                "C:\\x", "", ".", std::string("a\0b", 3)}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(kind_of([&] { confine(root, name, "ckpt_name"); }), ErrorKind::kValidation);
  }
  const std::string msg = message_of([&] { confine(root, "../x.safetensors", "ckpt_name"); });
  EXPECT_NE(msg.find("ckpt_name '../x.safetensors' leaves its folder " + root.string()), std::string::npos)
      << msg;
}

TEST(Confine, RejectsSymlinksLeadingOutside) {
  TempDir tmp;
  const fs::path root = tmp / "root";
  const fs::path outside = tmp / "outside";
  fs::create_directories(root / "inner");
  fs::create_directories(outside);
  touch(outside / "secret.safetensors");
  touch(root / "inner" / "ok.safetensors");
  fs::create_directory_symlink(outside, root / "linkdir");
  fs::create_symlink(outside / "secret.safetensors", root / "linkfile.safetensors");
  fs::create_directory_symlink(root / "inner", root / "alias");

  EXPECT_EQ(kind_of([&] { confine(root, "linkdir/secret.safetensors", "ckpt_name"); }),
            ErrorKind::kValidation);
  EXPECT_EQ(kind_of([&] { confine(root, "linkdir\\new.safetensors", "ckpt_name"); }), ErrorKind::kValidation);
  EXPECT_EQ(kind_of([&] { confine(root, "linkfile.safetensors", "ckpt_name"); }), ErrorKind::kValidation);
  const std::string msg = message_of([&] { confine(root, "linkdir/secret.safetensors", "ckpt_name"); });
  EXPECT_NE(msg.find("leaves its folder"), std::string::npos) << msg;

  // A symlink that stays inside, and a root that is itself a symlink, are fine.
  EXPECT_EQ(confine(root, "alias/ok.safetensors", "x"), fs::canonical(root / "inner" / "ok.safetensors"));
  fs::create_directory_symlink(root, tmp / "root_link");
  EXPECT_EQ(confine(tmp / "root_link", "inner/ok.safetensors", "x"),
            fs::canonical(root / "inner" / "ok.safetensors"));
}

TEST(Confine, PrefixOfRootNameIsNotInside) {
  // "/x/models2" starts with the string "/x/models" but is not inside it.
  TempDir tmp;
  fs::create_directories(tmp / "models");
  fs::create_directories(tmp / "models2");
  fs::create_directory_symlink(tmp / "models2", tmp / "models" / "link");
  EXPECT_EQ(kind_of([&] { confine(tmp / "models", "link/x", "x"); }), ErrorKind::kValidation);
}

class ModelFoldersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path m = tmp_.path();
    for (const char* f :
         {"checkpoints/b.safetensors", "checkpoints/a.ckpt", "checkpoints/sub/c.SafeTensors",
          "checkpoints/sub/deep/d.pth", "checkpoints/readme.txt", "checkpoints/.git/e.safetensors",
          "checkpoints/noext", "text_encoders/t5.safetensors", "clip/clip_l.safetensors", "unet/u.sft",
          "diffusion_models/dm.pt2", "loras/l.bin", "vae/v.pt"}) {
      touch(m / f);
    }
  }
  TempDir tmp_;
};

TEST_F(ModelFoldersTest, ListsRecursivelyFilteredSorted) {
  ModelFolders folders(tmp_.path());
  EXPECT_EQ(folders.list("checkpoints"),
            (std::vector<std::string>{"a.ckpt", "b.safetensors", "sub/c.SafeTensors", "sub/deep/d.pth"}));
  EXPECT_EQ(folders.list("loras"), std::vector<std::string>{"l.bin"});
  EXPECT_EQ(folders.list("vae"), std::vector<std::string>{"v.pt"});
  EXPECT_TRUE(folders.list("embeddings").empty());  // the folder does not exist
}

TEST_F(ModelFoldersTest, LegacyFolderPairs) {
  ModelFolders folders(tmp_.path());
  const std::vector<std::string> te{"clip_l.safetensors", "t5.safetensors"};
  EXPECT_EQ(folders.list("text_encoders"), te);
  EXPECT_EQ(folders.list("clip"), te);
  const std::vector<std::string> dm{"dm.pt2", "u.sft"};
  EXPECT_EQ(folders.list("diffusion_models"), dm);
  EXPECT_EQ(folders.list("unet"), dm);
  EXPECT_EQ(folders.folder("text_encoders"), tmp_.path() / "text_encoders");
  EXPECT_EQ(folders.folder("diffusion_models"), tmp_.path() / "unet");
  EXPECT_EQ(folders.folders("clip"),
            (std::vector<fs::path>{tmp_.path() / "text_encoders", tmp_.path() / "clip"}));
  EXPECT_EQ(folders.resolve("text_encoders", "clip_l.safetensors"),
            fs::canonical(tmp_.path() / "clip" / "clip_l.safetensors"));
  EXPECT_EQ(folders.resolve("unet", "dm.pt2"), fs::canonical(tmp_.path() / "diffusion_models" / "dm.pt2"));
}

TEST_F(ModelFoldersTest, ResolvesConfinedNames) {
  ModelFolders folders(tmp_.path());
  const fs::path expected = fs::canonical(tmp_.path() / "checkpoints" / "sub" / "c.SafeTensors");
  EXPECT_EQ(folders.resolve("checkpoints", "sub/c.SafeTensors"), expected);
  EXPECT_EQ(folders.resolve("checkpoints", "sub\\c.SafeTensors"), expected);
  EXPECT_EQ(kind_of([&] { folders.resolve("checkpoints", "../vae/v.pt"); }), ErrorKind::kValidation);
  EXPECT_EQ(kind_of([&] { folders.resolve("checkpoints", "sub"); }), ErrorKind::kValidation);  // a folder
}

TEST_F(ModelFoldersTest, MissingFileErrorNamesKindNameAndFolders) {
  ModelFolders folders(tmp_.path());
  const std::string msg = message_of([&] { folders.resolve("checkpoints", "missing.safetensors"); });
  EXPECT_NE(
      msg.find("checkpoints 'missing.safetensors' not found in " + (tmp_.path() / "checkpoints").string()),
      std::string::npos)
      << msg;
  EXPECT_NE(msg.find("a.ckpt"), std::string::npos) << msg;  // what is there instead
  const std::string te = message_of([&] { folders.resolve("text_encoders", "x.safetensors"); });
  EXPECT_NE(te.find((tmp_.path() / "text_encoders").string() + " or " + (tmp_.path() / "clip").string()),
            std::string::npos)
      << te;
  const std::string empty = message_of([&] { folders.resolve("embeddings", "e.pt"); });
  EXPECT_NE(empty.find("no model files there"), std::string::npos) << empty;
  EXPECT_EQ(kind_of([&] { folders.resolve("checkpoints", "missing.safetensors"); }), ErrorKind::kValidation);
}

TEST_F(ModelFoldersTest, UnknownKindIsUsageError) {
  ModelFolders folders(tmp_.path());
  EXPECT_FALSE(ModelFolders::is_known_kind("nope"));
  EXPECT_TRUE(ModelFolders::is_known_kind("vae_approx"));
  EXPECT_EQ(kind_of([&] { folders.list("nope"); }), ErrorKind::kUsage);
  EXPECT_EQ(kind_of([&] { folders.folder("nope"); }), ErrorKind::kUsage);
}

TEST_F(ModelFoldersTest, FollowsSymlinkedFoldersWithoutLooping) {
  const fs::path outside = tmp_ / "elsewhere";
  touch(outside / "linked.safetensors");
  fs::create_directory_symlink(outside, tmp_ / "loras" / "shared");
  fs::create_directory_symlink(tmp_ / "loras", tmp_ / "loras" / "loop");  // a cycle
  ModelFolders folders(tmp_.path());
  EXPECT_EQ(folders.list("loras"), (std::vector<std::string>{"l.bin", "shared/linked.safetensors"}));
}

}  // namespace
}  // namespace sdflow
