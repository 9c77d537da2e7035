// safetensors reading, torch-free: strict header validation and zero-copy access to tensor
// bytes in a read-only mmap. The torch adapter (safetensors_torch.h) turns these bytes into
// at::Tensor views; the writer is in safetensors_writer.h.
//
// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object, optionally
// padded with spaces), then the data section. Every tensor offset is relative to the data
// section. A file is hostile until proven otherwise: every size, offset and type in the
// header is checked before any byte of data is handed out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.h"

namespace sdflow {

enum class DType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);
// The name used in safetensors headers ("F32", "F8_E4M3", ...).
const char* dtype_name(DType dtype);
std::optional<DType> parse_dtype(std::string_view name);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section: [begin, end)
  uint64_t end = 0;

  uint64_t nbytes() const { return end - begin; }
  int64_t numel() const;  // 1 for a scalar (empty shape)
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + N: where the data section starts in the file
};

inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1000 * 1000;

// Parses and validates the header of a whole safetensors file held in [data, data + size).
// Offsets are checked against size, and overlapping tensors are rejected; gaps between tensors
// are allowed (the reference writer never leaves any, but they are harmless). Leading and
// trailing JSON whitespace around the header object is accepted. Throws
// Error(kFormat, "<label>: tensor '<name>': <what>") or Error(kFormat, "<label>: <what>").
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& label);

// An opened, validated safetensors file. Thread-safe for concurrent reads (it never changes
// after open()).
class SafetensorsFile {
 public:
  // Throws Error(kIo) when the file cannot be read, Error(kFormat) when it is malformed; the
  // message names the path.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return mapping_->path(); }
  uint64_t file_size() const { return mapping_->size(); }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when there is no tensor of that name.
  const TensorInfo* find(std::string_view name) const;
  // First byte of the tensor inside the mapping (read-only; valid while mapping() lives).
  // Throws Error(kUsage) for a TensorInfo whose range is not inside this file's data section.
  const uint8_t* data(const TensorInfo& info) const;
  const std::shared_ptr<const MappedFile>& mapping() const { return mapping_; }

 private:
  SafetensorsFile(std::shared_ptr<const MappedFile> mapping, SafetensorsHeader header)
      : mapping_(std::move(mapping)), header_(std::move(header)) {}

  std::shared_ptr<const MappedFile> mapping_;
  SafetensorsHeader header_;
};

// Summary for `sdflow info`: {"path", "file_bytes", "tensor_count", "total_bytes",
// "dtypes": {name: count}, "metadata": {...}, "tensors": [{"name", "dtype", "shape", "bytes"}]}.
nlohmann::json describe_safetensors(const SafetensorsFile& file);

}  // namespace sdflow
