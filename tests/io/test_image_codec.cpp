// Image decoding: PNG pixel layouts, JPEG (with EXIF orientation), hostile files.
#include <gtest/gtest.h>

// clang-format off
#include <cstdio>
#include <jpeglib.h>
// clang-format on

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/image_codec.h"
#include "io_test_util.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using sdflow::testing::append_be32;
using sdflow::testing::ihdr_data;
using sdflow::testing::kind_of;
using sdflow::testing::make_png;
using sdflow::testing::message_of;
using sdflow::testing::png_chunk;
using sdflow::testing::png_signature;
using sdflow::testing::zlib_compress;

Image8 decode(const std::vector<uint8_t>& bytes) { return decode_image(bytes.data(), bytes.size(), "test"); }

// ---- JPEG fixtures ----------------------------------------------------------------------------

// An EXIF APP1 payload with only an orientation tag, in either byte order.
std::vector<uint8_t> exif_orientation_block(int orientation, bool little_endian) {
  std::vector<uint8_t> d{'E', 'x', 'i', 'f', 0, 0};
  auto u16 = [&](uint32_t v) {
    if (little_endian) {
      d.push_back(v & 0xff), d.push_back((v >> 8) & 0xff);
    } else {
      d.push_back((v >> 8) & 0xff), d.push_back(v & 0xff);
    }
  };
  auto u32 = [&](uint32_t v) {
    if (little_endian) {
      u16(v & 0xffff), u16(v >> 16);
    } else {
      u16(v >> 16), u16(v & 0xffff);
    }
  };
  d.push_back(little_endian ? 'I' : 'M');
  d.push_back(little_endian ? 'I' : 'M');
  u16(42);
  u32(8);  // IFD0 right after the header
  u16(2);  // two entries: an unrelated tag first
  u16(0x010f), u16(2), u32(4), u32(0x00414243);
  u16(0x0112), u16(3), u32(1), u16(static_cast<uint32_t>(orientation)), u16(0);
  u32(0);  // no next IFD
  return d;
}

// Left half red, right half blue (or a horizontal gray ramp for one component). Four components
// are CMYK in the Adobe convention PIL assumes (stored values inverted: 255 = no ink).
std::vector<uint8_t> make_jpeg(int width, int height, int components, const std::vector<uint8_t>& app1 = {},
                               bool progressive = false) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  jpeg_mem_dest(&c, &out, &out_size);
  c.image_width = static_cast<JDIMENSION>(width);
  c.image_height = static_cast<JDIMENSION>(height);
  c.input_components = components;
  c.in_color_space = components == 1 ? JCS_GRAYSCALE : components == 4 ? JCS_CMYK : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  if (!app1.empty()) jpeg_write_marker(&c, JPEG_APP0 + 1, app1.data(), static_cast<unsigned>(app1.size()));
  std::vector<uint8_t> row(static_cast<size_t>(width * components));
  for (int x = 0; x < width; ++x) {
    if (components == 1) {
      row[x] = static_cast<uint8_t>(x * 255 / (width - 1));
    } else if (components == 4) {
      const bool left = x < width / 2;
      row[x * 4 + 0] = left ? 255 : 0;
      row[x * 4 + 1] = 0;
      row[x * 4 + 2] = left ? 0 : 255;
      row[x * 4 + 3] = 255;
    } else {
      const bool left = x < width / 2;
      row[x * 3 + 0] = left ? 255 : 0;
      row[x * 3 + 1] = 0;
      row[x * 3 + 2] = left ? 0 : 255;
    }
  }
  while (c.next_scanline < c.image_height) {
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> bytes(out, out + out_size);
  std::free(out);
  return bytes;
}

const uint8_t* px(const Image8& img, int x, int y) {
  return &img.pixels[(static_cast<size_t>(y) * img.width + x) * img.channels];
}

bool is_red(const uint8_t* p) { return p[0] > 200 && p[1] < 60 && p[2] < 60; }
bool is_blue(const uint8_t* p) { return p[0] < 60 && p[1] < 60 && p[2] > 200; }

// ---- PNG layouts ------------------------------------------------------------------------------

TEST(DecodePng, PaletteWithTransparencyBecomesRgba) {
  const std::vector<uint8_t> plte{255, 0, 0, 0, 255, 0, 0, 0, 255};
  const std::vector<uint8_t> trns{0, 128};  // entry 2 stays opaque
  // 4-bit palette indices: row 0 = 0 1, row 1 = 2 0.
  const auto png = make_png(2, 2, 4, 3, {{0x01}, {0x20}}, {png_chunk("PLTE", plte), png_chunk("tRNS", trns)});
  const Image8 img = decode(png);
  ASSERT_EQ(img.channels, 4);
  EXPECT_TRUE(img.has_alpha);
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 0, 0, 0, 0, 255, 0, 128, 0, 0, 255, 255, 255, 0, 0, 0}));
}

