#include "io/zip_archive.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace sdflow {

namespace {

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EndSize = 56;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kLocalHeaderSize = 30;

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) { return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

// [offset, offset + n) lies inside a buffer of `size` bytes (no overflow).
bool inside(uint64_t offset, uint64_t n, uint64_t size) { return offset <= size && n <= size - offset; }

uint32_t crc_of(const uint8_t* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < size;) {
    const uInt n = static_cast<uInt>(std::min<size_t>(size - off, size_t{1} << 30));
    crc = crc32(crc, data + off, n);
    off += n;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

bool looks_like_zip(const uint8_t* data, size_t size) { return size >= 4 && le32(data) == kLocalHeaderSig; }

ZipArchive::ZipArchive(const uint8_t* data, size_t size, std::string label)
    : data_(data), size_(size), label_(std::move(label)) {
  auto fail = [&](const std::string& what) { throw Error(ErrorKind::kFormat, label_ + ": " + what); };
  if (size_ < kEndSize) fail("not a zip archive (too short)");

  // The end record is the last thing in the file, followed by a comment of at most 65535 bytes.
  size_t end = std::string::npos;
  const size_t lowest = size_ > kEndSize + 0xFFFF ? size_ - kEndSize - 0xFFFF : 0;
  for (size_t p = size_ - kEndSize + 1; p-- > lowest;) {
    if (le32(data_ + p) == kEndSig && p + kEndSize + le16(data_ + p + 20) == size_) {
      end = p;
      break;
    }
  }
  if (end == std::string::npos) fail("not a zip archive (no end of central directory record)");
  const uint8_t* e = data_ + end;
  if (le16(e + 4) != 0 || le16(e + 6) != 0) fail("multi-disk zip archives are not supported");
  uint64_t count = le16(e + 10);
  uint64_t cd_size = le32(e + 12);
  uint64_t cd_offset = le32(e + 16);

  if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
    if (end < kZip64LocatorSize || le32(data_ + end - kZip64LocatorSize) != kZip64LocatorSig)
      fail("zip64 sizes without a zip64 end of central directory locator");
    const uint64_t z64 = le64(data_ + end - kZip64LocatorSize + 8);
    if (!inside(z64, kZip64EndSize, end) || le32(data_ + z64) != kZip64EndSig)
      fail("bad zip64 end of central directory offset");
    const uint8_t* z = data_ + z64;
    count = le64(z + 32);
    cd_size = le64(z + 40);
    cd_offset = le64(z + 48);
  }
  if (!inside(cd_offset, cd_size, end)) fail("central directory lies outside the file");
  if (count > cd_size / kCentralHeaderSize) fail("central directory is too small for its entry count");

  entries_.reserve(static_cast<size_t>(count));
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (!inside(p, kCentralHeaderSize, cd_end) || le32(data_ + p) != kCentralHeaderSig)
      fail("central directory entry " + std::to_string(i) + " is malformed");
    const uint8_t* h = data_ + p;
    const uint16_t flags = le16(h + 8);
    ZipEntry entry;
    entry.method = le16(h + 10);
    entry.crc32 = le32(h + 16);
    entry.compressed_size = le32(h + 20);
    entry.size = le32(h + 24);
    const uint16_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
    uint64_t local = le32(h + 42);
    const uint64_t var_len = uint64_t{name_len} + extra_len + comment_len;
    if (!inside(p + kCentralHeaderSize, var_len, cd_end)) fail("central directory entry " + std::to_string(i) + " is truncated");
    entry.name.assign(reinterpret_cast<const char*>(h + kCentralHeaderSize), name_len);
    if (flags & 0x1) fail("entry '" + entry.name + "' is encrypted");
    if (entry.method != 0 && entry.method != 8)
      fail("entry '" + entry.name + "' uses compression method " + std::to_string(entry.method) +
           " (only stored and deflate are read)");

    // zip64 extra field: the 64-bit values of whichever 32-bit fields are saturated, in order.
    const uint8_t* x = h + kCentralHeaderSize + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x_end - x >= 4) {
      const uint16_t id = le16(x), len = le16(x + 2);
      if (len > x_end - x - 4) fail("entry '" + entry.name + "' has a truncated extra field");
      if (id == 0x0001) {
        const uint8_t* v = x + 4;
        const uint8_t* v_end = v + len;
        auto take = [&](uint64_t& field) {
          if (field != 0xFFFFFFFFu) return;
          if (v_end - v < 8) fail("entry '" + entry.name + "' has a short zip64 extra field");
          field = le64(v);
          v += 8;
        };
        take(entry.size);
        take(entry.compressed_size);
        take(local);
      }
      x += 4 + len;
    }

    if (!inside(local, kLocalHeaderSize, size_) || le32(data_ + local) != kLocalHeaderSig)
      fail("entry '" + entry.name + "' has a bad local header offset");
    const uint64_t header_len = kLocalHeaderSize + uint64_t{le16(data_ + local + 26)} + le16(data_ + local + 28);
    if (!inside(local, header_len, size_)) fail("entry '" + entry.name + "' has a truncated local header");
    entry.data_offset = local + header_len;
    if (!inside(entry.data_offset, entry.compressed_size, size_))
      fail("entry '" + entry.name + "' extends past the end of the file (" + std::to_string(entry.compressed_size) +
           " bytes at offset " + std::to_string(entry.data_offset) + ")");
    if (entry.method == 0 && entry.compressed_size != entry.size)
      fail("stored entry '" + entry.name + "' has different sizes");
    entries_.push_back(std::move(entry));
    p += kCentralHeaderSize + var_len;
  }
  std::sort(entries_.begin(), entries_.end(), [](const ZipEntry& a, const ZipEntry& b) { return a.name < b.name; });
  for (size_t i = 1; i < entries_.size(); ++i)
    if (entries_[i].name == entries_[i - 1].name) fail("entry '" + entries_[i].name + "' appears twice");
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const ZipEntry& e, std::string_view n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

