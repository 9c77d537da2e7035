// Image nodes: PNG files written and read through the io layer, ComfyUI names and metadata.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/image_codec.h"
#include "io/png_text.h"
#include "node_test_util.h"
#include "nodes/input_files.h"
#include "nodes/python_json.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::NodeHarness;
using testing::prim;

Value image(at::Tensor t) { return make_image(std::move(t)); }

// [B, H, W, 3] with distinct values per pixel.
at::Tensor gradient(int64_t b, int64_t h, int64_t w) {
  return at::arange(b * h * w * 3, at::kFloat).reshape({b, h, w, 3}).div(float(b * h * w * 3));
}

const nlohmann::json kPrompt = nlohmann::json::parse(
    R"({"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
       "_meta": {"title": "Save \u00e9"}}})");
const nlohmann::json kExtra =
    nlohmann::json::parse(R"({"workflow": {"last_node_id": 9, "nodes": [], "version": 0.4}})");

TEST(SaveImage, CountsUpAndWritesPythonJsonChunks) {
  NodeHarness h;
  h.run("SaveImage", inputs({{"images", image(gradient(2, 3, 4))}, {"filename_prefix", prim("ComfyUI")}}),
        &kPrompt, &kExtra);
  h.run("SaveImage", inputs({{"images", image(gradient(1, 3, 4))}, {"filename_prefix", prim("ComfyUI")}}),
        &kPrompt, &kExtra);
  const auto files = h.recorder().take();
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].filename, "ComfyUI_00001_.png");
  EXPECT_EQ(files[1].filename, "ComfyUI_00002_.png");
  EXPECT_EQ(files[2].filename, "ComfyUI_00003_.png");
  EXPECT_EQ(files[0].subfolder, "");
  EXPECT_EQ(files[0].type, "output");
  EXPECT_EQ(files[0].node_id, "7");
  EXPECT_TRUE(std::filesystem::exists(files[2].path));

  const PngTextChunks chunks = read_png_text_file(h.paths().output / "ComfyUI_00001_.png");
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].first, "prompt");
  EXPECT_EQ(
      chunks[0].second,
      R"({"9": {"_meta": {"title": "Save \u00e9"}, "class_type": "SaveImage", "inputs": {"filename_prefix": )"
      R"("ComfyUI", "images": ["8", 0]}}})");
  EXPECT_EQ(chunks[1].first, "workflow");
  EXPECT_EQ(chunks[1].second, R"({"last_node_id": 9, "nodes": [], "version": 0.4})");
  // No temporary files left next to the images.
  int count = 0;
  for (const auto& e : std::filesystem::directory_iterator(h.paths().output)) count += e.is_regular_file();
  EXPECT_EQ(count, 3);
}

TEST(SaveImage, TruncatesTo8Bits) {
  NodeHarness h;
  at::Tensor img = at::zeros({1, 1, 3, 3});
  img[0][0][0] = at::tensor({0.999f, 1.5f, -0.2f});
  img[0][0][1] = at::tensor({0.5f, 1.0f / 255.0f, 0.0f});
  img[0][0][2] = at::tensor({0.2f, 0.4f, 0.6f});
  h.run("SaveImage", inputs({{"images", image(img)}, {"filename_prefix", prim("t")}}));
  const Image8 png = decode_image_file(h.paths().output / "t_00001_.png");
  ASSERT_EQ(png.channels, 3);
  // 254.745 → 254, clipped 255, clipped 0; 127.5 → 127; 255·(1/255) in float32 is 1.0 → 1;
  // 51.000004 → 51, 102.00001 → 102, 153.0 → 153.
  EXPECT_EQ(std::vector<uint8_t>(png.pixels.begin(), png.pixels.end()),
            (std::vector<uint8_t>{254, 255, 0, 127, 1, 0, 51, 102, 153}));
}

TEST(SaveImage, DisableMetadataWritesNoChunks) {
  NodeHarness h;
  h.settings().disable_metadata = true;
  h.run("SaveImage", inputs({{"images", image(gradient(1, 2, 2))}, {"filename_prefix", prim("ComfyUI")}}),
        &kPrompt, &kExtra);
  EXPECT_TRUE(read_png_text_file(h.paths().output / "ComfyUI_00001_.png").empty());
}

TEST(SaveImage, SubfolderPrefix) {
  NodeHarness h;
  h.run("SaveImage",
        inputs({{"images", image(gradient(1, 2, 2))}, {"filename_prefix", prim("sub/dir/pic")}}));
  const auto files = h.recorder().take();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].subfolder, "sub/dir");
  EXPECT_EQ(files[0].filename, "pic_00001_.png");
  EXPECT_TRUE(std::filesystem::exists(h.paths().output / "sub" / "dir" / "pic_00001_.png"));
}

