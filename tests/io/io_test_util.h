// Helpers shared by the image/path tests in tests/io: a scratch folder and a PNG builder that
// assembles files chunk by chunk, so tests can make exactly the bytes they need.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace sdflow::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sdflow_io_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  std::filesystem::path path_;
};

// The kind / message of the sdflow::Error that f throws (a test failure when it throws none).
inline ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no sdflow::Error thrown";
  return ErrorKind::kRuntime;
}

inline std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no sdflow::Error thrown";
  return "";
}

inline void write_bytes(const std::filesystem::path& p, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

inline void touch(const std::filesystem::path& p) { write_bytes(p, {}); }

inline std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }

inline void append_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

inline std::vector<uint8_t> zlib_compress(const std::vector<uint8_t>& data) {
  uLongf size = compressBound(data.size());
  std::vector<uint8_t> out(size);
  if (compress(out.data(), &size, data.data(), data.size()) != Z_OK)
    throw std::runtime_error("compress failed");
  out.resize(size);
  return out;
}

// One chunk: length, type, data, CRC (a wrong CRC when bad_crc).
inline std::vector<uint8_t> png_chunk(const std::string& type, const std::vector<uint8_t>& data,
                                      bool bad_crc = false) {
  std::vector<uint8_t> out;
  append_be32(out, static_cast<uint32_t>(data.size()));
  out.insert(out.end(), type.begin(), type.end());
  out.insert(out.end(), data.begin(), data.end());
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, out.data() + 4, static_cast<uInt>(data.size() + 4));
  append_be32(out, static_cast<uint32_t>(crc) ^ (bad_crc ? 1u : 0u));
  return out;
}

inline std::vector<uint8_t> png_signature() { return {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}; }

inline std::vector<uint8_t> ihdr_data(uint32_t width, uint32_t height, int depth, int color_type,
                                      int interlace = 0) {
  std::vector<uint8_t> d;
  append_be32(d, width);
  append_be32(d, height);
  d.push_back(static_cast<uint8_t>(depth));
  d.push_back(static_cast<uint8_t>(color_type));
  d.push_back(0);  // compression
  d.push_back(0);  // filter method
  d.push_back(static_cast<uint8_t>(interlace));
  return d;
}

// A non-interlaced PNG from raw scanlines (each row's bytes without the filter byte), with
// `extra` chunks placed between IHDR and IDAT.
inline std::vector<uint8_t> make_png(uint32_t width, uint32_t height, int depth, int color_type,
                                     const std::vector<std::vector<uint8_t>>& rows,
                                     const std::vector<std::vector<uint8_t>>& extra = {}) {
  std::vector<uint8_t> raw;
  for (const auto& row : rows) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), row.begin(), row.end());
  }
  std::vector<uint8_t> out = png_signature();
  auto add = [&](const std::vector<uint8_t>& c) { out.insert(out.end(), c.begin(), c.end()); };
  add(png_chunk("IHDR", ihdr_data(width, height, depth, color_type)));
  for (const auto& c : extra) add(c);
  add(png_chunk("IDAT", zlib_compress(raw)));
  add(png_chunk("IEND", {}));
  return out;
}

}  // namespace sdflow::testing
