// Note [libpng/libjpeg errors]
// Both libraries report fatal errors through a callback that must not return; the supported
// way out is longjmp back to a setjmp. longjmp over C++ frames that own objects with
// destructors is undefined, so every setjmp below sits in a small function (a "phase") whose
// locals are trivial and whose state lives in a caller-owned struct; the callbacks copy the
// message into that struct and jump. The C++ caller then releases the library state through
// an RAII guard and throws Error(kFormat). Throwing through the C libraries instead would
// need them built with unwind tables, which Debian does not promise.
#include "io/image_codec.h"

// clang-format off
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <png.h>

#include <csetjmp>
#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"

namespace sdflow {
namespace {

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
// Images come from the input folder and fit in memory; this only refuses absurd files early.
constexpr size_t kMaxImageFileBytes = size_t{1} << 30;
// A progressive JPEG may have any number of scans, each a full pass over the image; real files
// have about ten. This bounds the CPU time a hostile file can take.
constexpr int kMaxJpegScans = 500;

[[noreturn]] void format_error(const std::string& label, const std::string& what) {
  throw Error(ErrorKind::kFormat, label + ": " + what);
}

void check_pixel_count(const std::string& label, uint64_t width, uint64_t height) {
  if (width == 0 || height == 0) format_error(label, "image has no pixels");
  if (width * height > static_cast<uint64_t>(kMaxImagePixels)) {
    format_error(label, "image of " + std::to_string(width) + "x" + std::to_string(height) +
                            " pixels exceeds the limit of " + std::to_string(kMaxImagePixels) + " pixels");
  }
}

// ---- EXIF orientation -----------------------------------------------------------------------

// Orientation (tag 0x0112) from IFD0 of a TIFF-structured EXIF block; 0 when absent or unreadable.
int exif_orientation(const uint8_t* p, size_t n) {
  if (n < 8) return 0;
  bool little;
  if (p[0] == 'I' && p[1] == 'I') {
    little = true;
  } else if (p[0] == 'M' && p[1] == 'M') {
    little = false;
  } else {
    return 0;
  }
  auto u16 = [&](size_t at) -> uint32_t {
    return little ? uint32_t{p[at]} | (uint32_t{p[at + 1]} << 8)
                  : (uint32_t{p[at]} << 8) | uint32_t{p[at + 1]};
  };
  auto u32 = [&](size_t at) -> uint32_t {
    return little ? u16(at) | (u16(at + 2) << 16) : (u16(at) << 16) | u16(at + 2);
  };
  if (u16(2) != 42) return 0;
  const size_t ifd = u32(4);
  if (ifd > n || n - ifd < 2) return 0;
  const size_t count = u16(ifd);
  for (size_t i = 0; i < count; ++i) {
    const size_t entry = ifd + 2 + 12 * i;
    if (entry > n || n - entry < 12) return 0;
    if (u16(entry) != 0x0112) continue;
    const uint32_t type = u16(entry + 2);
    if (u32(entry + 4) < 1) return 0;
    if (type == 3) return static_cast<int>(u16(entry + 8));  // SHORT
    if (type == 4) {                                         // LONG, seen from some writers
      const uint32_t v = u32(entry + 8);
      return v <= 8 ? static_cast<int>(v) : 0;
    }
    return 0;
  }
  return 0;
}

// ---- PNG decoding ---------------------------------------------------------------------------

struct PngReadState {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  char message[256] = {};
};

void png_error_cb(png_structp png, png_const_charp msg) {
  auto* state = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void png_warning_cb(png_structp, png_const_charp) {}

void png_read_cb(png_structp png, png_bytep out, size_t n) {
  auto* state = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (n > state->size - state->pos) png_error(png, "file is truncated");
  std::memcpy(out, state->data + state->pos, n);
  state->pos += n;
}

struct PngReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngReadGuard() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

struct PngLayout {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int channels = 0;
};

// Phases: see Note [libpng/libjpeg errors].
bool png_phase_header(png_structp png, png_infop info, PngLayout* layout) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  png_uint_32 width = 0, height = 0;
  int depth = 0, color = 0;
  png_get_IHDR(png, info, &width, &height, &depth, &color, nullptr, nullptr, nullptr);
  if (color == PNG_COLOR_TYPE_PALETTE) {
    png_set_palette_to_rgb(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  } else if (color == PNG_COLOR_TYPE_GRAY && depth < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  if (depth == 16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  layout->width = width;
  layout->height = height;
  layout->channels = png_get_channels(png, info);
  return true;
}

bool png_phase_pixels(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  return true;
}

// Reads the chunks after the image data, where an eXIf chunk may be.
bool png_phase_end(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_end(png, info);
  return true;
}

Image8 decode_png(const uint8_t* data, size_t size, const std::string& label) {
  PngReadState state;
  state.data = data;
  state.size = size;
  PngReadGuard guard;
  guard.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_cb, png_warning_cb);
  if (!guard.png) format_error(label, "cannot initialise libpng");
  guard.info = png_create_info_struct(guard.png);
  if (!guard.info) format_error(label, "cannot initialise libpng");
  png_set_read_fn(guard.png, &state, png_read_cb);
  // Text is read by png_text.cpp when wanted; libpng need not inflate it for every image.
  static const png_byte kSkipped[] = "tEXt\0zTXt\0iTXt";
  png_set_keep_unknown_chunks(guard.png, PNG_HANDLE_CHUNK_NEVER, kSkipped, 3);

  PngLayout layout;
  if (!png_phase_header(guard.png, guard.info, &layout)) format_error(label, state.message);
  check_pixel_count(label, layout.width, layout.height);
  if (layout.channels < 1 || layout.channels > 4) format_error(label, "unsupported PNG pixel layout");

  Image8 image;
  image.width = static_cast<int>(layout.width);
  image.height = static_cast<int>(layout.height);
  image.channels = layout.channels;
  image.has_alpha = layout.channels == 2 || layout.channels == 4;
  const size_t stride = size_t{layout.width} * static_cast<size_t>(layout.channels);
  if (png_get_rowbytes(guard.png, guard.info) != stride) format_error(label, "unexpected PNG row size");
  image.pixels.resize(stride * layout.height);
  std::vector<png_bytep> rows(layout.height);
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = image.pixels.data() + y * stride;
  if (!png_phase_pixels(guard.png, rows.data())) format_error(label, state.message);

  // PIL does not look past the image data for LoadImage either, so a damaged tail is no error.
  png_phase_end(guard.png, guard.info);
  png_uint_32 exif_size = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(guard.png, guard.info, &exif_size, &exif) && exif) {
    apply_exif_orientation(image, exif_orientation(exif, exif_size));
  }
  return image;
}

// ---- JPEG decoding --------------------------------------------------------------------------

struct JpegState {
  jpeg_decompress_struct cinfo;  // first: callbacks get it and cast back to JpegState
  jpeg_error_mgr err;
  jpeg_progress_mgr progress;
  jmp_buf jump;
  bool created = false;
  char message[JMSG_LENGTH_MAX] = {};
};

JpegState* jpeg_state(j_common_ptr cinfo) {
  return reinterpret_cast<JpegState*>(reinterpret_cast<jpeg_decompress_struct*>(cinfo));
}

void jpeg_error_exit_cb(j_common_ptr cinfo) {
  JpegState* state = jpeg_state(cinfo);
  (*cinfo->err->format_message)(cinfo, state->message);
  std::longjmp(state->jump, 1);
}

void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
  // Warnings about corrupt data are ignored like PIL does (cameras write such files), except
  // the end of the file arriving early: libjpeg would pad the image with gray.
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    JpegState* state = jpeg_state(cinfo);
    std::snprintf(state->message, sizeof(state->message), "file is truncated");
    std::longjmp(state->jump, 1);
  }
}

void jpeg_progress_cb(j_common_ptr cinfo) {
  const auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    JpegState* state = jpeg_state(cinfo);
    std::snprintf(state->message, sizeof(state->message), "more than %d progressive scans", kMaxJpegScans);
    std::longjmp(state->jump, 1);
  }
}

