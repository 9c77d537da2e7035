#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>

#include "core/error.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void throw_errno(const fs::path& path, const std::string& what, int err) {
  throw Error(ErrorKind::kIo, path.string() + ": " + what + ": " + std::strerror(err));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { close(); }
  int get() const { return fd_; }
  // Returns errno of a failed close (0 on success): with NFS a write error may surface only here.
  int close() {
    if (fd_ < 0) return 0;
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

std::string temp_suffix() {
  static std::atomic<unsigned> counter{0};
  thread_local std::mt19937 rng{std::random_device{}()};
  return ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1)) + "." +
         std::to_string(rng() % 1000000);
}

// Creates a fresh temporary file beside `path` (same folder, hence same filesystem, so the
// rename is atomic); the dot prefix keeps it out of save-counter scans and casual listings.
int create_temp(const fs::path& path, fs::path& temp) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp = dir / ("." + path.filename().string() + temp_suffix());
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST) throw_errno(path, "cannot create a temporary file in " + dir.string(), errno);
  }
  throw Error(ErrorKind::kIo, path.string() + ": cannot find a free temporary file name");
}

void write_all(int fd, const uint8_t* data, size_t size, const fs::path& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(path, "write failed", errno);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

void sync_directory(const fs::path& path) {
  // Makes the rename itself durable; a failure here loses nothing already visible, so it is
  // not reported.
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void write_file_atomic(const fs::path& path, const uint8_t* data, size_t size) {
  fs::path temp;
  Fd fd(create_temp(path, temp));
  try {
    write_all(fd.get(), data, size, path);
    if (::fsync(fd.get()) != 0) throw_errno(path, "fsync failed", errno);
    if (const int err = fd.close()) throw_errno(path, "close failed", err);
    if (::rename(temp.c_str(), path.c_str()) != 0) throw_errno(path, "cannot rename " + temp.string(), errno);
  } catch (...) {
    fd.close();
    ::unlink(temp.c_str());
    throw;
  }
  sync_directory(path);
}

std::vector<uint8_t> read_file_bytes(const fs::path& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw_errno(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno(path, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) throw Error(ErrorKind::kIo, path.string() + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    throw Error(ErrorKind::kFormat,
                path.string() + ": file is larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(path, "read failed", errno);
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace sdflow
