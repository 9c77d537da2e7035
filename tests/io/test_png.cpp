// PNG text chunks (reading, hostile files) and PNG writing with metadata, written atomically.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/image_codec.h"
#include "io/png_text.h"
#include "io_test_util.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using sdflow::testing::kind_of;
using sdflow::testing::make_png;
using sdflow::testing::message_of;
using sdflow::testing::png_chunk;
using sdflow::testing::TempDir;
using sdflow::testing::to_bytes;
using sdflow::testing::zlib_compress;
using namespace std::string_literals;

std::vector<uint8_t> concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A 2x1 RGB PNG with the given chunks between IHDR and IDAT.
std::vector<uint8_t> png_with(const std::vector<std::vector<uint8_t>>& chunks) {
  return make_png(2, 1, 8, 2, {{1, 2, 3, 4, 5, 6}}, chunks);
}

PngTextChunks read(const std::vector<uint8_t>& bytes) {
  return read_png_text_chunks(bytes.data(), bytes.size(), "test.png");
}

std::vector<std::string> chunk_types(const std::vector<uint8_t>& png) {
  std::vector<std::string> types;
  for (size_t pos = 8; pos + 12 <= png.size();) {
    const uint32_t len =
        (uint32_t{png[pos]} << 24) | (png[pos + 1] << 16) | (png[pos + 2] << 8) | png[pos + 3];
    types.emplace_back(png.begin() + pos + 4, png.begin() + pos + 8);
    pos += 12 + len;
  }
  return types;
}

Image8 test_image(int width, int height, int channels) {
  Image8 img;
  img.width = width;
  img.height = height;
  img.channels = channels;
  img.has_alpha = channels == 2 || channels == 4;
  img.pixels.resize(static_cast<size_t>(width * height * channels));
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37 + 11);
  return img;
}

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(PngText, WriteReadRoundTrip) {
  TempDir tmp;
  const std::string prompt =
      R"({"3": {"inputs": {"seed": 1, "text": "caf\u00e9 \u2615"}, "class_type": "KSampler"}})";
  const std::string workflow = R"({"nodes": [], "links": [], "version": 0.4})";
  const PngTextChunks chunks{{"prompt", prompt}, {"workflow", workflow}};
  for (int channels = 1; channels <= 4; ++channels) {
    SCOPED_TRACE(channels);
    const Image8 img = test_image(5, 3, channels);
    const fs::path path = tmp / ("out" + std::to_string(channels) + ".png");
    write_png(path, img, chunks, 4);
    EXPECT_EQ(read_png_text_file(path), chunks);

    const Image8 back = decode_image_file(path);
    EXPECT_EQ(back.width, 5);
    EXPECT_EQ(back.height, 3);
    EXPECT_EQ(back.channels, channels);
    EXPECT_EQ(back.has_alpha, img.has_alpha);
    EXPECT_EQ(back.pixels, img.pixels);
  }
}

TEST(PngText, TextChunksComeBeforeImageData) {
  const std::vector<uint8_t> png = encode_png(test_image(4, 4, 3), {{"prompt", "{}"}, {"workflow", "{}"}}, 1);
  EXPECT_EQ(chunk_types(png), (std::vector<std::string>{"IHDR", "tEXt", "tEXt", "IDAT", "IEND"}));
}