struct JpegGuard {
  JpegState* state;
  ~JpegGuard() {
    if (state->created) jpeg_destroy_decompress(&state->cinfo);
  }
};

bool jpeg_phase_header(JpegState* s, const uint8_t* data, size_t size) {
  if (setjmp(s->jump)) return false;
  jpeg_create_decompress(&s->cinfo);
  s->created = true;
  s->cinfo.progress = &s->progress;
  jpeg_mem_src(&s->cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&s->cinfo, JPEG_APP0 + 1, 0xffff);
  jpeg_read_header(&s->cinfo, TRUE);
  return true;
}

bool jpeg_phase_start(JpegState* s) {
  if (setjmp(s->jump)) return false;
  jpeg_start_decompress(&s->cinfo);
  return true;
}

bool jpeg_phase_pixels(JpegState* s, uint8_t* pixels, size_t stride) {
  if (setjmp(s->jump)) return false;
  while (s->cinfo.output_scanline < s->cinfo.output_height) {
    JSAMPROW row = pixels + size_t{s->cinfo.output_scanline} * stride;
    jpeg_read_scanlines(&s->cinfo, &row, 1);
  }
  return true;
}

int jpeg_exif_orientation(const jpeg_decompress_struct& cinfo) {
  static const uint8_t kExif[6] = {'E', 'x', 'i', 'f', 0, 0};
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && std::memcmp(m->data, kExif, 6) == 0) {
      return exif_orientation(m->data + 6, m->data_length - 6);
    }
  }
  return 0;
}

