// Reading entries of a zip archive held in memory, torch-free: what torch.save's zip files need
// (stored entries, zip64 sizes and offsets) plus deflate, which other writers use. A file is
// hostile until proven otherwise: every count, size and offset is checked against the buffer
// before a byte is handed out, and inflated sizes are capped before anything is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sdflow {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflate
  uint64_t compressed_size = 0;
  uint64_t size = 0;         // uncompressed
  uint64_t data_offset = 0;  // of the (compressed) bytes in the archive, past the local header
  uint32_t crc32 = 0;
};

// Bytes of one entry: a view into the archive's buffer for stored entries, an owned buffer for
// inflated ones. `owner` keeps whichever it is alive.
struct ZipBytes {
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const void> owner;
};

// The archive's central directory over [data, data + size), which the caller keeps alive.
// Thread-compatible: const after construction.
class ZipArchive {
 public:
  // Throws Error(kFormat, "<label>: <what>") for anything that is not a well-formed zip whose
  // entries all lie inside the buffer (encrypted entries, unknown methods, overlapping headers
  // beyond the buffer, duplicate names).
  ZipArchive(const uint8_t* data, size_t size, std::string label);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;  // nullptr when absent
  // Stored entries are returned as views (no copy, no CRC check: torch checkpoints are GBs);
  // deflated ones are inflated into a new buffer and their CRC is checked. `owner` is put into
  // views so that they can hold the buffer's owner. Throws Error(kFormat) for corrupt data or
  // an inflated size above max_inflated.
  ZipBytes read(const ZipEntry& entry, std::shared_ptr<const void> owner = {},
                uint64_t max_inflated = uint64_t{1} << 32) const;
  // read() and a CRC check regardless of method, for small entries.
  ZipBytes read_checked(const ZipEntry& entry, std::shared_ptr<const void> owner = {}) const;

  const std::string& label() const { return label_; }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string label_;
  std::vector<ZipEntry> entries_;  // sorted by name
};

// True when the buffer starts with a zip local file header ("PK\3\4").
bool looks_like_zip(const uint8_t* data, size_t size);

}  // namespace sdflow