TEST(DecodePng, PaletteWithoutTransparencyIsRgb) {
  const auto png = make_png(2, 1, 8, 3, {{1, 0}}, {png_chunk("PLTE", {10, 20, 30, 40, 50, 60})});
  const Image8 img = decode(png);
  EXPECT_EQ(img.channels, 3);
  EXPECT_FALSE(img.has_alpha);
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{40, 50, 60, 10, 20, 30}));
}

TEST(DecodePng, SixteenBitKeepsHighByte) {
  // RGB16: (0x1234, 0xabcd, 0xff00) and RGBA16.
  const Image8 rgb = decode(make_png(1, 1, 16, 2, {{0x12, 0x34, 0xab, 0xcd, 0xff, 0x00}}));
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.pixels, (std::vector<uint8_t>{0x12, 0xab, 0xff}));
  const Image8 rgba = decode(make_png(1, 1, 16, 6, {{1, 2, 3, 4, 5, 6, 0x80, 0xff}}));
  EXPECT_EQ(rgba.channels, 4);
  EXPECT_EQ(rgba.pixels, (std::vector<uint8_t>{1, 3, 5, 0x80}));
  const Image8 gray = decode(make_png(2, 1, 16, 0, {{0xfe, 0xff, 0x00, 0x01}}));
  EXPECT_EQ(gray.pixels, (std::vector<uint8_t>{0xfe, 0x00}));
}

TEST(DecodePng, LowBitGrayIsScaled) {
  const Image8 img = decode(make_png(4, 1, 1, 0, {{0xa0}}));  // bits 1 0 1 0
  EXPECT_EQ(img.channels, 1);
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 0, 255, 0}));
  const Image8 two = decode(make_png(2, 1, 2, 0, {{0x6c}}));  // 01 10 (then padding)
  EXPECT_EQ(two.pixels, (std::vector<uint8_t>{85, 170}));
}

TEST(DecodePng, GrayAlphaAndIgnoredGrayTransparency) {
  const Image8 la = decode(make_png(1, 1, 8, 4, {{77, 200}}));
  EXPECT_EQ(la.channels, 2);
  EXPECT_TRUE(la.has_alpha);
  EXPECT_EQ(la.pixels, (std::vector<uint8_t>{77, 200}));
  // LoadImage ignores tRNS for gray and RGB images (PIL mode L / RGB have no alpha band).
  const Image8 g = decode(make_png(1, 1, 8, 0, {{5}}, {png_chunk("tRNS", {0, 5})}));
  EXPECT_EQ(g.channels, 1);
  EXPECT_FALSE(g.has_alpha);
}

TEST(DecodePng, Interlaced) {
  // Adam7 for a 1x1 image: one pass, one row.
  std::vector<uint8_t> png = png_signature();
  auto add = [&](const std::vector<uint8_t>& c) { png.insert(png.end(), c.begin(), c.end()); };
  add(png_chunk("IHDR", ihdr_data(1, 1, 8, 2, 1)));
  add(png_chunk("IDAT", zlib_compress({0, 9, 8, 7})));
  add(png_chunk("IEND", {}));
  EXPECT_EQ(decode(png).pixels, (std::vector<uint8_t>{9, 8, 7}));
}

TEST(DecodePng, ExifChunkOrientation) {
  std::vector<uint8_t> exif = exif_orientation_block(6, false);
  exif.erase(exif.begin(), exif.begin() + 6);  // eXIf holds the TIFF data without "Exif\0\0"
  const auto png = make_png(2, 1, 8, 0, {{1, 2}}, {png_chunk("eXIf", exif)});
  const Image8 img = decode(png);
  EXPECT_EQ(img.width, 1);
  EXPECT_EQ(img.height, 2);
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{1, 2}));
}

// ---- EXIF orientation -------------------------------------------------------------------------