uint8_t muldiv255(int a, int b) {
  const int t = a * b + 128;
  return static_cast<uint8_t>(((t >> 8) + t) >> 8);
}

Image8 decode_jpeg(const uint8_t* data, size_t size, const std::string& label) {
  JpegState state;
  std::memset(&state.cinfo, 0, sizeof(state.cinfo));
  state.cinfo.err = jpeg_std_error(&state.err);
  state.err.error_exit = jpeg_error_exit_cb;
  state.err.emit_message = jpeg_emit_message_cb;
  state.progress = {};
  state.progress.progress_monitor = jpeg_progress_cb;
  JpegGuard guard{&state};

  if (!jpeg_phase_header(&state, data, size)) format_error(label, state.message);
  check_pixel_count(label, state.cinfo.image_width, state.cinfo.image_height);
  const J_COLOR_SPACE in_space = state.cinfo.jpeg_color_space;
  const bool cmyk = in_space == JCS_CMYK || in_space == JCS_YCCK;
  state.cinfo.out_color_space = in_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : cmyk ? JCS_CMYK : JCS_RGB;
  const int orientation = jpeg_exif_orientation(state.cinfo);

  if (!jpeg_phase_start(&state)) format_error(label, state.message);
  const int components = state.cinfo.output_components;
  if (components != (cmyk ? 4 : in_space == JCS_GRAYSCALE ? 1 : 3))
    format_error(label, "unexpected JPEG layout");
  const size_t width = state.cinfo.output_width;
  const size_t height = state.cinfo.output_height;
  std::vector<uint8_t> decoded(width * height * static_cast<size_t>(components));
  if (!jpeg_phase_pixels(&state, decoded.data(), width * static_cast<size_t>(components))) {
    format_error(label, state.message);
  }

  Image8 image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  if (cmyk) {
    // PIL reads JPEG CMYK as Adobe-inverted ("CMYK;I") and converts with R = (255-C)(255-K)/255.
    image.channels = 3;
    image.pixels.resize(width * height * 3);
    for (size_t i = 0; i < width * height; ++i) {
      const uint8_t* s = &decoded[i * 4];
      const int nk = s[3];
      for (int c = 0; c < 3; ++c)
        image.pixels[i * 3 + c] = static_cast<uint8_t>(nk - muldiv255(255 - s[c], nk));
    }
  } else {
    image.channels = components;
    image.pixels = std::move(decoded);
  }
  apply_exif_orientation(image, orientation);
  return image;
}

// ---- PNG encoding ---------------------------------------------------------------------------

struct PngWriteState {
  std::vector<uint8_t>* bytes = nullptr;
  char message[256] = {};
};

void png_write_cb(png_structp png, png_bytep data, size_t n) {
  auto* state = static_cast<PngWriteState*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    state->bytes->insert(state->bytes->end(), data, data + n);
  } catch (...) {
    ok = false;
  }
  if (!ok) png_error(png, "out of memory");  // outside the catch: it longjmps
}

void png_flush_cb(png_structp) {}

void png_write_error_cb(png_structp png, png_const_charp msg) {
  auto* state = static_cast<PngWriteState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

struct PngWriteGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngWriteGuard() {
    if (png) png_destroy_write_struct(&png, info ? &info : nullptr);
  }
};

struct PngWriteJob {
  const Image8* image;
  png_textp text;
  int text_count;
  png_bytepp rows;
  int level;
};

bool png_phase_write(png_structp png, png_infop info, const PngWriteJob* job) {
  if (setjmp(png_jmpbuf(png))) return false;
  static const int kColorTypes[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                    PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_IHDR(png, info, static_cast<png_uint_32>(job->image->width),
               static_cast<png_uint_32>(job->image->height), 8, kColorTypes[job->image->channels - 1],
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, job->level);
  if (job->text_count > 0) png_set_text(png, info, job->text, job->text_count);
  png_write_info(png, info);
  png_write_image(png, job->rows);
  png_write_end(png, nullptr);
  return true;
}

// PNG keywords: 1..79 printable Latin-1 bytes, no leading, trailing or doubled spaces (the
// rules libpng enforces; checked here to give a clear error instead of its generic one).
bool is_valid_keyword(const std::string& key) {
  if (key.empty() || key.size() > 79 || key.front() == ' ' || key.back() == ' ') return false;
  for (size_t i = 0; i < key.size(); ++i) {
    const auto c = static_cast<uint8_t>(key[i]);
    if (c < 32 || (c > 126 && c < 161)) return false;
    if (c == ' ' && key[i + 1] == ' ') return false;
  }
  return true;
}

}  // namespace

