// Whole-file reads with a size cap, and whole-file writes that are atomic: the bytes go to a
// temporary file in the destination's folder, are fsync'ed and then renamed over the name, so a
// reader (or a crash) never sees a partial file under the final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

namespace sdflow {

// Writes `size` bytes to `path` (replacing an existing file). On any failure the temporary file
// is removed and Error(kIo, "<path>: ...") is thrown; `path` is then untouched.
void write_file_atomic(const std::filesystem::path& path, const uint8_t* data, size_t size);

// The whole file. Error(kIo) when it cannot be opened or read, Error(kFormat) when it is larger
// than max_bytes (a guard against being handed a device or a huge file by mistake).
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path, size_t max_bytes);

}  // namespace sdflow
