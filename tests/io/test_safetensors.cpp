// safetensors reader and writer, torch-free: round trips and one test per kind of corruption.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

namespace sdflow {
namespace {

using namespace std::string_literals;

constexpr DType kAllDTypes[] = {DType::F64,     DType::F32,     DType::F16, DType::BF16,
                                DType::F8_E4M3, DType::F8_E5M2, DType::I64, DType::I32,
                                DType::I16,     DType::I8,      DType::U8,  DType::BOOL};

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdflow_st_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string write_bytes(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return p;
  }

  std::string dir_;
};

std::vector<uint8_t> le64(uint64_t v) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
  return out;
}

// A file with this exact header text and `data_bytes` zero bytes of data.
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out = le64(header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

SafetensorsHeader parse(const std::vector<uint8_t>& bytes) {
  return parse_safetensors_header(bytes.data(), bytes.size(), "bad.safetensors");
}

// Parsing must fail with kFormat and a message naming the file and every needle.
void expect_format_error(const std::vector<uint8_t>& bytes, const std::vector<std::string>& needles) {
  try {
    parse(bytes);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFormat) << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

void expect_format_error(const std::string& header, size_t data_bytes,
                         const std::vector<std::string>& needles) {
  SCOPED_TRACE(header);
  expect_format_error(make_file(header, data_bytes), needles);
}

TEST(DTypeTest, NamesAndSizesRoundTrip) {
  for (DType d : kAllDTypes) {
    auto parsed = parse_dtype(dtype_name(d));
    ASSERT_TRUE(parsed.has_value()) << dtype_name(d);
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F8_E5M2), 1u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
  EXPECT_FALSE(parse_dtype("f32").has_value());
  EXPECT_FALSE(parse_dtype("F8_E4M3FN").has_value());
  EXPECT_FALSE(parse_dtype("").has_value());
}

TEST_F(SafetensorsTest, RoundTripsEveryDTypeWithMetadata) {
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorToWrite> tensors;
  int k = 0;
  for (DType d : kAllDTypes) {
    // Odd element counts so that a careless layout would misalign the wider types after them.
    std::vector<int64_t> shape = {3, 1 + k % 3};
    size_t n = 3 * (1 + k % 3) * dtype_size(d);
    std::vector<uint8_t> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(d == DType::BOOL ? i % 2 : i * 7 + k);
    buffers.push_back(std::move(bytes));
    tensors.push_back({std::string("t.") + dtype_name(d), d, shape, buffers.back().data(), n});
    ++k;
  }
  const float scalar = 3.5f;
  tensors.push_back({"scalar", DType::F32, {}, &scalar, sizeof(scalar)});
  tensors.push_back({"empty", DType::F16, {0, 4}, nullptr, 0});
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "ünïcode ✓"}, {"empty", ""}};

  const std::string p = path("all.safetensors");
  write_safetensors(p, tensors, metadata);

  auto file = SafetensorsFile::open(p);
  EXPECT_EQ(file->path(), p);
  EXPECT_EQ(file->metadata(), metadata);
  EXPECT_EQ(file->header().data_offset % 8, 0u);
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (size_t i = 1; i < file->tensors().size(); ++i) {
    EXPECT_LT(file->tensors()[i - 1].name, file->tensors()[i].name);
  }
  for (const auto& t : tensors) {
    SCOPED_TRACE(t.name);
    const TensorInfo* info = file->find(t.name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, t.dtype);
    EXPECT_EQ(info->shape, t.shape);
    EXPECT_EQ(info->nbytes(), t.size);
    const uint8_t* data = file->data(*info);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % dtype_size(t.dtype), 0u);
    if (t.size) {
      EXPECT_EQ(std::memcmp(data, t.data, t.size), 0);
    }
  }
  EXPECT_EQ(file->find("scalar")->numel(), 1);
  EXPECT_EQ(file->find("empty")->numel(), 0);
  EXPECT_EQ(file->find("missing"), nullptr);
  EXPECT_EQ(file->find("t.F3"), nullptr);
}

