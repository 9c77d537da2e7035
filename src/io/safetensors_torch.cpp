#include "io/safetensors_torch.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "io/safetensors_writer.h"

// safetensors data is little-endian; views hand the bytes to ATen as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "sdflow's safetensors views assume a little-endian host");

namespace sdflow {

namespace {

using Fp8Table = std::array<float, 256>;

// Decodes every fp8 bit pattern once. exp_bits/man_bits/bias describe the format; E4M3FN has no
// infinities and only S.1111.111 as NaN, E5M2 follows IEEE (max exponent = inf/NaN).
Fp8Table make_fp8_table(int exp_bits, int man_bits, int bias, bool ieee_special) {
  Fp8Table table{};
  const int exp_max = (1 << exp_bits) - 1;
  const int man_max = (1 << man_bits) - 1;
  for (int b = 0; b < 256; ++b) {
    const bool negative = b & 0x80;
    const int e = (b >> man_bits) & exp_max;
    const int m = b & man_max;
    float v;
    if (ieee_special && e == exp_max) {
      v = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    } else if (!ieee_special && e == exp_max && m == man_max) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (e == 0) {
      v = std::ldexp(static_cast<float>(m), 1 - bias - man_bits);  // subnormal
    } else {
      v = std::ldexp(static_cast<float>(m + (1 << man_bits)), e - bias - man_bits);
    }
    table[b] = negative ? -v : v;
  }
  return table;
}

const Fp8Table& fp8_table(DType dtype) {
  static const Fp8Table e4m3 = make_fp8_table(4, 3, 7, /*ieee_special=*/false);
  static const Fp8Table e5m2 = make_fp8_table(5, 2, 15, /*ieee_special=*/true);
  return dtype == DType::F8_E4M3 ? e4m3 : e5m2;
}

}  // namespace

at::ScalarType scalar_type_for(DType dtype) {
  switch (dtype) {
    case DType::F64:
      return at::kDouble;
    case DType::F32:
      return at::kFloat;
    case DType::F16:
      return at::kHalf;
    case DType::BF16:
      return at::kBFloat16;
#if SDFLOW_HAS_FP8
    case DType::F8_E4M3:
      return at::kFloat8_e4m3fn;
    case DType::F8_E5M2:
      return at::kFloat8_e5m2;
#else
    case DType::F8_E4M3:
    case DType::F8_E5M2:
      return at::kByte;
#endif
    case DType::I64:
      return at::kLong;
    case DType::I32:
      return at::kInt;
    case DType::I16:
      return at::kShort;
    case DType::I8:
      return at::kChar;
    case DType::U8:
      return at::kByte;
    case DType::BOOL:
      return at::kBool;
  }
  throw Error(ErrorKind::kUsage, "invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

std::optional<DType> dtype_for(at::ScalarType type) {
  switch (type) {
    case at::kDouble:
      return DType::F64;
    case at::kFloat:
      return DType::F32;
    case at::kHalf:
      return DType::F16;
    case at::kBFloat16:
      return DType::BF16;
#if SDFLOW_HAS_FP8
    case at::kFloat8_e4m3fn:
      return DType::F8_E4M3;
    case at::kFloat8_e5m2:
      return DType::F8_E5M2;
#endif
    case at::kLong:
      return DType::I64;
    case at::kInt:
      return DType::I32;
    case at::kShort:
      return DType::I16;
    case at::kChar:
      return DType::I8;
    case at::kByte:
      return DType::U8;
    case at::kBool:
      return DType::BOOL;
    default:
      return std::nullopt;
  }
}

at::Tensor tensor_view(const std::shared_ptr<SafetensorsFile>& file, const TensorInfo& info) {
  if (!file) throw Error(ErrorKind::kUsage, "tensor_view: no file");
  const uint8_t* bytes = file->data(info);
  const auto options = at::TensorOptions().dtype(scalar_type_for(info.dtype)).device(at::kCPU);
  if (info.nbytes() == 0) return at::empty(info.shape, options);
  void* ptr = const_cast<uint8_t*>(bytes);  // ATen has no const tensors; the pages are PROT_READ

  if (info.dtype == DType::BOOL &&
      std::any_of(bytes, bytes + info.nbytes(), [](uint8_t b) { return b > 1; })) {
    return at::from_blob(ptr, info.shape, at::TensorOptions().dtype(at::kByte)).ne(0);
  }
  if (reinterpret_cast<uintptr_t>(bytes) % dtype_size(info.dtype) != 0) {
    // Misaligned element access is undefined behaviour and breaks vectorised kernels.
    at::Tensor copy = at::empty(info.shape, options);
    std::memcpy(copy.data_ptr(), bytes, info.nbytes());
    return copy;
  }
  std::shared_ptr<const MappedFile> keep_alive = file->mapping();
  return at::from_blob(
      ptr, info.shape, [keep_alive](void*) {}, options);
}

std::map<std::string, at::Tensor> load_all(const std::shared_ptr<SafetensorsFile>& file) {
  std::map<std::string, at::Tensor> out;
  for (const auto& info : file->tensors()) out.emplace(info.name, tensor_view(file, info));
  return out;
}

std::map<std::string, at::Tensor> load_all(const std::string& path) {
  return load_all(SafetensorsFile::open(path));
}

at::Tensor fp8_to_float(const at::Tensor& raw, DType dtype) {
  if (dtype != DType::F8_E4M3 && dtype != DType::F8_E5M2) {
    throw Error(ErrorKind::kUsage,
                std::string("fp8_to_float: ") + dtype_name(dtype) + " is not an fp8 dtype");
  }
#if SDFLOW_HAS_FP8
  if (raw.scalar_type() == scalar_type_for(dtype)) return raw.to(at::kFloat);
#endif
  if (raw.scalar_type() != at::kByte) {
    throw Error(ErrorKind::kUsage, std::string("fp8_to_float: expected uint8 bits of ") + dtype_name(dtype) +
                                       ", got " + c10::toString(raw.scalar_type()));
  }
  const Fp8Table& table = fp8_table(dtype);
  if (raw.device().is_cpu()) {
    const at::Tensor src = raw.contiguous();
    at::Tensor out = at::empty(src.sizes(), src.options().dtype(at::kFloat));
    const uint8_t* s = src.data_ptr<uint8_t>();
    float* d = out.data_ptr<float>();
    for (int64_t i = 0, n = src.numel(); i < n; ++i) d[i] = table[s[i]];
    return out;
  }
  const at::Tensor lut = at::from_blob(const_cast<float*>(table.data()), {256}, at::kFloat).to(raw.device());
  return lut.index_select(0, raw.reshape({-1}).to(at::kLong)).view(raw.sizes());
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> host;  // keeps the copies alive until written
  std::vector<TensorToWrite> items;
  host.reserve(tensors.size());
  items.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    auto fail = [&](const std::string& what) {
      throw Error(ErrorKind::kUsage, path + ": tensor '" + name + "': " + what);
    };
    if (!tensor.defined()) fail("undefined tensor");
    if (tensor.layout() != at::kStrided) fail("only dense tensors can be saved");
    auto dtype = dtype_for(tensor.scalar_type());
    if (!dtype)
      fail(std::string("dtype ") + c10::toString(tensor.scalar_type()) + " cannot be stored in safetensors");
    at::Tensor cpu = tensor.to(at::kCPU).contiguous();
    items.push_back({name, *dtype, cpu.sizes().vec(), cpu.data_ptr(), cpu.nbytes()});
    host.push_back(std::move(cpu));
  }
  write_safetensors(path, items, metadata);
}

}  // namespace sdflow
