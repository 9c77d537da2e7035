// SaveImage file naming: ComfyUI's get_save_image_path and the per-image file names.
#include <gtest/gtest.h>

#include <ctime>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "io/save_path.h"
#include "io_test_util.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using sdflow::testing::kind_of;
using sdflow::testing::message_of;
using sdflow::testing::TempDir;
using sdflow::testing::touch;

std::tm fixed_time() {
  std::tm t{};
  t.tm_year = 2026 - 1900;
  t.tm_mon = 2;  // March
  t.tm_mday = 7;
  t.tm_hour = 8;
  t.tm_min = 5;
  t.tm_sec = 9;
  return t;
}

SavePath resolve(const fs::path& root, const std::string& prefix, int w = 512, int h = 768) {
  return resolve_save_path(root, prefix, w, h, fixed_time());
}

TEST(SavePath, ExpandsVariables) {
  EXPECT_EQ(expand_save_prefix("img_%width%x%height%_%year%-%month%-%day%_%hour%%minute%%second%", 512, 768,
                               fixed_time()),
            "img_512x768_2026-03-07_080509");
  EXPECT_EQ(expand_save_prefix("%width%/%width%", 64, 32, fixed_time()), "64/64");
  EXPECT_EQ(expand_save_prefix("ComfyUI", 1, 1, fixed_time()), "ComfyUI");
  EXPECT_EQ(expand_save_prefix("100%_%unknown%", 1, 1, fixed_time()), "100%_%unknown%");
}

TEST(SavePath, FirstSaveInAnEmptyFolder) {
  TempDir tmp;
  const SavePath p = resolve(tmp.path(), "ComfyUI");
  EXPECT_EQ(p.folder, tmp.path());
  EXPECT_EQ(p.filename, "ComfyUI");
  EXPECT_EQ(p.subfolder, "");
  EXPECT_EQ(p.counter, 1);
}

TEST(SavePath, CounterFollowsExistingFiles) {
  TempDir tmp;
  for (const char* f : {"ComfyUI_00001_.png", "ComfyUI_00007_.png", "ComfyUI_00003.png",
                        "ComfyUIX_00050_.png", "Other_00100_.png", "ComfyUI_abc_.png", "ComfyUI_00004"}) {
    touch(tmp / f);
  }
  EXPECT_EQ(resolve(tmp.path(), "ComfyUI").counter, 8);
  touch(tmp / "comfyui_00009_.png");  // the prefix compares without case
  EXPECT_EQ(resolve(tmp.path(), "ComfyUI").counter, 10);
  touch(tmp / "ComfyUI_00012_.latent");  // any extension counts, as in ComfyUI
  EXPECT_EQ(resolve(tmp.path(), "ComfyUI").counter, 13);
  EXPECT_EQ(resolve(tmp.path(), "Other").counter, 101);
  EXPECT_EQ(resolve(tmp.path(), "New").counter, 1);
}

TEST(SavePath, CounterOnlyMismatchesGiveOne) {
  TempDir tmp;
  touch(tmp / "ComfyUI_.png");
  touch(tmp / "ComfyUI_x_.png");
  EXPECT_EQ(resolve(tmp.path(), "ComfyUI").counter, 1);
}

TEST(SavePath, CounterOverflowIsAnError) {
  TempDir tmp;
  touch(tmp / "ComfyUI_99999999999_.png");
  EXPECT_EQ(kind_of([&] { resolve(tmp.path(), "ComfyUI"); }), ErrorKind::kIo);
}

TEST(SavePath, SubfoldersAreCreated) {
  TempDir tmp;
  const SavePath p = resolve(tmp.path(), "portraits/%width%/face");
  EXPECT_EQ(p.subfolder, "portraits/512");
  EXPECT_EQ(p.filename, "face");
  EXPECT_EQ(p.counter, 1);
  EXPECT_TRUE(fs::is_directory(tmp / "portraits" / "512"));
  EXPECT_EQ(p.folder, fs::canonical(tmp / "portraits" / "512"));

  touch(tmp / "portraits" / "512" / "face_00041_.png");
  EXPECT_EQ(resolve(tmp.path(), "portraits\\512\\face").counter, 42);  // Windows-made workflows
  const SavePath n = resolve(tmp.path(), "a/./b/../c//img");
  EXPECT_EQ(n.subfolder, "a/c");
  EXPECT_EQ(n.filename, "img");
}

TEST(SavePath, RefusesToLeaveTheOutputFolder) {
  TempDir tmp;
  const fs::path out = tmp / "output";
  fs::create_directories(out);
  for (const char* prefix : {"../x", "a/../../x", "..\\x", "/tmp/x", "\\x", "C:\\x", "..", "a/../.."}) {
    SCOPED_TRACE(prefix);
    EXPECT_EQ(kind_of([&] { resolve(out, prefix); }), ErrorKind::kValidation);
  }
  EXPECT_NE(message_of([&] { resolve(out, "../x"); }).find("filename_prefix '../x' leaves the output folder"),
            std::string::npos);
  EXPECT_EQ(kind_of([&] { resolve(out, std::string("a\0b", 3)); }), ErrorKind::kValidation);
  EXPECT_EQ(kind_of([&] { resolve(out, ""); }), ErrorKind::kValidation);

  // Through a symlink that points outside.
  fs::create_directories(tmp / "elsewhere");
  fs::create_directory_symlink(tmp / "elsewhere", out / "link");
  EXPECT_EQ(kind_of([&] { resolve(out, "link/x"); }), ErrorKind::kValidation);
  EXPECT_EQ(fs::directory_iterator(tmp / "elsewhere"), fs::directory_iterator());

  // "a/.." stays inside: it names the output folder itself.
  EXPECT_EQ(resolve(out, "a/../x").subfolder, "");
}

TEST(SavePath, FileNames) {
  EXPECT_EQ(save_file_name("ComfyUI", 1, 0), "ComfyUI_00001_.png");
  EXPECT_EQ(save_file_name("ComfyUI", 123456, 0), "ComfyUI_123456_.png");
  EXPECT_EQ(save_file_name("img_%batch_num%", 7, 2), "img_2_00007_.png");
}

TEST(SavePath, UsesTheCurrentTime) {
  TempDir tmp;
  const SavePath p = resolve_save_path(tmp.path(), "%year%/x", 1, 1);
  const std::time_t t = std::time(nullptr);
  std::tm now{};
  localtime_r(&t, &now);
  EXPECT_EQ(p.subfolder, std::to_string(now.tm_year + 1900));
}

}  // namespace
}  // namespace sdflow