TEST_F(SafetensorsTest, WriterOverwritesAtomicallyAndLeavesNoTemporary) {
  const std::string p = path("x.safetensors");
  const int32_t a = 1, b = 2;
  write_safetensors(p, {{"v", DType::I32, {1}, &a, 4}});
  write_safetensors(p, {{"v", DType::I32, {1}, &b, 4}});
  auto file = SafetensorsFile::open(p);
  int32_t got = 0;
  std::memcpy(&got, file->data(*file->find("v")), 4);
  EXPECT_EQ(got, 2);
  EXPECT_TRUE(file->metadata().empty());
  struct stat st {};
  EXPECT_NE(::stat((p + ".tmp." + std::to_string(::getpid())).c_str(), &st), 0);
}

TEST_F(SafetensorsTest, WriterHeaderIsSortedAndSpacePadded) {
  const std::string p = path("h.safetensors");
  const uint8_t byte = 1;
  write_safetensors(p, {{"b", DType::U8, {1}, &byte, 1}, {"a", DType::U8, {1}, &byte, 1}}, {{"k", "v"}});
  std::ifstream in(p, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(all.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(all[i]);
  ASSERT_EQ(n % 8, 0u);
  const std::string header = all.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  const auto last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.find("\"__metadata__\""), header.find("\"a\""));
  EXPECT_LT(header.find("\"a\""), header.find("\"b\""));
}

TEST_F(SafetensorsTest, WriterRejectsInvalidTensors) {
  const float v[2] = {1, 2};
  auto expect_usage = [&](const std::vector<TensorToWrite>& ts, const std::string& needle) {
    try {
      write_safetensors(path("bad.safetensors"), ts);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_usage({{"a", DType::F32, {2}, v, 8}, {"a", DType::F32, {2}, v, 8}}, "duplicate tensor 'a'");
  expect_usage({{"a", DType::F32, {3}, v, 8}}, "tensor 'a'");
  expect_usage({{"a", DType::F32, {-2}, v, 8}}, "negative");
  expect_usage({{"__metadata__", DType::F32, {2}, v, 8}}, "reserved");
  expect_usage({{"a", DType::F32, {2}, nullptr, 8}}, "null");
  struct stat st {};
  EXPECT_NE(::stat(path("bad.safetensors").c_str(), &st), 0);
}

TEST_F(SafetensorsTest, WriterReportsUnwritableFolder) {
  const uint8_t byte = 0;
  try {
    write_safetensors(path("no/such/dir/x.safetensors"), {{"a", DType::U8, {1}, &byte, 1}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("no/such/dir"), std::string::npos);
  }
}

TEST(SafetensorsParseTest, AcceptsWhitespacePaddingGapsAndEmptyTensors) {
  const std::string text =
      R"(  {"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"z":{"dtype":"I8","shape":[0,3],"data_offsets":[4,4]}}   )";
  auto h = parse(make_file(text, 16));
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[0].begin, 8u);
  EXPECT_EQ(h.tensors[1].numel(), 0);
  EXPECT_TRUE(h.metadata.empty());
  EXPECT_EQ(h.data_offset, 8u + text.size());
  // An empty header object is a valid file without tensors.
  EXPECT_TRUE(parse(make_file("{}", 0)).tensors.empty());
  // Huge dimensions are fine in an empty tensor.
  EXPECT_EQ(
      parse(make_file(R"({"e":{"dtype":"F32","shape":[0,4611686018427387904],"data_offsets":[0,0]}})", 0))
          .tensors[0]
          .numel(),
      0);
}

TEST(SafetensorsParseTest, RejectsTooSmallFile) {
  expect_format_error(std::vector<uint8_t>{}, {"too small"});
  expect_format_error(std::vector<uint8_t>{2, 0, 0, 0, 0, 0, 0}, {"too small"});
}

TEST(SafetensorsParseTest, RejectsHeaderLengthBeyondFile) {
  auto bytes = make_file("{}", 0);
  bytes[0] = 3;  // claims 3 header bytes, 2 present
  expect_format_error(bytes, {"header length 3", "exceeds the file size"});
  expect_format_error(le64(~uint64_t{0}), {"header length", "limit"});
}

TEST(SafetensorsParseTest, RejectsHeaderLengthOver100MB) {
  auto bytes = le64(100'000'001);
  expect_format_error(bytes, {"header length 100000001", "limit"});
}

TEST(SafetensorsParseTest, RejectsNonJsonHeaders) {
  expect_format_error("not json", 0, {"not valid JSON"});
  expect_format_error("{\"a\":", 0, {"not valid JSON"});
  expect_format_error("", 0, {"not valid JSON"});
  expect_format_error("{} {}", 0, {"not valid JSON"});
  // nlohmann stops at a NUL byte; what follows must not be silently ignored.
  expect_format_error("{}\0\0\0\0"s, 0, {"not valid JSON", "NUL byte at offset 2"});
  expect_format_error("{}\0{\"w\":1}"s, 0, {"NUL byte"});
  // Invalid UTF-8 inside a string; the message must stay printable.
  try {
    parse(make_file("{\"\xff\xfe\":1}", 0));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFormat);
    for (unsigned char c : std::string(e.what())) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << e.what();
  }
}