ZipBytes ZipArchive::read(const ZipEntry& entry, std::shared_ptr<const void> owner, uint64_t max_inflated) const {
  if (!inside(entry.data_offset, entry.compressed_size, size_))
    throw Error(ErrorKind::kUsage, label_ + ": entry '" + entry.name + "' is not from this archive");
  const uint8_t* src = data_ + entry.data_offset;
  if (entry.method == 0) return {src, static_cast<size_t>(entry.size), std::move(owner)};

  auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::kFormat, label_ + ": entry '" + entry.name + "': " + what);
  };
  // Deflate expands at most ~1032×; a larger claim is a lie, whatever the cap.
  if (entry.size > max_inflated || entry.size / 1032 > entry.compressed_size + 1)
    fail("claims " + std::to_string(entry.size) + " bytes uncompressed from " + std::to_string(entry.compressed_size));
  // One spare byte: room for inflate to reach the stream's end (an empty entry needs some), and
  // a stream longer than claimed shows up as out_done > size.
  auto buffer = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(entry.size) + 1);
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) fail("zlib could not start");
  uint64_t in_left = entry.compressed_size, out_done = 0;
  const uint8_t* in = src;
  int rc = Z_OK;
  do {
    const uInt in_chunk = static_cast<uInt>(std::min<uint64_t>(in_left, std::numeric_limits<uInt>::max()));
    const uInt out_chunk =
        static_cast<uInt>(std::min<uint64_t>(entry.size + 1 - out_done, std::numeric_limits<uInt>::max()));
    zs.next_in = const_cast<Bytef*>(in);
    zs.avail_in = in_chunk;
    zs.next_out = buffer->data() + out_done;
    zs.avail_out = out_chunk;
    rc = inflate(&zs, Z_NO_FLUSH);
    const uint64_t consumed = in_chunk - zs.avail_in, produced = out_chunk - zs.avail_out;
    in += consumed;
    in_left -= consumed;
    out_done += produced;
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    if (consumed == 0 && produced == 0) break;
  } while (rc != Z_STREAM_END);
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || out_done != entry.size) fail("corrupt deflate data");
  if (crc_of(buffer->data(), static_cast<size_t>(entry.size)) != entry.crc32)
    fail("CRC mismatch");
  const uint8_t* out = buffer->data();
  return {out, static_cast<size_t>(entry.size), std::shared_ptr<const void>(buffer, out)};
}

ZipBytes ZipArchive::read_checked(const ZipEntry& entry, std::shared_ptr<const void> owner) const {
  ZipBytes bytes = read(entry, std::move(owner));
  if (entry.method == 0 && crc_of(bytes.data, bytes.size) != entry.crc32)
    throw Error(ErrorKind::kFormat, label_ + ": entry '" + entry.name + "': CRC mismatch");
  return bytes;
}

}  // namespace sdflow