TEST(SaveImage, EscapingPrefixRefused) {
  NodeHarness h;
  for (const char* prefix : {"../evil", "a/../../evil", "/tmp/evil"}) {
    try {
      h.run("SaveImage", inputs({{"images", image(gradient(1, 2, 2))}, {"filename_prefix", prim(prefix)}}));
      ADD_FAILURE() << prefix << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kValidation) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("[SaveImage #7] ", 0), 0u) << e.what();
    }
  }
  EXPECT_TRUE(h.recorder().take().empty());
  EXPECT_FALSE(std::filesystem::exists(h.paths().output.parent_path() / "evil_00001_.png"));
}

TEST(SaveImage, RefusesNonImages) {
  NodeHarness h;
  EXPECT_THROW(
      h.run("SaveImage", inputs({{"images", image(at::zeros({2, 2, 3}))}, {"filename_prefix", prim("x")}})),
      Error);
  EXPECT_THROW(h.run("SaveImage",
                     inputs({{"images", image(at::zeros({1, 2, 2, 5}))}, {"filename_prefix", prim("x")}})),
               Error);
}

TEST(PreviewImage, WritesToTempWithRandomSuffix) {
  NodeHarness h;
  h.run("PreviewImage", inputs({{"images", image(gradient(2, 2, 2))}}), &kPrompt, &kExtra);
  const auto files = h.recorder().take();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].type, "temp");
  const std::regex name("ComfyUI_temp_[abcdefghijklmnopqrstuvxyz]{5}_0000[12]_\\.png");
  EXPECT_TRUE(std::regex_match(files[0].filename, name)) << files[0].filename;
  EXPECT_EQ(files[0].filename.substr(0, 18), files[1].filename.substr(0, 18));
  EXPECT_TRUE(std::filesystem::exists(h.paths().temp / files[1].filename));
  // Previews keep the metadata too.
  EXPECT_EQ(read_png_text_file(h.paths().temp / files[0].filename).size(), 2u);
}

void write_input_png(const NodeHarness& h, const std::string& name, int channels,
                     std::vector<uint8_t> pixels) {
  Image8 img;
  img.width = 2;
  img.height = 1;
  img.channels = channels;
  img.has_alpha = channels == 2 || channels == 4;
  img.pixels = std::move(pixels);
  write_png(h.paths().input / name, img, {}, 4);
}

std::vector<float> values(const at::Tensor& t) {
  const at::Tensor c = t.contiguous().to(at::kFloat);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST(LoadImage, RgbHasPlaceholderMask) {
  NodeHarness h;
  write_input_png(h, "rgb.png", 3, {0, 51, 255, 10, 20, 30});
  ValueList out = h.run("LoadImage", inputs({{"image", prim("rgb.png")}}));
  ASSERT_EQ(out.size(), 2u);
  const at::Tensor img = out[0].as<ImageValue>()->images;
  EXPECT_EQ(img.sizes(), at::IntArrayRef({1, 1, 2, 3}));
  EXPECT_EQ(values(img),
            (std::vector<float>{0.f, 51.f / 255.f, 1.f, 10.f / 255.f, 20.f / 255.f, 30.f / 255.f}));
  const at::Tensor mask = out[1].as<MaskValue>()->mask;
  EXPECT_EQ(mask.sizes(), at::IntArrayRef({1, 64, 64}));
  EXPECT_EQ(mask.count_nonzero().item<int64_t>(), 0);
}

TEST(LoadImage, RgbaMaskIsOneMinusAlpha) {
  NodeHarness h;
  write_input_png(h, "rgba.png", 4, {1, 2, 3, 0, 4, 5, 6, 255});
  ValueList out = h.run("LoadImage", inputs({{"image", prim("rgba.png")}}));
  EXPECT_EQ(out[0].as<ImageValue>()->images.sizes(), at::IntArrayRef({1, 1, 2, 3}));
  EXPECT_EQ(values(out[1].as<MaskValue>()->mask), (std::vector<float>{1.f, 0.f}));
}

TEST(LoadImage, GrayBecomesRgb) {
  NodeHarness h;
  write_input_png(h, "gray.png", 1, {128, 7});
  ValueList out = h.run("LoadImage", inputs({{"image", prim("gray.png")}}));
  EXPECT_EQ(values(out[0].as<ImageValue>()->images),
            (std::vector<float>{128 / 255.f, 128 / 255.f, 128 / 255.f, 7 / 255.f, 7 / 255.f, 7 / 255.f}));
  EXPECT_EQ(out[1].as<MaskValue>()->mask.sizes(), at::IntArrayRef({1, 64, 64}));
}

TEST(LoadImage, SavedImageRoundTrips) {
  NodeHarness h;
  const at::Tensor img = at::arange(12, at::kFloat).reshape({1, 2, 2, 3}).div(255.0);
  h.run("SaveImage", inputs({{"images", image(img + 0.5 / 255.0)}, {"filename_prefix", prim("rt")}}));
  ValueList out = h.run("LoadImage", inputs({{"image", prim("rt_00001_.png [output]")}}));
  EXPECT_TRUE(at::allclose(out[0].as<ImageValue>()->images, img));
}

TEST(LoadImage, ValidateFingerprintAndConfinement) {
  NodeHarness h;
  write_input_png(h, "a.png", 3, {0, 0, 0, 1, 1, 1});
  auto node = h.registry().create("LoadImage");
  ValidationEnv env;
  env.services = &h.services();
  // Without strict mode only confinement is checked: a missing file is fine.
  EXPECT_TRUE(node->validate(env, {{"image", "nope.png"}}).empty());
  env.strict = true;
  EXPECT_TRUE(node->validate(env, {{"image", "a.png"}}).empty());
  auto problems = node->validate(env, {{"image", "nope.png"}});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].first, "image");
  EXPECT_EQ(problems[0].second, "Invalid image file: nope.png");
  EXPECT_EQ(node->validate(env, {{"image", "../a.png"}}).size(), 1u);
  EXPECT_EQ(node->validate(env, {{"image", "/etc/passwd"}}).size(), 1u);

  const std::vector<uint8_t> bytes = read_file_bytes(h.paths().input / "a.png", 1 << 20);
  const std::string fp = node->fingerprint(h.services(), {{"image", "a.png"}});
  EXPECT_EQ(fp, sha256_hex(bytes.data(), bytes.size()));
  EXPECT_NE(node->fingerprint(h.services(), {{"image", "nope.png"}}), fp);

  // A symlink that points out of the input folder is refused too.
  std::filesystem::create_symlink(h.paths().output, h.paths().input / "link");
  h.run("SaveImage", inputs({{"images", image(gradient(1, 1, 1))}, {"filename_prefix", prim("o")}}));
  EXPECT_THROW(h.run("LoadImage", inputs({{"image", prim("link/o_00001_.png")}})), Error);
  EXPECT_THROW(h.run("LoadImage", inputs({{"image", prim("nope.png")}})), Error);
}

