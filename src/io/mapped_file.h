// A whole file mapped read-only into memory. Owned through std::shared_ptr so that tensors
// viewing its bytes can keep the mapping alive after the object that opened it is gone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sdflow {

// Immutable after open(): safe to share between threads. The pages are PROT_READ, so writing
// through data() crashes; and if another process truncates the file while it is mapped,
// reading the lost pages raises SIGBUS (the usual mmap caveat, the same in ComfyUI).
class MappedFile {
 public:
  // Throws Error(kIo) naming the path when the file is missing, not a regular file, or cannot
  // be mapped. An empty file maps to data() == nullptr, size() == 0.
  static std::shared_ptr<MappedFile> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // True when [p, p + n) lies inside the mapping.
  bool contains(const void* p, size_t n = 0) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace sdflow