TEST(SafetensorsParseTest, RejectsNonObjectHeaders) {
  expect_format_error("[]", 0, {"not a JSON object", "array"});
  expect_format_error("42", 0, {"not a JSON object"});
  expect_format_error("\"str\"", 0, {"not a JSON object"});
  expect_format_error("null", 0, {"not a JSON object"});
}

TEST(SafetensorsParseTest, RejectsDeepNestingAndDuplicateKeys) {
  expect_format_error(std::string(100000, '[') + std::string(100000, ']'), 0, {"nests deeper"});
  expect_format_error(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                      R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                      2, {"duplicate key 'a'"});
  expect_format_error(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", 1,
                      {"duplicate key 'dtype'"});
}

TEST(SafetensorsParseTest, RejectsBadTensorEntries) {
  expect_format_error(R"({"w":[1,2]})", 0, {"tensor 'w'", "not a JSON object"});
  expect_format_error(R"({"w":"F32"})", 0, {"tensor 'w'", "not a JSON object"});
  expect_format_error(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "unknown dtype 'F33'"});
  expect_format_error(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4, {"tensor 'w'", "'dtype'"});
  expect_format_error(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4, {"tensor 'w'", "missing 'dtype'"});
  expect_format_error(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4, {"tensor 'w'", "missing 'shape'"});
  expect_format_error(R"({"w":{"dtype":"F32","shape":{},"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "'shape'"});
  expect_format_error(R"({"w":{"dtype":"F32","shape":[1]}})", 4, {"tensor 'w'", "missing 'data_offsets'"});
}

TEST(SafetensorsParseTest, RejectsBadShapes) {
  expect_format_error(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "negative"});
  expect_format_error(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "not an integer"});
  expect_format_error(R"({"w":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "not an integer"});
  expect_format_error(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "too large"});
  // 2^62 · 2^62 overflows 64 bits; 2^62 · 4 bytes overflows only in the byte count.
  expect_format_error(
      R"({"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,4]}})", 4,
      {"tensor 'w'", "too many elements"});
  expect_format_error(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "too large for F32"});
}

TEST(SafetensorsParseTest, RejectsSizeMismatch) {
  expect_format_error(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 24,
                      {"tensor 'w'", "needs 24 bytes", "span 20"});
  expect_format_error(R"({"w":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}})", 4,
                      {"tensor 'w'", "needs 2 bytes"});
}

