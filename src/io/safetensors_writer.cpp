#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace sdflow {

namespace {

[[noreturn]] void throw_io(const std::string& path, const char* what, int err) {
  throw Error(ErrorKind::kIo, path + ": " + what + ": " + std::strerror(err));
}

void check_tensor(const TensorToWrite& t, const std::string& path) {
  auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::kUsage, path + ": tensor '" + t.name + "': " + what);
  };
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0) fail("negative dimension " + std::to_string(d));
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) fail("shape has too many elements");
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &nbytes) ||
      nbytes != t.size) {
    fail("shape and dtype need " + std::to_string(nbytes) + " bytes but " + std::to_string(t.size) +
         " were given");
  }
  if (t.size > 0 && t.data == nullptr) fail("data is null");
}

void write_all(int fd, const void* data, size_t size, const std::string& tmp) {
  const auto* p = static_cast<const uint8_t*>(data);
  // Linux write() moves at most ~2 GiB per call; big tensors need several.
  constexpr size_t kChunk = size_t{1} << 30;
  while (size > 0) {
    ssize_t n = ::write(fd, p, std::min(size, kChunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io(tmp, "write failed", errno);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

std::string parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") {
      throw Error(ErrorKind::kUsage, path + ": '__metadata__' is reserved and cannot name a tensor");
    }
    if (!names.insert(t.name).second)
      throw Error(ErrorKind::kUsage, path + ": duplicate tensor '" + t.name + "'");
    check_tensor(t, path);
  }

  // Widest elements first keeps every tensor aligned, given the 8-aligned data section.
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    const size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });

  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto* t : order) {
    header[t->name] = {
        {"dtype", dtype_name(t->dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->size}}};
    offset += t->size;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    // dump() refuses names and metadata that are not valid UTF-8.
    throw Error(ErrorKind::kUsage, path + ": cannot encode header: " + e.what());
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(uint64_t{header_text.size()} >> (8 * i));

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd;
  do {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_io(tmp, "cannot create", errno);
  try {
    write_all(fd, len_bytes, sizeof(len_bytes), tmp);
    write_all(fd, header_text.data(), header_text.size(), tmp);
    for (const auto* t : order) write_all(fd, t->data, t->size, tmp);
    if (::fsync(fd) != 0) throw_io(tmp, "fsync failed", errno);
    if (::close(fd) != 0) {
      fd = -1;
      throw_io(tmp, "close failed", errno);
    }
    fd = -1;
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw_io(path, "cannot rename temporary file", errno);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Persist the rename itself; a failure here loses durability, not data, so it is not an error.
  int dir = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace sdflow