TEST(ExifOrientation, AllEightMatchPil) {
  // 3x2 gray: 1 2 3 / 4 5 6. Expected results are PIL's Image.transpose for each method.
  const std::vector<std::vector<uint8_t>> expected{
      {1, 2, 3, 4, 5, 6}, {1, 2, 3, 4, 5, 6}, {3, 2, 1, 6, 5, 4}, {6, 5, 4, 3, 2, 1}, {4, 5, 6, 1, 2, 3},
      {1, 4, 2, 5, 3, 6}, {4, 1, 5, 2, 6, 3}, {6, 3, 5, 2, 4, 1}, {3, 6, 2, 5, 1, 4}, {1, 2, 3, 4, 5, 6}};
  for (int o = 0; o <= 9; ++o) {
    SCOPED_TRACE(o);
    Image8 img{3, 2, 1, {1, 2, 3, 4, 5, 6}, false};
    apply_exif_orientation(img, o);
    const bool swapped = o >= 5 && o <= 8;
    EXPECT_EQ(img.width, swapped ? 2 : 3);
    EXPECT_EQ(img.height, swapped ? 3 : 2);
    EXPECT_EQ(img.pixels, expected[static_cast<size_t>(o)]);
  }
}

// ---- JPEG -------------------------------------------------------------------------------------

TEST(DecodeJpeg, RgbAndGray) {
  const Image8 rgb = decode(make_jpeg(64, 32, 3));
  EXPECT_EQ(rgb.width, 64);
  EXPECT_EQ(rgb.height, 32);
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_FALSE(rgb.has_alpha);
  EXPECT_TRUE(is_red(px(rgb, 4, 16)));
  EXPECT_TRUE(is_blue(px(rgb, 60, 16)));

  const Image8 gray = decode(make_jpeg(64, 8, 1));
  EXPECT_EQ(gray.channels, 1);
  EXPECT_LT(px(gray, 0, 4)[0], 10);
  EXPECT_GT(px(gray, 63, 4)[0], 245);

  const Image8 prog = decode(make_jpeg(64, 32, 3, {}, true));
  EXPECT_TRUE(is_red(px(prog, 4, 16)));
}

TEST(DecodeJpeg, CmykConvertsLikePil) {
  const Image8 img = decode(make_jpeg(64, 32, 4));
  EXPECT_EQ(img.channels, 3);
  EXPECT_TRUE(is_red(px(img, 4, 16)));
  EXPECT_TRUE(is_blue(px(img, 60, 16)));
}

TEST(DecodeJpeg, ExifOrientationSixRotatesClockwise) {
  for (bool little : {true, false}) {
    SCOPED_TRACE(little);
    const Image8 img = decode(make_jpeg(64, 32, 3, exif_orientation_block(6, little)));
    EXPECT_EQ(img.width, 32);
    EXPECT_EQ(img.height, 64);
    // The left (red) half of the stored image is now on top.
    EXPECT_TRUE(is_red(px(img, 16, 4)));
    EXPECT_TRUE(is_blue(px(img, 16, 60)));
  }
  const Image8 ccw = decode(make_jpeg(64, 32, 3, exif_orientation_block(8, true)));
  EXPECT_EQ(ccw.width, 32);
  EXPECT_TRUE(is_blue(px(ccw, 16, 4)));
  const Image8 flipped = decode(make_jpeg(64, 32, 3, exif_orientation_block(2, true)));
  EXPECT_EQ(flipped.width, 64);
  EXPECT_TRUE(is_blue(px(flipped, 4, 16)));
  const Image8 odd = decode(make_jpeg(64, 32, 3, exif_orientation_block(77, true)));
  EXPECT_EQ(odd.width, 64);
  EXPECT_TRUE(is_red(px(odd, 4, 16)));
}

TEST(DecodeJpeg, MalformedExifIsIgnored) {
  std::vector<uint8_t> exif = exif_orientation_block(6, true);
  exif[10] = 0xff;  // IFD0 offset far past the end
  EXPECT_EQ(decode(make_jpeg(64, 32, 3, exif)).width, 64);
  exif = exif_orientation_block(6, true);
  exif.resize(20);  // the entries are cut off
  EXPECT_EQ(decode(make_jpeg(64, 32, 3, exif)).width, 64);
}

TEST(DecodeJpeg, RealPhotograph) {
  const fs::path path = fs::path(SDFLOW_SHARED_DIR) / "data" / "images" / "reconstruction_example.jpg";
  if (!fs::exists(path)) GTEST_SKIP() << "no " << path << " (shared data absent)";
  const Image8 img = decode_image_file(path);
  EXPECT_GT(img.width, 100);
  EXPECT_GT(img.height, 100);
  EXPECT_EQ(img.channels, 3);
  ASSERT_EQ(img.pixels.size(), static_cast<size_t>(img.width) * img.height * 3);
  double sum = 0;
  size_t distinct_rows = 0;
  for (uint8_t v : img.pixels) sum += v;
  const double mean = sum / static_cast<double>(img.pixels.size());
  EXPECT_GT(mean, 10.0);
  EXPECT_LT(mean, 245.0);
  for (int y = 1; y < img.height; ++y)
    distinct_rows += std::memcmp(px(img, 0, y), px(img, 0, y - 1), img.width * 3) != 0;
  EXPECT_GT(distinct_rows, static_cast<size_t>(img.height / 2));  // a photograph, not a flat fill
}

