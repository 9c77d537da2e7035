// The torch adapter: zero-copy views into the mapping, dtype mapping, fp8 decoding, saving.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "io/safetensors_torch.h"
#include "io/safetensors_writer.h"

namespace sdflow {
namespace {

class SafetensorsTorchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdflow_stt_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

bool in_mapping(const SafetensorsFile& file, const at::Tensor& t) {
  return file.mapping()->contains(t.data_ptr(), t.nbytes());
}

TEST_F(SafetensorsTorchTest, ViewsAreZeroCopyAndValuesRoundTrip) {
  const auto f32 = at::arange(12, at::kFloat).reshape({3, 4}) * 0.25;
  const auto f16 = at::linspace(-2, 2, 7).to(at::kHalf);
  const auto bf16 = at::linspace(-3, 3, 5).to(at::kBFloat16);
  const auto i64 = at::tensor(std::vector<int64_t>{INT64_MIN, -1, 0, 1, INT64_MAX});
  const auto boolean = at::tensor(std::vector<int64_t>{1, 0, 0, 1}).to(at::kBool).reshape({2, 2});
  const auto f64 = at::tensor(std::vector<double>{1e300, -1e-300});
  const auto i8 = at::tensor(std::vector<int64_t>{-128, 127}).to(at::kChar);
  save_safetensors(
      path("t.safetensors"),
      {{"f32", f32}, {"f16", f16}, {"bf16", bf16}, {"i64", i64}, {"bool", boolean}, {"f64", f64}, {"i8", i8}},
      {{"k", "v"}});

  auto file = SafetensorsFile::open(path("t.safetensors"));
  EXPECT_EQ(file->metadata().at("k"), "v");
  auto all = load_all(file);
  ASSERT_EQ(all.size(), 7u);
  for (const auto& [name, expected] : std::map<std::string, at::Tensor>{{"f32", f32},
                                                                        {"f16", f16},
                                                                        {"bf16", bf16},
                                                                        {"i64", i64},
                                                                        {"bool", boolean},
                                                                        {"f64", f64},
                                                                        {"i8", i8}}) {
    SCOPED_TRACE(name);
    const at::Tensor& got = all.at(name);
    EXPECT_EQ(got.scalar_type(), expected.scalar_type());
    EXPECT_EQ(got.sizes(), expected.sizes());
    EXPECT_TRUE(got.device().is_cpu());
    EXPECT_TRUE(at::equal(got, expected));
    EXPECT_TRUE(in_mapping(*file, got)) << "not a view of the mapping";
  }
}

TEST_F(SafetensorsTorchTest, DecodesKnownBitPatterns) {
  // Written with the torch-free writer so the bytes do not depend on torch's own encoders.
  const uint16_t f16[] = {0x3C00, 0xC000, 0x3555};  // 1, -2, ~1/3
  const uint16_t bf16[] = {0x3F80, 0xC040};         // 1, -3
  const float f32[] = {0.5f, -7.0f};
  write_safetensors(path("bits.safetensors"), {{"f16", DType::F16, {3}, f16, sizeof(f16)},
                                               {"bf16", DType::BF16, {2}, bf16, sizeof(bf16)},
                                               {"f32", DType::F32, {1, 2}, f32, sizeof(f32)}});
  auto all = load_all(path("bits.safetensors"));
  auto h = all.at("f16").to(at::kFloat);
  EXPECT_EQ(h[0].item<float>(), 1.0f);
  EXPECT_EQ(h[1].item<float>(), -2.0f);
  EXPECT_NEAR(h[2].item<float>(), 1.0 / 3, 1e-3);
  auto b = all.at("bf16").to(at::kFloat);
  EXPECT_EQ(b[0].item<float>(), 1.0f);
  EXPECT_EQ(b[1].item<float>(), -3.0f);
  EXPECT_EQ(all.at("f32").sizes(), at::IntArrayRef({1, 2}));
  EXPECT_EQ(all.at("f32")[0][1].item<float>(), -7.0f);
}

TEST_F(SafetensorsTorchTest, TensorOutlivesTheFileObject) {
  save_safetensors(path("o.safetensors"), {{"w", at::arange(1000, at::kFloat)}});
  at::Tensor w;
  std::weak_ptr<const MappedFile> mapping;
  {
    auto file = SafetensorsFile::open(path("o.safetensors"));
    mapping = file->mapping();
    w = tensor_view(file, *file->find("w"));
  }
  EXPECT_FALSE(mapping.expired());  // the tensor's deleter holds it
  EXPECT_EQ(w.sum().item<float>(), 999.0f * 1000 / 2);
  w.reset();
  EXPECT_TRUE(mapping.expired());
}

TEST_F(SafetensorsTorchTest, MisalignedDataIsCopied) {
  // U8 at [0,1) pushes the F32 to offset 1, which the reference format permits.
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(uint64_t{padded.size()} >> (8 * i));
  bytes += padded;
  bytes += '\x05';
  const float values[2] = {1.5f, -2.5f};
  bytes.append(reinterpret_cast<const char*>(values), sizeof(values));
  std::ofstream(path("m.safetensors"), std::ios::binary) << bytes;

  auto file = SafetensorsFile::open(path("m.safetensors"));
  auto b = tensor_view(file, *file->find("b"));
  EXPECT_FALSE(in_mapping(*file, b));
  EXPECT_EQ(b[0].item<float>(), 1.5f);
  EXPECT_EQ(b[1].item<float>(), -2.5f);
  auto a = tensor_view(file, *file->find("a"));
  EXPECT_TRUE(in_mapping(*file, a));
  EXPECT_EQ(a.item<uint8_t>(), 5);
}

TEST_F(SafetensorsTorchTest, BoolBytesOtherThanZeroOrOneAreNormalised) {
  const uint8_t bytes[] = {0, 1, 2, 255};
  write_safetensors(path("b.safetensors"), {{"b", DType::BOOL, {4}, bytes, 4}});
  auto file = SafetensorsFile::open(path("b.safetensors"));
  auto b = tensor_view(file, *file->find("b"));
  EXPECT_EQ(b.scalar_type(), at::kBool);
  EXPECT_FALSE(in_mapping(*file, b));
  EXPECT_TRUE(at::equal(b.to(at::kByte), at::tensor(std::vector<int64_t>{0, 1, 1, 1}).to(at::kByte)));
}

TEST_F(SafetensorsTorchTest, EmptyAndScalarTensors) {
  save_safetensors(path("e.safetensors"),
                   {{"empty", at::zeros({0, 3}, at::kHalf)}, {"scalar", at::scalar_tensor(2.0)}});
  auto all = load_all(path("e.safetensors"));
  EXPECT_EQ(all.at("empty").sizes(), at::IntArrayRef({0, 3}));
  EXPECT_EQ(all.at("empty").scalar_type(), at::kHalf);
  EXPECT_EQ(all.at("scalar").dim(), 0);
  EXPECT_EQ(all.at("scalar").item<double>(), 2.0);
}

at::Tensor bytes_tensor(std::vector<uint8_t> v) {
  return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kByte).clone();
}

TEST(Fp8Test, DecodesE4M3KnownValues) {
  auto f = fp8_to_float(
      bytes_tensor({0x38, 0x40, 0xB8, 0x01, 0x7E, 0xFE, 0x00, 0x80, 0x08, 0x07, 0x7F, 0xFF}), DType::F8_E4M3);
  ASSERT_EQ(f.scalar_type(), at::kFloat);
  auto v = [&](int i) { return f[i].item<float>(); };
  EXPECT_EQ(v(0), 1.0f);
  EXPECT_EQ(v(1), 2.0f);
  EXPECT_EQ(v(2), -1.0f);
  EXPECT_EQ(v(3), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(v(4), 448.0f);                // largest finite
  EXPECT_EQ(v(5), -448.0f);
  EXPECT_EQ(v(6), 0.0f);
  EXPECT_TRUE(std::signbit(v(7)) && v(7) == 0.0f);
  EXPECT_EQ(v(8), std::ldexp(1.0f, -6));      // smallest normal
  EXPECT_EQ(v(9), 7 * std::ldexp(1.0f, -9));  // largest subnormal
  EXPECT_TRUE(std::isnan(v(10)));
  EXPECT_TRUE(std::isnan(v(11)));
  // E4M3FN has no infinities: 0x78 (exponent all ones, mantissa 0) is a number.
  EXPECT_EQ(fp8_to_float(bytes_tensor({0x78}), DType::F8_E4M3).item<float>(), 256.0f);
}

TEST(Fp8Test, DecodesE5M2KnownValues) {
  auto f = fp8_to_float(bytes_tensor({0x3C, 0x40, 0xBC, 0x01, 0x7B, 0x7C, 0xFC, 0x7D, 0x7F, 0x80}),
                        DType::F8_E5M2);
  auto v = [&](int i) { return f[i].item<float>(); };
  EXPECT_EQ(v(0), 1.0f);
  EXPECT_EQ(v(1), 2.0f);
  EXPECT_EQ(v(2), -1.0f);
  EXPECT_EQ(v(3), std::ldexp(1.0f, -16));
  EXPECT_EQ(v(4), 57344.0f);
  EXPECT_EQ(v(5), std::numeric_limits<float>::infinity());
  EXPECT_EQ(v(6), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(v(7)));
  EXPECT_TRUE(std::isnan(v(8)));
  EXPECT_TRUE(std::signbit(v(9)) && v(9) == 0.0f);
}

TEST(Fp8Test, KeepsShapeAndRejectsOtherDTypes) {
  auto raw = at::full({2, 3}, 0x38, at::kByte).t();  // non-contiguous input
  auto f = fp8_to_float(raw, DType::F8_E4M3);
  EXPECT_EQ(f.sizes(), at::IntArrayRef({3, 2}));
  EXPECT_TRUE(at::equal(f, at::ones({3, 2})));
  EXPECT_THROW(fp8_to_float(raw, DType::F16), Error);
  EXPECT_THROW(fp8_to_float(at::zeros({2}), DType::F8_E4M3), Error);
}

#if SDFLOW_HAS_FP8
TEST(Fp8Test, SoftwareDecodeMatchesNativeForAllBitPatterns) {
  auto bits = at::arange(256, at::kInt).to(at::kByte);
  for (auto [dtype, native] :
       {std::pair{DType::F8_E4M3, at::kFloat8_e4m3fn}, std::pair{DType::F8_E5M2, at::kFloat8_e5m2}}) {
    SCOPED_TRACE(dtype_name(dtype));
    auto soft = fp8_to_float(bits, dtype);
    auto hard = bits.view(native).to(at::kFloat);
    EXPECT_TRUE(at::equal(soft.isnan(), hard.isnan()));
    auto finite = ~soft.isnan();
    EXPECT_TRUE(at::equal(soft.masked_select(finite), hard.masked_select(finite)));
    EXPECT_TRUE(at::equal(fp8_to_float(bits.view(native), dtype).isnan(), hard.isnan()));
  }
}
#endif

TEST_F(SafetensorsTorchTest, Fp8TensorsLoadOnEveryTorch) {
  const uint8_t e4m3[] = {0x38, 0x40, 0xB8};
  const uint8_t e5m2[] = {0x3C, 0x40, 0xBC};
  write_safetensors(path("f8.safetensors"),
                    {{"a", DType::F8_E4M3, {3}, e4m3, 3}, {"b", DType::F8_E5M2, {3}, e5m2, 3}});
  auto file = SafetensorsFile::open(path("f8.safetensors"));
  const auto expected = at::tensor(std::vector<float>{1, 2, -1});
  for (const char* name : {"a", "b"}) {
    const TensorInfo& info = *file->find(name);
    auto t = tensor_view(file, info);
    EXPECT_EQ(t.scalar_type(), scalar_type_for(info.dtype));
    EXPECT_EQ(t.scalar_type() == at::kByte, !compat::kHasFp8);
    EXPECT_TRUE(in_mapping(*file, t));
    EXPECT_TRUE(at::equal(fp8_to_float(t, info.dtype), expected)) << name;
  }
}

TEST_F(SafetensorsTorchTest, SaveMakesContiguousCopiesAndRejectsUnsupported) {
  auto base = at::arange(6, at::kFloat).reshape({2, 3});
  save_safetensors(path("s.safetensors"), {{"t", base.t()}, {"slice", base.select(1, 1)}});
  auto all = load_all(path("s.safetensors"));
  EXPECT_TRUE(at::equal(all.at("t"), base.t()));
  EXPECT_TRUE(at::equal(all.at("slice"), base.select(1, 1)));

  auto expect_usage = [&](const at::Tensor& t) {
    try {
      save_safetensors(path("u.safetensors"), {{"x", t}});
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage);
      EXPECT_NE(std::string(e.what()).find("tensor 'x'"), std::string::npos) << e.what();
    }
  };
  expect_usage(at::zeros({2}, at::kComplexFloat));
  expect_usage(at::Tensor());
}

TEST(DTypeMappingTest, RoundTripsThroughScalarType) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16,
                  DType::I8, DType::U8, DType::BOOL}) {
    EXPECT_EQ(dtype_for(scalar_type_for(d)), d) << dtype_name(d);
    EXPECT_EQ(c10::elementSize(scalar_type_for(d)), dtype_size(d));
  }
  EXPECT_FALSE(dtype_for(at::kComplexDouble).has_value());
}

}  // namespace
}  // namespace sdflow
