#include "nodes/input_files.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "io/paths.h"

namespace sdflow::nodes {
namespace {

// FIPS 180-4 SHA-256, streaming.
class Sha256 {
 public:
  void update(const uint8_t* data, size_t size) {
    total_ += size;
    while (size > 0) {
      const size_t take = std::min(size, block_.size() - used_);
      std::memcpy(block_.data() + used_, data, take);
      used_ += take;
      data += take;
      size -= take;
      if (used_ == block_.size()) {
        compress(block_.data());
        used_ = 0;
      }
    }
  }

  std::array<uint8_t, 32> finish() {
    const uint64_t bits = total_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    update(len, 8);
    std::array<uint8_t, 32> out;
    for (int i = 0; i < 8; ++i)
      for (int b = 0; b < 4; ++b) out[i * 4 + b] = static_cast<uint8_t>(h_[i] >> (24 - 8 * b));
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress(const uint8_t* p) {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t{p[4 * i]} << 24) | (uint32_t{p[4 * i + 1]} << 16) | (uint32_t{p[4 * i + 2]} << 8) |
             uint32_t{p[4 * i + 3]};
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }

  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string to_hex(const std::array<uint8_t, 32>& digest) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : digest) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

}  // namespace

std::filesystem::path resolve_annotated_file(const EnginePaths& paths, const std::string& name,
                                             const std::string& what) {
  struct Tag {
    const char* text;
    const std::filesystem::path* root;
  };
  const Tag tags[] = {{"[output]", &paths.output}, {"[input]", &paths.input}, {"[temp]", &paths.temp}};
  for (const Tag& tag : tags) {
    const std::string t = tag.text;
    if (name.size() >= t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0) {
      // Python's name[:-(len(tag) + 1)]: also drops the separating space.
      const size_t cut = std::min(name.size(), t.size() + 1);
      return confine(*tag.root, name.substr(0, name.size() - cut), what);
    }
  }
  return confine(paths.input, name, what);
}

namespace {
std::string name_of(const nlohmann::json& constants, const std::string& input) {
  auto it = constants.find(input);
  return it != constants.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

std::string input_file_fingerprint(const Services& services, const nlohmann::json& constants,
                                   const std::string& input) {
  const EnginePaths* paths = services.find<EnginePaths>();
  if (!paths) return "";
  try {
    return sha256_file_hex(resolve_annotated_file(*paths, name_of(constants, input), input));
  } catch (const std::exception& e) {
    return std::string("unreadable: ") + e.what();
  }
}

std::vector<std::pair<std::string, std::string>> validate_input_file(const ValidationEnv& env,
                                                                     const nlohmann::json& constants,
                                                                     const std::string& input,
                                                                     const std::string& kind) {
  const EnginePaths* paths = env.services ? env.services->find<EnginePaths>() : nullptr;
  if (!paths) return {};
  const std::string name = name_of(constants, input);
  try {
    // Confinement is always checked; existence only in strict mode (`sdflow validate` needs no
    // files, a run validates strictly before anything starts).
    const std::filesystem::path file = resolve_annotated_file(*paths, name, input);
    std::error_code ec;
    if (env.strict && !std::filesystem::is_regular_file(file, ec))
      return {{input, "Invalid " + kind + " file: " + name}};
  } catch (const std::exception& e) {
    return {{input, e.what()}};
  }
  return {};
}

std::string sha256_hex(const uint8_t* data, size_t size) {
  Sha256 h;
  h.update(data, size);
  return to_hex(h.finish());
}

std::string sha256_file_hex(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::kIo, path.string() + ": cannot open for reading");
  Sha256 h;
  std::vector<char> buf(1 << 16);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize got = f.gcount();
    if (got > 0) h.update(reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(got));
  }
  if (f.bad()) throw Error(ErrorKind::kIo, path.string() + ": read error");
  return to_hex(h.finish());
}

}  // namespace sdflow::nodes
