#include "io/png_text.h"

#include <zlib.h>

#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"

namespace sdflow {
namespace {

constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr uint32_t kMaxChunkLength = 0x7fffffffu;  // PNG spec: lengths are below 2^31
constexpr size_t kMaxKeyword = 79;
// A PNG larger than this is not something a user hands a workflow runner for its metadata.
constexpr size_t kMaxPngFileBytes = size_t{1} << 30;

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool is_chunk_type(const uint8_t* t) {
  for (int i = 0; i < 4; ++i) {
    const bool letter = (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z');
    if (!letter) return false;
  }
  return true;
}

std::string latin1_to_utf8(const uint8_t* p, size_t n) {
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return out;
}

bool is_valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    const uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min_cp || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

class ChunkParser {
 public:
  ChunkParser(const std::string& label, size_t offset, const char* type)
      : label_(label), offset_(offset), type_(type) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::kFormat,
                label_ + ": " + type_ + " chunk at offset " + std::to_string(offset_) + ": " + what);
  }

  // Keyword up to the NUL at the start of a text chunk; returns the index after the NUL.
  size_t keyword(const uint8_t* p, size_t n, std::string& out) const {
    const void* nul = std::memchr(p, 0, n < kMaxKeyword + 1 ? n : kMaxKeyword + 1);
    if (!nul) fail(n > kMaxKeyword ? "keyword longer than 79 bytes" : "keyword is not NUL-terminated");
    const size_t k = static_cast<size_t>(static_cast<const uint8_t*>(nul) - p);
    if (k == 0) fail("empty keyword");
    out = latin1_to_utf8(p, k);
    return k + 1;
  }

  // zlib data inflated, at most `budget` bytes in all (the budget shrinks by what is used).
  std::string inflate(const uint8_t* p, size_t n, size_t& budget) const {
    struct Stream {
      z_stream z{};
      bool live = false;
      ~Stream() {
        if (live) inflateEnd(&z);
      }
    } s;
    if (inflateInit(&s.z) != Z_OK) fail("cannot initialise zlib");
    s.live = true;
    s.z.next_in = const_cast<Bytef*>(p);
    s.z.avail_in = static_cast<uInt>(n);  // n < 2^31: chunk lengths are checked first
    std::string out;
    uint8_t buf[16384];
    for (;;) {
      s.z.next_out = buf;
      s.z.avail_out = sizeof(buf);
      const int rc = ::inflate(&s.z, Z_NO_FLUSH);
      const size_t produced = sizeof(buf) - s.z.avail_out;
      if (produced > budget - out.size()) {
        fail("compressed text inflates to more than " + std::to_string(kMaxPngInflatedText >> 20) + " MiB");
      }
      out.append(reinterpret_cast<const char*>(buf), produced);
      if (rc == Z_STREAM_END) break;
      if (rc == Z_BUF_ERROR) fail("compressed text is truncated");
      if (rc != Z_OK)
        fail(std::string("corrupt compressed text (") + (s.z.msg ? s.z.msg : "zlib error") + ")");
    }
    budget -= out.size();
    return out;
  }

 private:
  const std::string& label_;
  size_t offset_;
  const char* type_;
};

}  // namespace

PngTextChunks read_png_text_chunks(const uint8_t* data, size_t size, const std::string& label) {
  auto fail = [&](const std::string& what) { throw Error(ErrorKind::kFormat, label + ": " + what); };
  if (size < sizeof(kSignature) || std::memcmp(data, kSignature, sizeof(kSignature)) != 0) {
    fail("not a PNG file (bad signature)");
  }

  PngTextChunks chunks;
  size_t budget = kMaxPngInflatedText;
  size_t pos = sizeof(kSignature);
  bool first = true;
  for (;;) {
    if (size - pos < 12) {
      fail(pos == size ? "no IEND chunk (file truncated?)"
                       : "truncated chunk header at offset " + std::to_string(pos));
    }
    const uint32_t length = read_be32(data + pos);
    const uint8_t* type = data + pos + 4;
    if (!is_chunk_type(type)) fail("invalid chunk type at offset " + std::to_string(pos));
    const char type_str[5] = {char(type[0]), char(type[1]), char(type[2]), char(type[3]), 0};
    const std::string where = std::string("chunk '") + type_str + "' at offset " + std::to_string(pos);
    if (length > kMaxChunkLength) fail(where + ": length " + std::to_string(length) + " exceeds 2^31-1");
    if (length > size - pos - 12) {
      fail(where + " (length " + std::to_string(length) + ") runs past the end of the file (" +
           std::to_string(size) + " bytes)");
    }
    const uint8_t* body = data + pos + 8;
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION  // a fuzzer cannot forge CRCs to reach the parsers
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), type, static_cast<uInt>(length) + 4);
    if (crc != read_be32(body + length)) fail(where + ": bad CRC");
#endif
    if (first && std::memcmp(type, "IHDR", 4) != 0)
      fail(std::string("first chunk is '") + type_str + "', not IHDR");
    first = false;

    const ChunkParser chunk(label, pos, type_str);
    if (std::memcmp(type, "tEXt", 4) == 0) {
      std::string key;
      const size_t k = chunk.keyword(body, length, key);
      chunks.emplace_back(std::move(key), latin1_to_utf8(body + k, length - k));
    } else if (std::memcmp(type, "zTXt", 4) == 0) {
      std::string key;
      const size_t k = chunk.keyword(body, length, key);
      if (k >= length) chunk.fail("missing compression method");
      if (body[k] != 0) chunk.fail("unknown compression method " + std::to_string(body[k]));
      const std::string text = chunk.inflate(body + k + 1, length - k - 1, budget);
      chunks.emplace_back(std::move(key),
                          latin1_to_utf8(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    } else if (std::memcmp(type, "iTXt", 4) == 0) {
      std::string key;
      size_t i = chunk.keyword(body, length, key);
      if (length - i < 2) chunk.fail("missing compression flag and method");
      const uint8_t compressed = body[i];
      const uint8_t method = body[i + 1];
      if (compressed > 1) chunk.fail("bad compression flag " + std::to_string(compressed));
      if (compressed && method != 0) chunk.fail("unknown compression method " + std::to_string(method));
      i += 2;
      for (const char* field : {"language tag", "translated keyword"}) {
        const void* nul = std::memchr(body + i, 0, length - i);
        if (!nul) chunk.fail(std::string(field) + " is not NUL-terminated");
        i = static_cast<size_t>(static_cast<const uint8_t*>(nul) - body) + 1;
      }
      std::string text = compressed ? chunk.inflate(body + i, length - i, budget)
                                    : std::string(reinterpret_cast<const char*>(body + i), length - i);
      if (!is_valid_utf8(text)) chunk.fail("text is not valid UTF-8");
      chunks.emplace_back(std::move(key), std::move(text));
    } else if (std::memcmp(type, "IEND", 4) == 0) {
      if (length != 0) chunk.fail("IEND has data");
      return chunks;
    }
    pos += 12 + size_t{length};
  }
}

PngTextChunks read_png_text_file(const std::filesystem::path& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, kMaxPngFileBytes);
  return read_png_text_chunks(bytes.data(), bytes.size(), path.string());
}

}  // namespace sdflow