// ---- Hostile and broken files -----------------------------------------------------------------

TEST(DecodeImage, TruncatedFilesAreFormatErrors) {
  const auto png = make_png(8, 8, 8, 2, std::vector<std::vector<uint8_t>>(8, std::vector<uint8_t>(24, 99)));
  ASSERT_EQ(decode(png).width, 8);
  for (size_t n = 0; n + 12 < png.size(); ++n) {  // a cut anywhere before IEND
    SCOPED_TRACE(n);
    const std::vector<uint8_t> cut(png.begin(), png.begin() + static_cast<long>(n));
    EXPECT_EQ(kind_of([&] { decode(cut); }), ErrorKind::kFormat);
  }
  const auto jpeg = make_jpeg(64, 32, 3);
  for (size_t n = 0; n < jpeg.size() - 2; n += 7) {
    SCOPED_TRACE(n);
    const std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + static_cast<long>(n));
    EXPECT_EQ(kind_of([&] { decode(cut); }), ErrorKind::kFormat);
  }
}

TEST(DecodeImage, CorruptBytesNeverCrash) {
  const std::vector<std::vector<uint8_t>> seeds{
      make_png(8, 8, 8, 6, std::vector<std::vector<uint8_t>>(8, std::vector<uint8_t>(32, 7))),
      make_jpeg(32, 16, 3), make_jpeg(32, 16, 3, {}, true)};
  std::mt19937 rng(1234);
  int decoded = 0, failed = 0;
  for (const auto& seed : seeds) {
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<uint8_t> bytes = seed;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
      try {
        const Image8 img = decode(bytes);
        EXPECT_EQ(img.pixels.size(), static_cast<size_t>(img.width) * img.height * img.channels);
        ++decoded;
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kFormat);
        ++failed;
      }
    }
  }
  EXPECT_GT(failed, 0);
  EXPECT_GT(decoded, 0);
}

TEST(DecodeImage, RefusesHugeDimensions) {
  // 20000 x 20000 pixels exceed the 2^28 cap; the check comes before any allocation.
  std::vector<uint8_t> png = png_signature();
  const auto ihdr = png_chunk("IHDR", ihdr_data(20000, 20000, 8, 2));
  png.insert(png.end(), ihdr.begin(), ihdr.end());
  const auto idat = png_chunk("IDAT", zlib_compress({0, 0, 0, 0}));
  png.insert(png.end(), idat.begin(), idat.end());
  const auto iend = png_chunk("IEND", {});
  png.insert(png.end(), iend.begin(), iend.end());
  EXPECT_NE(message_of([&] { decode(png); }).find("exceeds the limit"), std::string::npos);

  auto jpeg = make_jpeg(16, 16, 3);
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xff &&
        (jpeg[i + 1] == 0xc0 || jpeg[i + 1] == 0xc2)) {  // SOF: FF C0 len(2) P(1) H(2) W(2)
      jpeg[i + 5] = 0xff, jpeg[i + 6] = 0x00, jpeg[i + 7] = 0xff, jpeg[i + 8] = 0x00;
      break;
    }
  }
  EXPECT_NE(message_of([&] { decode(jpeg); }).find("exceeds the limit"), std::string::npos);
}

TEST(DecodeImage, UnknownFormatsAndFiles) {
  EXPECT_NE(message_of([&] {
              decode({'G', 'I', 'F', '8', '9', 'a'});
            }).find("test: not a PNG or JPEG"),
            std::string::npos);
  EXPECT_EQ(kind_of([&] { decode({}); }), ErrorKind::kFormat);
  sdflow::testing::TempDir tmp;
  EXPECT_EQ(kind_of([&] { decode_image_file(tmp / "missing.png"); }), ErrorKind::kIo);
  // The format comes from the bytes: a PNG named .jpg decodes.
  sdflow::testing::write_bytes(tmp / "really_png.jpg", make_png(1, 1, 8, 0, {{42}}));
  EXPECT_EQ(decode_image_file(tmp / "really_png.jpg").pixels, std::vector<uint8_t>{42});
}

}  // namespace
}  // namespace sdflow
