#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace sdflow {

namespace {

[[noreturn]] void throw_errno(const std::string& path, const char* what, int err) {
  throw Error(ErrorKind::kIo, path + ": " + what + ": " + std::strerror(err));
}

// Closes the descriptor on every path out of open(); the mapping does not need it.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno(path, "cannot open", errno);
  FdGuard guard{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(path, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) throw Error(ErrorKind::kIo, path + ": not a regular file");
  if (st.st_size == 0) return std::shared_ptr<MappedFile>(new MappedFile(path, nullptr, 0));

  const auto size = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) throw_errno(path, "cannot map", errno);
  return std::shared_ptr<MappedFile>(new MappedFile(path, static_cast<const uint8_t*>(p), size));
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

bool MappedFile::contains(const void* p, size_t n) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  const auto base = reinterpret_cast<uintptr_t>(data_);
  return data_ && a >= base && a - base <= size_ && n <= size_ - (a - base);
}

}  // namespace sdflow
