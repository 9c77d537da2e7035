// 8-bit images in and out: PNG and JPEG decoding for LoadImage, PNG encoding with text chunks
// for SaveImage (ComfyUI's PIL behaviour, COMFY_COMPAT.md section 6). Torch-free; the tensor
// conversions are in image_tensor_torch.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace sdflow {

// Interleaved rows, top to bottom: pixels.size() == width * height * channels.
// channels: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
struct Image8 {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;
  bool has_alpha = false;  // channels 2 or 4
};

// Decoding refuses images with more pixels than this (a decompression bomb guard).
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

// Decodes a PNG or a JPEG, told apart by their first bytes (not the file name):
//  - PNG: any bit depth (16 bits keep the high byte, as PIL does for RGB), gray, gray + alpha,
//    palette (tRNS becomes alpha, as ComfyUI's mask for "P" images), RGB, RGBA. tRNS of gray or
//    RGB images is ignored, as LoadImage ignores it. An eXIf orientation is applied.
//  - JPEG: gray, YCbCr/RGB, CMYK (converted like PIL); the EXIF orientation (APP1) is applied
//    like PIL's ImageOps.exif_transpose.
// Throws Error(kFormat, "<label>: ...") for anything unknown, corrupt, truncated or too large.
Image8 decode_image(const uint8_t* data, size_t size, const std::string& label);
// The same for a file (labelled with its path); Error(kIo) when it cannot be read.
Image8 decode_image_file(const std::filesystem::path& path);

// Applies EXIF orientation 1..8 (other values leave the image as it is).
void apply_exif_orientation(Image8& image, int orientation);

// Encodes a PNG (8 bits, gray/gray+alpha/RGB/RGBA by channels) with the text chunks as
// uncompressed tEXt chunks, in order, before the image data. Keywords must be 1..79 bytes without
// NUL; text must not contain NUL (bytes are written as given: ComfyUI's JSON is ASCII).
// compress_level 0..9 (ComfyUI: 4 for SaveImage, 1 for PreviewImage). Error(kUsage) for bad
// arguments.
std::vector<uint8_t> encode_png(const Image8& image,
                                const std::vector<std::pair<std::string, std::string>>& text_chunks,
                                int compress_level);
// encode_png() written with write_file_atomic().
void write_png(const std::filesystem::path& path, const Image8& image,
               const std::vector<std::pair<std::string, std::string>>& text_chunks, int compress_level);

}  // namespace sdflow
