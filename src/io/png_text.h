// PNG text chunks (tEXt, zTXt, iTXt) — where ComfyUI keeps the "prompt" and "workflow" JSON.
// Parsed here without libpng, strictly, because the input is any file a user hands us: every
// length is bounds-checked, every CRC verified, and inflated text is capped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace sdflow {

// (keyword, text) pairs in file order, both UTF-8 (tEXt/zTXt Latin-1 is converted).
using PngTextChunks = std::vector<std::pair<std::string, std::string>>;

// Inflated zTXt/iTXt text, summed over the file, may not exceed this.
inline constexpr size_t kMaxPngInflatedText = size_t{64} << 20;

// Walks the chunks of a PNG image held in memory up to IEND. Throws Error(kFormat,
// "<label>: ...") for a bad signature, a chunk that is too long or runs past the end, a bad
// CRC, a malformed text chunk, corrupt or oversized compressed text, or a missing IEND.
PngTextChunks read_png_text_chunks(const uint8_t* data, size_t size, const std::string& label = "PNG");

// The same for a file; Error(kIo) when it cannot be read, messages labelled with the path.
PngTextChunks read_png_text_file(const std::filesystem::path& path);

}  // namespace sdflow