TEST(Sha256, KnownVectors) {
  const std::string abc = "abc";
  EXPECT_EQ(sha256_hex(reinterpret_cast<const uint8_t*>(abc.data()), abc.size()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(nullptr, 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string two_blocks(1000, 'a');
  EXPECT_EQ(sha256_hex(reinterpret_cast<const uint8_t*>(two_blocks.data()), two_blocks.size()),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(ImageScale, SizesAndPassThrough) {
  NodeHarness h;
  const Value in = image(gradient(1, 4, 6));
  auto run = [&](int64_t w, int64_t hgt, const char* method) {
    return h
        .run("ImageScale", inputs({{"image", in},
                                   {"upscale_method", prim(method)},
                                   {"width", prim(w)},
                                   {"height", prim(hgt)},
                                   {"crop", prim("disabled")}}))
        .at(0);
  };
  EXPECT_EQ(run(0, 0, "bilinear").object_ptr(), in.object_ptr());
  EXPECT_EQ(run(0, 2, "area").as<ImageValue>()->images.sizes(), at::IntArrayRef({1, 2, 3, 3}));
  EXPECT_EQ(run(9, 0, "lanczos").as<ImageValue>()->images.sizes(), at::IntArrayRef({1, 6, 9, 3}));
  EXPECT_EQ(run(12, 8, "nearest-exact").as<ImageValue>()->images.sizes(), at::IntArrayRef({1, 8, 12, 3}));
  // ImageScaleBy: round(6·0.75) = round(4.5) = 4, round(4·0.75) = 3.
  auto by = h.run("ImageScaleBy",
                  inputs({{"image", in}, {"upscale_method", prim("bicubic")}, {"scale_by", prim(0.75)}}));
  EXPECT_EQ(by.at(0).as<ImageValue>()->images.sizes(), at::IntArrayRef({1, 3, 4, 3}));
}

TEST(ImageInvert, OneMinus) {
  NodeHarness h;
  const at::Tensor img = gradient(1, 2, 2);
  auto out = h.run("ImageInvert", inputs({{"image", image(img)}}));
  EXPECT_TRUE(at::equal(out.at(0).as<ImageValue>()->images, 1.0 - img));
}

TEST(ImageNodes, Schemas) {
  NodeHarness h;
  const NodeSchema* load = h.registry().find("LoadImage");
  ASSERT_NE(load, nullptr);
  EXPECT_TRUE(load->inputs.at(0).image_upload);
  EXPECT_EQ(load->outputs.size(), 2u);
  const NodeSchema* save = h.registry().find("SaveImage");
  EXPECT_TRUE(save->output_node);
  EXPECT_EQ(save->hidden, (std::vector<std::string>{"PROMPT", "EXTRA_PNGINFO"}));
  EXPECT_EQ(save->inputs.at(1).default_value, "ComfyUI");
  const NodeSchema* scale = h.registry().find("ImageScale");
  EXPECT_EQ(scale->inputs.at(1).options,
            (std::vector<std::string>{"nearest-exact", "bilinear", "area", "bicubic", "lanczos"}));
  EXPECT_EQ(scale->inputs.at(2).step, 1);
}

}  // namespace
}  // namespace sdflow::nodes