TEST(PngText, NoChunksWhenMetadataDisabled) {
  const std::vector<uint8_t> png = encode_png(test_image(4, 4, 3), {}, 1);
  EXPECT_TRUE(read(png).empty());
  EXPECT_EQ(chunk_types(png), (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
}

TEST(PngText, Latin1TextBecomesUtf8) {
  // tEXt is Latin-1 by the PNG spec: byte 0xE9 is 'é' (PIL decodes it the same way).
  const auto png = png_with({png_chunk("tEXt", to_bytes("k\xe9y\0caf\xe9"s))});
  EXPECT_EQ(read(png), (PngTextChunks{{"k\xc3\xa9y", "caf\xc3\xa9"}}));
}

TEST(PngText, ReadsZtxtAndItxt) {
  const std::string json = R"({"a": "b\u00e9"})";
  std::vector<uint8_t> ztxt = to_bytes("prompt\0\0"s);
  const auto z = zlib_compress(to_bytes(json));
  ztxt.insert(ztxt.end(), z.begin(), z.end());

  const std::string utf8 = "\xe2\x98\x95 caf\xc3\xa9";  // ☕ café
  // iTXt: keyword \0 flag method language \0 translated \0 text
  const auto itxt_plain = to_bytes("workflow\0\0\0en\0Arbeitsablauf\0"s + utf8);
  std::vector<uint8_t> itxt_z = to_bytes("other\0\1\0\0\0"s);
  const auto zu = zlib_compress(to_bytes(utf8));
  itxt_z.insert(itxt_z.end(), zu.begin(), zu.end());

  const auto png =
      png_with({png_chunk("zTXt", ztxt), png_chunk("iTXt", itxt_plain), png_chunk("iTXt", itxt_z)});
  EXPECT_EQ(read(png), (PngTextChunks{{"prompt", json}, {"workflow", utf8}, {"other", utf8}}));
}

TEST(PngText, TextAfterImageDataIsRead) {
  auto png = make_png(1, 1, 8, 0, {{7}});
  const auto text = png_chunk("tEXt", to_bytes("late\0yes"s));
  png.insert(png.end() - 12, text.begin(), text.end());  // before IEND
  EXPECT_EQ(read(png), (PngTextChunks{{"late", "yes"}}));
}

TEST(PngText, RejectsMalformedFiles) {
  const auto good = png_with({png_chunk("tEXt", to_bytes("prompt\0{}"s))});
  ASSERT_EQ(read(good).size(), 1u);

  // Every truncation of a valid file is an error, never a crash.
  for (size_t n = 0; n < good.size(); ++n) {
    SCOPED_TRACE(n);
    const std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    EXPECT_EQ(kind_of([&] { read(cut); }), ErrorKind::kFormat);
  }

  auto bad_sig = good;
  bad_sig[1] = 'X';
  EXPECT_NE(message_of([&] { read(bad_sig); }).find("test.png: not a PNG file"), std::string::npos);

  const auto bad_crc = png_with({png_chunk("tEXt", to_bytes("prompt\0{}"s), true)});
  EXPECT_NE(message_of([&] { read(bad_crc); }).find("bad CRC"), std::string::npos);

  auto flipped = good;
  flipped[8 + 25 + 8 + 3] ^= 0x20;  // a byte of the tEXt body: its CRC no longer matches
  EXPECT_NE(message_of([&] { read(flipped); }).find("bad CRC"), std::string::npos);

  std::vector<uint8_t> huge = png_with({});
  const std::vector<uint8_t> huge_len{0xff, 0xff, 0xff, 0xf0, 't', 'E', 'X', 't'};
  huge.insert(huge.begin() + 33, huge_len.begin(), huge_len.end());
  EXPECT_NE(message_of([&] { read(huge); }).find("exceeds 2^31-1"), std::string::npos);

  std::vector<uint8_t> past_end = png_with({});
  const std::vector<uint8_t> long_len{0x00, 0x10, 0x00, 0x00, 't', 'E', 'X', 't', 'a', 0};
  past_end.insert(past_end.begin() + 33, long_len.begin(), long_len.end());
  EXPECT_NE(message_of([&] { read(past_end); }).find("runs past the end"), std::string::npos);

  auto no_iend = good;
  no_iend.resize(no_iend.size() - 12);
  EXPECT_NE(message_of([&] { read(no_iend); }).find("no IEND"), std::string::npos);

  const auto not_ihdr =
      concat({sdflow::testing::png_signature(), png_chunk("tEXt", to_bytes("a\0b"s)), png_chunk("IEND", {})});
  EXPECT_NE(message_of([&] { read(not_ihdr); }).find("not IHDR"), std::string::npos);

  const auto bad_type = png_with({png_chunk("tE1t", {})});
  EXPECT_NE(message_of([&] { read(bad_type); }).find("invalid chunk type"), std::string::npos);
}

TEST(PngText, RejectsMalformedTextChunks) {
  auto expect_error = [](const std::vector<uint8_t>& chunk, const std::string& what) {
    const auto png = png_with({chunk});
    const std::string msg = message_of([&] { read(png); });
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_EQ(kind_of([&] { read(png); }), ErrorKind::kFormat);
  };
  expect_error(png_chunk("tEXt", to_bytes("no-nul")), "not NUL-terminated");
  expect_error(png_chunk("tEXt", to_bytes("\0text"s)), "empty keyword");
  expect_error(png_chunk("tEXt", to_bytes(std::string(80, 'k') + '\0')), "longer than 79");
  expect_error(png_chunk("zTXt", to_bytes("k\0"s)), "missing compression method");
  expect_error(png_chunk("zTXt", to_bytes("k\0\1xx"s)), "unknown compression method");
  expect_error(png_chunk("zTXt", to_bytes("k\0\0garbage"s)), "corrupt compressed text");

  auto truncated_z = zlib_compress(to_bytes(std::string(1000, 'x')));
  truncated_z.resize(truncated_z.size() / 2);
  std::vector<uint8_t> tz = to_bytes("k\0\0"s);
  tz.insert(tz.end(), truncated_z.begin(), truncated_z.end());
  expect_error(png_chunk("zTXt", tz), "truncated");

  expect_error(png_chunk("iTXt", to_bytes("k\0\2\0\0\0x"s)), "bad compression flag");
  expect_error(png_chunk("iTXt", to_bytes("k\0\0\0en"s)), "language tag is not NUL-terminated");
  expect_error(png_chunk("iTXt", to_bytes("k\0\0\0\0tr"s)), "translated keyword");
  expect_error(png_chunk("iTXt", to_bytes("k\0\0\0\0\0\xff\xfe"s)), "not valid UTF-8");
  expect_error(png_chunk("iTXt", to_bytes("k\0\0\0\0\0\xed\xa0\x80"s)), "not valid UTF-8");
}

TEST(PngText, CapsInflatedText) {
  // 65 MiB of zeros compress to about 65 KB: a zip bomb in miniature.
  const auto bomb = zlib_compress(std::vector<uint8_t>(size_t{65} << 20, 0));
  std::vector<uint8_t> data = to_bytes("prompt\0\0"s);
  data.insert(data.end(), bomb.begin(), bomb.end());
  const auto png = png_with({png_chunk("zTXt", data)});
  EXPECT_NE(message_of([&] { read(png); }).find("inflates to more than 64 MiB"), std::string::npos);

  // The cap is over the whole file: two chunks of 40 MiB each are too much as well.
  const auto half = zlib_compress(std::vector<uint8_t>(size_t{40} << 20, 'a'));
  std::vector<uint8_t> d2 = to_bytes("k\0\0"s);
  d2.insert(d2.end(), half.begin(), half.end());
  const auto png2 = png_with({png_chunk("zTXt", d2), png_chunk("zTXt", d2)});
  EXPECT_EQ(kind_of([&] { read(png2); }), ErrorKind::kFormat);
}

TEST(PngText, FileErrors) {
  TempDir tmp;
  EXPECT_EQ(kind_of([&] { read_png_text_file(tmp / "missing.png"); }), ErrorKind::kIo);
  EXPECT_EQ(kind_of([&] { read_png_text_file(tmp.path()); }), ErrorKind::kIo);  // a folder
  sdflow::testing::write_bytes(tmp / "bad.png", to_bytes("GIF89a"));
  const std::string msg = message_of([&] { read_png_text_file(tmp / "bad.png"); });
  EXPECT_EQ(msg.rfind((tmp / "bad.png").string() + ": not a PNG file", 0), 0u) << msg;
}

TEST(WritePng, RejectsBadArguments) {
  TempDir tmp;
  const Image8 img = test_image(2, 2, 3);
  const fs::path path = tmp / "x.png";
  EXPECT_EQ(kind_of([&] { write_png(path, img, {{"", "x"}}, 4); }), ErrorKind::kUsage);
  EXPECT_EQ(kind_of([&] { write_png(path, img, {{std::string(80, 'k'), "x"}}, 4); }), ErrorKind::kUsage);
  EXPECT_EQ(kind_of([&] { write_png(path, img, {{" lead", "x"}}, 4); }), ErrorKind::kUsage);
  EXPECT_EQ(kind_of([&] { write_png(path, img, {{"k", "a\0b"s}}, 4); }), ErrorKind::kUsage);
  EXPECT_EQ(kind_of([&] { write_png(path, img, {}, 10); }), ErrorKind::kUsage);
  Image8 wrong = img;
  wrong.pixels.pop_back();
  EXPECT_EQ(kind_of([&] { write_png(path, wrong, {}, 4); }), ErrorKind::kUsage);
  EXPECT_TRUE(dir_entries(tmp.path()).empty());
}

TEST(WritePng, CompressLevelChangesOnlyTheSize) {
  Image8 img = test_image(64, 64, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>((i / 3) % 64);
  const auto fast = encode_png(img, {}, 0);
  const auto small = encode_png(img, {}, 9);
  EXPECT_LT(small.size(), fast.size());
  EXPECT_EQ(decode_image(fast.data(), fast.size(), "a").pixels,
            decode_image(small.data(), small.size(), "b").pixels);
}

TEST(AtomicFile, LeavesNoTemporaryFiles) {
  TempDir tmp;
  const fs::path path = tmp / "ComfyUI_00001_.png";
  write_png(path, test_image(3, 3, 3), {{"prompt", "{}"}}, 4);
  write_png(path, test_image(4, 4, 3), {{"prompt", "{}"}}, 4);  // replaces it
  EXPECT_EQ(dir_entries(tmp.path()), std::vector<std::string>{"ComfyUI_00001_.png"});
  EXPECT_EQ(decode_image_file(path).width, 4);

  // The rename fails (a folder has the name): the error names the path, the temp file is gone.
  fs::create_directory(tmp / "taken.png");
  fs::create_directory(tmp / "taken.png" / "child");
  const std::string msg = message_of([&] { write_png(tmp / "taken.png", test_image(2, 2, 3), {}, 4); });
  EXPECT_EQ(msg.rfind((tmp / "taken.png").string() + ":", 0), 0u) << msg;
  EXPECT_EQ(dir_entries(tmp.path()), (std::vector<std::string>{"ComfyUI_00001_.png", "taken.png"}));

  // A missing folder: nothing is created.
  EXPECT_EQ(kind_of([&] { write_png(tmp / "no" / "x.png", test_image(2, 2, 3), {}, 4); }), ErrorKind::kIo);
  EXPECT_FALSE(fs::exists(tmp / "no"));
}

TEST(AtomicFile, ReadFileBytesCapsSize) {
  TempDir tmp;
  const std::vector<uint8_t> bytes{1, 2, 3, 4};
  write_file_atomic(tmp / "f", bytes.data(), bytes.size());
  EXPECT_EQ(read_file_bytes(tmp / "f", 4), bytes);
  EXPECT_EQ(kind_of([&] { read_file_bytes(tmp / "f", 3); }), ErrorKind::kFormat);
  EXPECT_EQ(kind_of([&] { read_file_bytes(tmp / "nope", 3); }), ErrorKind::kIo);
}

}  // namespace
}  // namespace sdflow
