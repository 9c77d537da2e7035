// The torch.save zip reader without torch: real files written by PyTorch (tests/data/torch, made
// by tools/goldens/make_torch_checkpoint_samples.py), the state-dict choice ComfyUI makes, and
// hostile input — refused globals, truncation at every length, corrupt sizes and offsets — which
// must end in an sdflow::Error, never a crash (ASan/UBSan builds and the fuzzer check the rest).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "io/io_test_util.h"
#include "io/torch_checkpoint.h"
#include "io/torch_pickle.h"
#include "io/zip_archive.h"

namespace sdflow {
namespace {

using testing::kind_of;
using testing::message_of;

// A string literal with its embedded NULs.
template <size_t N>
std::string bytes(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string data_path(const std::string& name) { return std::string(SDFLOW_SOURCE_DIR) + "/tests/data/torch/" + name; }

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

const TorchTensorRecord& find(const TorchCheckpoint& ck, const std::string& name) {
  for (const auto& t : ck.tensors)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

template <typename T>
T element(const TorchTensorRecord& t, int64_t storage_index) {
  T v;
  std::memcpy(&v, t.storage + storage_index * sizeof(T), sizeof(T));
  return v;
}

void expect_sample_tensors(const TorchCheckpoint& ck) {
  std::vector<std::string> names;
  for (const auto& t : ck.tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"bf16", "bool", "empty", "f16", "f32", "f32_row", "f32_t", "i64", "i8",
                                             "param", "scalar"}));
  // f32 = arange(12).reshape(3, 4); its transpose and row 1[1:] view the same storage.
  const auto& f32 = find(ck, "f32");
  EXPECT_EQ(f32.dtype, DType::F32);
  EXPECT_EQ(f32.shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(f32.strides, (std::vector<int64_t>{4, 1}));
  EXPECT_EQ(f32.storage_bytes, 48u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(element<float>(f32, i), static_cast<float>(i));
  const auto& t = find(ck, "f32_t");
  EXPECT_EQ(t.shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(t.strides, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(t.storage, f32.storage);
  const auto& row = find(ck, "f32_row");
  EXPECT_EQ(row.offset, 5);
  EXPECT_EQ(row.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(element<float>(row, row.offset), 5.0f);

  EXPECT_EQ(find(ck, "f16").dtype, DType::F16);
  EXPECT_EQ(element<uint16_t>(find(ck, "f16"), 3), 0x7bffu);  // 65504 = fp16 max
  EXPECT_EQ(find(ck, "bf16").dtype, DType::BF16);
  EXPECT_EQ(element<uint16_t>(find(ck, "bf16"), 2), 0x4060u);  // 3.5
  EXPECT_EQ(find(ck, "i64").dtype, DType::I64);
  EXPECT_EQ(element<int64_t>(find(ck, "i64"), 3), int64_t{1} << 40);
  EXPECT_EQ(element<int8_t>(find(ck, "i8"), 0), -128);
  EXPECT_EQ(find(ck, "bool").dtype, DType::BOOL);
  EXPECT_EQ(find(ck, "param").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(element<float>(find(ck, "param"), 3), 0.25f);
  EXPECT_TRUE(find(ck, "scalar").shape.empty());
  EXPECT_EQ(find(ck, "empty").shape, (std::vector<int64_t>{0, 5}));
}

TEST(TorchCheckpoint, ReadsWhatTorchSaveWrites) {
  const TorchCheckpoint ck = open_torch_checkpoint(data_path("tensors.pth"));
  expect_sample_tensors(ck);
  EXPECT_TRUE(ck.skipped.empty());
}

TEST(TorchCheckpoint, PicksTheStateDictAsComfyUIDoes) {
  const TorchCheckpoint nested = open_torch_checkpoint(data_path("nested.ckpt"));
  expect_sample_tensors(nested);
  const TorchCheckpoint single = open_torch_checkpoint(data_path("single_key.pt"));
  expect_sample_tensors(single);
}

TEST(TorchCheckpoint, InflatesDeflatedEntries) {
  expect_sample_tensors(open_torch_checkpoint(data_path("deflated.pth")));
}

TEST(TorchCheckpoint, RefusesOtherGlobalsNamingThem) {
  const std::string path = data_path("global.pth");
  EXPECT_EQ(kind_of([&] { open_torch_checkpoint(path); }), ErrorKind::kModel);
  const std::string msg = message_of([&] { open_torch_checkpoint(path); });
  EXPECT_NE(msg.find("argparse.Namespace"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(TorchCheckpoint, RefusesLegacyFilesWithAHint) {
  const std::string msg = message_of([&] { open_torch_checkpoint(data_path("legacy.pt")); });
  EXPECT_NE(msg.find("legacy"), std::string::npos) << msg;
}

TEST(TorchCheckpoint, RefusesStoragesOfTheWrongSize) {
  const std::string msg = message_of([&] { open_torch_checkpoint(data_path("short_storage.pth")); });
  EXPECT_NE(msg.find("storage '0' has 44 bytes"), std::string::npos) << msg;
}

TEST(TorchCheckpoint, RefusesViewsOutsideTheirStorage) {
  const std::string msg = message_of([&] { open_torch_checkpoint(data_path("view_outside.pth")); });
  EXPECT_NE(msg.find("tensor 'w': view reaches element 4 of a storage of 4"), std::string::npos) << msg;
}

// Every prefix of a real file is an Error (a zip's directory is at its end), never a crash.
TEST(TorchCheckpoint, EveryTruncationIsAnError) {
  const std::vector<uint8_t> bytes = read_file(data_path("tensors.pth"));
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(kind_of([&] { parse_torch_checkpoint(cut.data(), cut.size(), "cut.pth"); }), ErrorKind::kFormat)
        << "at " << n;
  }
}

// Flipping any single byte either still parses into valid records or is an Error.
TEST(TorchCheckpoint, SingleByteCorruptionIsSafe) {
  const std::vector<uint8_t> bytes = read_file(data_path("tensors.pth"));
  size_t errors = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t x : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::vector<uint8_t> bad = bytes;
      bad[i] ^= x;
      try {
        const TorchCheckpoint ck = parse_torch_checkpoint(bad.data(), bad.size(), "bad.pth");
        for (const auto& t : ck.tensors) EXPECT_LE(t.storage + t.storage_bytes, bad.data() + bad.size());
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  EXPECT_GT(errors, 0u);
}

TEST(TorchCheckpoint, ZipCentralDirectoryOffsetsAreChecked) {
  std::vector<uint8_t> bytes = read_file(data_path("tensors.pth"));
  // The end record's central directory offset (bytes 16..19 of the last 22) pointed past the end.
  const size_t end = bytes.size() - 22;
  ASSERT_EQ(bytes[end], 0x50);
  bytes[end + 19] = 0x7f;
  const std::string msg = message_of([&] { parse_torch_checkpoint(bytes.data(), bytes.size(), "x.pth"); });
  EXPECT_NE(msg.find("central directory lies outside the file"), std::string::npos) << msg;
}

TEST(TorchPickle, BuildsPlainValuesAndRefusesTheRest) {
  // {"a": [1, -2, 3.5, "s", True, None]} in protocol 2.
  const std::string ok = bytes(
      "\x80\x02}q\x00X\x01\x00\x00\x00" "aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00s"
      "\x88Nes.");
  PickleRef v = parse_torch_pickle(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "t");
  ASSERT_EQ(v->kind, PickleValue::Kind::kDict);
  const PickleValue* a = v->get("a");
  ASSERT_TRUE(a && a->kind == PickleValue::Kind::kList);
  ASSERT_EQ(a->items.size(), 6u);
  EXPECT_EQ(a->items[0]->i, 1);
  EXPECT_EQ(a->items[1]->i, -2);
  EXPECT_EQ(a->items[2]->f, 3.5);
  EXPECT_EQ(a->items[3]->s, "s");
  EXPECT_TRUE(a->items[4]->b);
  EXPECT_EQ(a->items[5]->kind, PickleValue::Kind::kNone);

  auto run = [](const std::string& p) {
    return [p] { parse_torch_pickle(reinterpret_cast<const uint8_t*>(p.data()), p.size(), "t"); };
  };
  const std::string os_system = bytes("\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.");
  EXPECT_EQ(kind_of(run(os_system)), ErrorKind::kModel);
  EXPECT_NE(message_of(run(os_system)).find("'os.system'"), std::string::npos);
  EXPECT_EQ(kind_of(run(bytes("\x80\x02"))), ErrorKind::kFormat);                // no STOP
  EXPECT_EQ(kind_of(run("a.")), ErrorKind::kFormat);                      // stack underflow
  EXPECT_EQ(kind_of(run(bytes("]h\x05."))), ErrorKind::kFormat);                 // memo never stored
  EXPECT_EQ(kind_of(run(bytes("]q\x00h\x00" "a."))), ErrorKind::kFormat);        // a list inside itself
  EXPECT_EQ(kind_of(run("X\xff\xff\xff\x7f" "abc.")), ErrorKind::kFormat);  // string past the end
  EXPECT_EQ(kind_of(run("I1\n.")), ErrorKind::kFormat);                   // text opcodes are not read
  std::string deep(100, '\x85');
  EXPECT_EQ(kind_of(run("N" + deep + ".")), ErrorKind::kFormat);          // 100 nested tuples
}

}  // namespace
}  // namespace sdflow