TEST(SafetensorsParseTest, RejectsBadOffsets) {
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 6,
                      {"tensor 'w'", "beyond the data section"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[9,9]}})", 6,
                      {"tensor 'w'", "beyond the data section"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]}})", 8,
                      {"tensor 'w'", "begin 8 > end 4"});
  expect_format_error(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                      8, {"tensor 'b'", "overlap tensor 'a'"});
  expect_format_error(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                      8, {"overlap"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0]}})", 8,
                      {"tensor 'w'", "[begin, end] pair"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4,8]}})", 8,
                      {"tensor 'w'", "pair"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":{"a":1,"b":2}}})", 8,
                      {"tensor 'w'", "pair"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0.0,4.0]}})", 8,
                      {"tensor 'w'", "non-negative integers", "number"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":["0","4"]}})", 8,
                      {"tensor 'w'", "non-negative integers", "string"});
  expect_format_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}})", 8,
                      {"tensor 'w'", "non-negative integers"});
}

TEST(SafetensorsParseTest, RejectsBadMetadata) {
  expect_format_error(R"({"__metadata__":{"a":"x","b":1}})", 0, {"__metadata__", "'b'", "not a string"});
  expect_format_error(R"({"__metadata__":{"a":null}})", 0, {"__metadata__", "'a'", "not a string"});
  expect_format_error(R"({"__metadata__":{"a":{"nested":"x"}}})", 0, {"__metadata__", "not a string"});
  expect_format_error(R"({"__metadata__":["a"]})", 0, {"__metadata__", "not a JSON object"});
}

TEST_F(SafetensorsTest, OpenReportsMissingDirectoryAndEmptyFiles) {
  auto expect_error = [](const std::string& p, ErrorKind kind) {
    try {
      SafetensorsFile::open(p);
      ADD_FAILURE() << p;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  expect_error(path("missing.safetensors"), ErrorKind::kIo);
  expect_error(dir_, ErrorKind::kIo);
  expect_error(write_bytes("empty.safetensors", {}), ErrorKind::kFormat);
  expect_error(write_bytes("short.safetensors", {1, 2, 3}), ErrorKind::kFormat);
  expect_error(write_bytes("bad.safetensors",
                           make_file(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 2)),
               ErrorKind::kFormat);
}

TEST_F(SafetensorsTest, DataRejectsForeignTensorInfo) {
  const uint8_t bytes[4] = {1, 2, 3, 4};
  write_safetensors(path("d.safetensors"), {{"w", DType::U8, {4}, bytes, 4}});
  auto file = SafetensorsFile::open(path("d.safetensors"));
  TensorInfo foreign = *file->find("w");
  foreign.end = 1000;
  EXPECT_THROW(file->data(foreign), Error);
}

TEST_F(SafetensorsTest, DescribeSummarisesTheFile) {
  const float f[2] = {1, 2};
  const uint16_t h[3] = {1, 2, 3};
  write_safetensors(
      path("i.safetensors"),
      {{"a", DType::F32, {2}, f, 8}, {"b", DType::F16, {3}, h, 6}, {"c", DType::F32, {1}, f, 4}},
      {{"modelspec.title", "tiny"}});
  auto file = SafetensorsFile::open(path("i.safetensors"));
  auto j = describe_safetensors(*file);
  EXPECT_EQ(j["path"], path("i.safetensors"));
  EXPECT_EQ(j["file_bytes"], file->file_size());
  EXPECT_EQ(j["tensor_count"], 3);
  EXPECT_EQ(j["total_bytes"], 18);
  EXPECT_EQ(j["dtypes"], nlohmann::json({{"F32", 2}, {"F16", 1}}));
  EXPECT_EQ(j["metadata"]["modelspec.title"], "tiny");
  ASSERT_EQ(j["tensors"].size(), 3u);
  EXPECT_EQ(j["tensors"][1], nlohmann::json({{"name", "b"}, {"dtype", "F16"}, {"shape", {3}}, {"bytes", 6}}));
}

}  // namespace
}  // namespace sdflow