void apply_exif_orientation(Image8& image, int orientation) {
  if (orientation < 2 || orientation > 8) return;
  const size_t w = static_cast<size_t>(image.width);
  const size_t h = static_cast<size_t>(image.height);
  const size_t c = static_cast<size_t>(image.channels);
  const bool swap = orientation >= 5;
  const size_t ow = swap ? h : w;
  const size_t oh = swap ? w : h;
  std::vector<uint8_t> out(image.pixels.size());
  // For each output pixel, the input pixel it shows (PIL: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180,
  // 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90).
  for (size_t oy = 0; oy < oh; ++oy) {
    for (size_t ox = 0; ox < ow; ++ox) {
      size_t ix = ox, iy = oy;
      switch (orientation) {
        case 2:
          ix = w - 1 - ox;
          break;
        case 3:
          ix = w - 1 - ox, iy = h - 1 - oy;
          break;
        case 4:
          iy = h - 1 - oy;
          break;
        case 5:
          ix = oy, iy = ox;
          break;
        case 6:
          ix = oy, iy = h - 1 - ox;
          break;
        case 7:
          ix = w - 1 - oy, iy = h - 1 - ox;
          break;
        case 8:
          ix = w - 1 - oy, iy = ox;
          break;
      }
      std::memcpy(&out[(oy * ow + ox) * c], &image.pixels[(iy * w + ix) * c], c);
    }
  }
  image.pixels = std::move(out);
  image.width = static_cast<int>(ow);
  image.height = static_cast<int>(oh);
}

Image8 decode_image(const uint8_t* data, size_t size, const std::string& label) {
  if (size >= sizeof(kPngSignature) && std::memcmp(data, kPngSignature, sizeof(kPngSignature)) == 0) {
    return decode_png(data, size, label);
  }
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
    return decode_jpeg(data, size, label);
  format_error(label, "not a PNG or JPEG image (unrecognised file signature)");
}

Image8 decode_image_file(const std::filesystem::path& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, kMaxImageFileBytes);
  return decode_image(bytes.data(), bytes.size(), path.string());
}

std::vector<uint8_t> encode_png(const Image8& image,
                                const std::vector<std::pair<std::string, std::string>>& text_chunks,
                                int compress_level) {
  auto usage = [](const std::string& what) { throw Error(ErrorKind::kUsage, "encode_png: " + what); };
  if (image.channels < 1 || image.channels > 4) usage("channels must be 1..4");
  if (image.width <= 0 || image.height <= 0) usage("image has no pixels");
  const size_t stride = static_cast<size_t>(image.width) * static_cast<size_t>(image.channels);
  if (image.pixels.size() != stride * static_cast<size_t>(image.height)) usage("pixel buffer size mismatch");
  if (compress_level < 0 || compress_level > 9) usage("compress_level must be 0..9");

  std::vector<png_text> text(text_chunks.size());
  for (size_t i = 0; i < text_chunks.size(); ++i) {
    const auto& [key, value] = text_chunks[i];
    if (!is_valid_keyword(key)) usage("invalid PNG keyword '" + key + "'");
    if (value.find('\0') != std::string::npos) usage("text of '" + key + "' contains a NUL byte");
    text[i] = {};
    text[i].compression = PNG_TEXT_COMPRESSION_NONE;
    text[i].key = const_cast<png_charp>(key.c_str());
    text[i].text = const_cast<png_charp>(value.c_str());
    text[i].text_length = value.size();
  }
  std::vector<png_bytep> rows(static_cast<size_t>(image.height));
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = const_cast<png_bytep>(image.pixels.data() + y * stride);

  std::vector<uint8_t> bytes;
  PngWriteState state;
  state.bytes = &bytes;
  PngWriteGuard guard;
  guard.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_write_error_cb, png_warning_cb);
  if (!guard.png) throw Error(ErrorKind::kRuntime, "encode_png: cannot initialise libpng");
  guard.info = png_create_info_struct(guard.png);
  if (!guard.info) throw Error(ErrorKind::kRuntime, "encode_png: cannot initialise libpng");
  png_set_write_fn(guard.png, &state, png_write_cb, png_flush_cb);
  const PngWriteJob job{&image, text.data(), static_cast<int>(text.size()), rows.data(), compress_level};
  if (!png_phase_write(guard.png, guard.info, &job)) {
    throw Error(ErrorKind::kRuntime, std::string("encode_png: ") + state.message);
  }
  return bytes;
}

void write_png(const std::filesystem::path& path, const Image8& image,
               const std::vector<std::pair<std::string, std::string>>& text_chunks, int compress_level) {
  const std::vector<uint8_t> bytes = encode_png(image, text_chunks, compress_level);
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace sdflow
