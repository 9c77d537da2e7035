#include "nodes/upscale.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace sdflow::nodes {
namespace {

// Python's round() on a float: halves go to the even neighbour.
int64_t python_round(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

at::Tensor rsub(const at::Tensor& t, double scalar) { return at::rsub(t, scalar); }

// ComfyUI's slerp of flat batches: b1, b2 [M, C]; r [M, 1].
at::Tensor slerp(const at::Tensor& b1, const at::Tensor& b2, const at::Tensor& r) {
  const int64_t c = b1.size(-1);
  const int64_t last[] = {-1};
  const at::Tensor n1 = at::linalg_vector_norm(b1, 2, at::IntArrayRef(last), true);
  const at::Tensor n2 = at::linalg_vector_norm(b2, 2, at::IntArrayRef(last), true);
  at::Tensor u1 = b1 / n1;
  at::Tensor u2 = b2 / n2;
  u1.masked_fill_(n1.expand({-1, c}) == 0.0, 0.0);
  u2.masked_fill_(n2.expand({-1, c}) == 0.0, 0.0);

  const at::Tensor dot = (u1 * u2).sum(1);
  const at::Tensor omega = at::acos(dot);
  const at::Tensor so = at::sin(omega);
  const at::Tensor rs = r.squeeze(1);
  at::Tensor res =
      (at::sin(rsub(rs, 1.0) * omega) / so).unsqueeze(1) * u1 + (at::sin(rs * omega) / so).unsqueeze(1) * u2;
  res *= (n1 * rsub(r, 1.0) + n2 * r).expand({-1, c});

  // Nearly parallel vectors keep the first one; nearly opposite ones fall back to a lerp.
  const at::Tensor same = dot > (1 - 1e-5);
  res.index_put_({same}, b1.index({same}));
  const at::Tensor opposite = dot < (1e-5 - 1);
  res.index_put_({opposite}, (b1 * rsub(r, 1.0) + b2 * r).index({opposite}));
  return res;
}

struct LerpData {
  at::Tensor ratios;  // [1, 1, 1, new]
  at::Tensor first;   // int64 [1, 1, 1, new]
  at::Tensor second;  // int64 [1, 1, 1, new]
};

// Source positions and weights of a bilinear resize of one axis, taken from torch's own
// bilinear kernel applied to index ramps (that is how ComfyUI derives them).
LerpData lerp_data(int64_t old_len, int64_t new_len, const at::Device& device) {
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  const std::vector<int64_t> size = {1, new_len};
  at::Tensor ramp = at::arange(old_len, opts).reshape({1, 1, 1, -1});
  at::Tensor c1 = at::upsample_bilinear2d(ramp, size, false);
  LerpData d;
  d.ratios = c1 - c1.floor();
  d.first = c1.to(at::kLong);
  at::Tensor ramp2 = at::arange(old_len, opts).reshape({1, 1, 1, -1}) + 1;
  ramp2.select(3, old_len - 1).sub_(1);
  d.second = at::upsample_bilinear2d(ramp2, size, false).to(at::kLong);
  return d;
}

// Note [PIL Lanczos]
// Pillow's ImagingResample (libImaging/Resample.c), re-derived for 8-bit images:
//  - per axis, scale = in/out and filterscale = max(scale, 1); the kernel support is
//    3·filterscale; output pixel i is centred at (i + 0.5)·scale and reads input pixels
//    [int(center − support + 0.5), int(center + support + 0.5)) clipped to the image;
//  - weights lanczos((j − center + 0.5) / filterscale) with lanczos(x) = sinc(x)·sinc(x/3) on
//    [−3, 3), normalised to sum 1, then turned into fixed point with 22 fractional bits,
//    rounded half away from zero;
//  - each output byte is (2^21 + Σ byte·weight) >> 22 clamped to 0..255;
//  - the horizontal pass runs first (only when the width changes) and is stored as 8-bit,
//    then the vertical pass (only when the height changes).
// ComfyUI calls Image.resize(LANCZOS) on uint8 arrays, so RGBA goes through Pillow's
// premultiplied "RGBa" mode: c·a/255 with Pillow's rounding before, c·255/a after.
struct Kernel {
  int64_t ksize = 0;
  std::vector<int64_t> start, count;
  std::vector<int32_t> weights;  // [out × ksize] fixed point
};

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double lanczos3(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

Kernel lanczos_kernel(int64_t in_size, int64_t out_size) {
  constexpr int kPrecisionBits = 32 - 8 - 2;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 3.0 * filterscale;
  Kernel k;
  k.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  k.start.resize(out_size);
  k.count.resize(out_size);
  k.weights.assign(out_size * k.ksize, 0);
  std::vector<double> w(k.ksize);
  for (int64_t o = 0; o < out_size; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int64_t lo = static_cast<int64_t>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int64_t hi = static_cast<int64_t>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int64_t n = hi - lo;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      w[j] = lanczos3((static_cast<double>(j + lo) - center + 0.5) * ss);
      sum += w[j];
    }
    for (int64_t j = 0; j < n; ++j) {
      const double v = sum != 0.0 ? w[j] / sum : w[j];
      const double fixed = v * static_cast<double>(1 << kPrecisionBits);
      k.weights[o * k.ksize + j] = static_cast<int32_t>(v < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    k.start[o] = lo;
    k.count[o] = n;
  }
  return k;
}

inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> 22;  // arithmetic shift, as Pillow relies on
  return static_cast<uint8_t>(std::clamp(v, 0, 255));
}

inline uint8_t muldiv255(unsigned a, unsigned b) {
  const unsigned t = a * b + 128;
  return static_cast<uint8_t>(((t >> 8) + t) >> 8);
}

// Pillow's RGBA → RGBa (and LA → La): colour channels multiplied by alpha.
void premultiply(uint8_t* px, int64_t count, int64_t channels) {
  for (int64_t i = 0; i < count; ++i, px += channels) {
    const unsigned a = px[channels - 1];
    for (int64_t c = 0; c + 1 < channels; ++c) px[c] = muldiv255(px[c], a);
  }
}

// Pillow's RGBa → RGBA: alpha 0 and 255 keep the values, others divide (truncating, clamped).
void unpremultiply(uint8_t* px, int64_t count, int64_t channels) {
  for (int64_t i = 0; i < count; ++i, px += channels) {
    const unsigned a = px[channels - 1];
    if (a == 0 || a == 255) continue;
    for (int64_t c = 0; c + 1 < channels; ++c) px[c] = static_cast<uint8_t>(std::min(255u, 255u * px[c] / a));
  }
}

void check_4d(const at::Tensor& t, const char* what) {
  if (t.dim() != 4)
    throw Error(ErrorKind::kRuntime, std::string(what) + ": expected [N, C, H, W], got " +
                                         std::to_string(t.dim()) + " dimensions");
}

at::Tensor resize_4d(const at::Tensor& s, int64_t width, int64_t height, const std::string& method) {
  const std::vector<int64_t> size = {height, width};
  if (method == "bislerp") return bislerp(s, width, height);
  if (method == "lanczos") return lanczos(s, width, height);
  if (method == "nearest-exact") return at::_upsample_nearest_exact2d(s, size);
  if (method == "nearest") return at::upsample_nearest2d(s, size);
  if (method == "bilinear") return at::upsample_bilinear2d(s, size, false);
  if (method == "bicubic") return at::upsample_bicubic2d(s, size, false);
  if (method == "area") return at::adaptive_avg_pool2d(s, size);
  throw Error(ErrorKind::kRuntime, "unknown upscale method '" + method + "'");
}

}  // namespace

void pil_lanczos_resize_u8(const uint8_t* in, int64_t in_w, int64_t in_h, int64_t channels, uint8_t* out,
                           int64_t out_w, int64_t out_h) {
  const int64_t ch = channels;
  std::vector<uint8_t> tmp;
  const uint8_t* src = in;
  int64_t src_w = in_w;
  if (out_w != in_w) {
    const Kernel k = lanczos_kernel(in_w, out_w);
    tmp.resize(static_cast<size_t>(out_w * in_h * ch));
    for (int64_t y = 0; y < in_h; ++y) {
      const uint8_t* row = in + y * in_w * ch;
      uint8_t* dst = tmp.data() + y * out_w * ch;
      for (int64_t x = 0; x < out_w; ++x) {
        const int32_t* w = &k.weights[x * k.ksize];
        for (int64_t c = 0; c < ch; ++c) {
          int32_t acc = 1 << 21;
          for (int64_t j = 0; j < k.count[x]; ++j) acc += row[(k.start[x] + j) * ch + c] * w[j];
          dst[x * ch + c] = clip8(acc);
        }
      }
    }
    src = tmp.data();
    src_w = out_w;
  }
  if (out_h == in_h) {
    std::copy(src, src + out_w * out_h * ch, out);
    return;
  }
  const Kernel k = lanczos_kernel(in_h, out_h);
  const int64_t stride = src_w * ch;
  for (int64_t y = 0; y < out_h; ++y) {
    const int32_t* w = &k.weights[y * k.ksize];
    uint8_t* dst = out + y * stride;
    for (int64_t i = 0; i < stride; ++i) {
      int32_t acc = 1 << 21;
      for (int64_t j = 0; j < k.count[y]; ++j) acc += src[(k.start[y] + j) * stride + i] * w[j];
      dst[i] = clip8(acc);
    }
  }
}

at::Tensor bislerp(const at::Tensor& samples, int64_t width, int64_t height) {
  check_4d(samples, "bislerp");
  const auto orig_dtype = samples.scalar_type();
  const at::Tensor s = samples.to(at::kFloat);
  const int64_t n = s.size(0), c = s.size(1), h = s.size(2), w = s.size(3);

  // Along W: [n, c, h, w] → [n, c, h, width].
  LerpData d = lerp_data(w, width, s.device());
  at::Tensor p1 = s.gather(-1, d.first.expand({n, c, h, -1})).movedim(1, -1).reshape({-1, c});
  at::Tensor p2 = s.gather(-1, d.second.expand({n, c, h, -1})).movedim(1, -1).reshape({-1, c});
  at::Tensor r = d.ratios.expand({n, 1, h, -1}).movedim(1, -1).reshape({-1, 1});
  at::Tensor result = slerp(p1, p2, r).reshape({n, h, width, c}).movedim(-1, 1);

  // Along H: → [n, c, height, width].
  d = lerp_data(h, height, s.device());
  p1 = result.gather(-2, d.first.reshape({1, 1, -1, 1}).expand({n, c, -1, width}))
           .movedim(1, -1)
           .reshape({-1, c});
  p2 = result.gather(-2, d.second.reshape({1, 1, -1, 1}).expand({n, c, -1, width}))
           .movedim(1, -1)
           .reshape({-1, c});
  r = d.ratios.reshape({1, 1, -1, 1}).expand({n, 1, -1, width}).movedim(1, -1).reshape({-1, 1});
  result = slerp(p1, p2, r).reshape({n, height, width, c}).movedim(-1, 1);
  return result.to(orig_dtype);
}

at::Tensor lanczos(const at::Tensor& samples, int64_t width, int64_t height) {
  check_4d(samples, "lanczos");
  const int64_t n = samples.size(0), ch = samples.size(1), h = samples.size(2), w = samples.size(3);
  if (ch < 1 || ch > 4)
    throw Error(ErrorKind::kRuntime,
                "lanczos: images need 1 to 4 channels (PIL L, LA, RGB, RGBA), got " + std::to_string(ch));
  // numpy: clip(255·x, 0, 255).astype(uint8) — float32 product, truncating cast.
  at::Tensor x = samples.detach().to(at::kCPU, at::kFloat).mul(255.0);
  x = at::nan_to_num(x, 0.0).clamp(0.0, 255.0).to(at::kByte).permute({0, 2, 3, 1}).contiguous();
  at::Tensor out = at::empty({n, height, width, ch}, at::TensorOptions().dtype(at::kByte));
  const bool has_alpha = ch == 2 || ch == 4;
  std::vector<uint8_t> frame;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = x.data_ptr<uint8_t>() + i * h * w * ch;
    uint8_t* dst = out.data_ptr<uint8_t>() + i * height * width * ch;
    if (w == width && h == height) {  // Image.resize returns a copy for the same size
      std::copy(src, src + h * w * ch, dst);
      continue;
    }
    if (has_alpha) {
      frame.assign(src, src + h * w * ch);
      premultiply(frame.data(), h * w, ch);
      src = frame.data();
    }
    pil_lanczos_resize_u8(src, w, h, ch, dst, width, height);
    if (has_alpha) unpremultiply(dst, height * width, ch);
  }
  at::Tensor result = out.permute({0, 3, 1, 2}).to(at::kFloat).div(255.0);
  return result.to(samples.device(), samples.scalar_type());
}

at::Tensor common_upscale(const at::Tensor& samples, int64_t width, int64_t height, const std::string& method,
                          const std::string& crop) {
  if (samples.dim() < 4)
    throw Error(ErrorKind::kRuntime,
                "upscale: expected at least 4 dimensions [N, C, H, W], got " + std::to_string(samples.dim()));
  if (width <= 0 || height <= 0)
    throw Error(ErrorKind::kRuntime, "upscale: the new size " + std::to_string(width) + "x" +
                                         std::to_string(height) + " is empty");
  if (crop != "disabled" && crop != "center")
    throw Error(ErrorKind::kRuntime, "unknown crop method '" + crop + "'");
  const std::vector<int64_t> orig = samples.sizes().vec();
  const int64_t nd = samples.dim();
  at::Tensor s = samples;
  if (nd > 4) {
    // [B, C, T..., H, W] → [B·T, C, H, W], frame by frame.
    s = s.reshape({orig[0], orig[1], -1, orig[nd - 2], orig[nd - 1]}).movedim(2, 1);
    s = s.reshape({-1, orig[1], orig[nd - 2], orig[nd - 1]});
  }
  if (crop == "center") {
    const int64_t old_w = s.size(-1), old_h = s.size(-2);
    const double old_aspect = static_cast<double>(old_w) / static_cast<double>(old_h);
    const double new_aspect = static_cast<double>(width) / static_cast<double>(height);
    int64_t x = 0, y = 0;
    if (old_aspect > new_aspect) {
      x = python_round((old_w - old_w * (new_aspect / old_aspect)) / 2);
    } else if (old_aspect < new_aspect) {
      y = python_round((old_h - old_h * (old_aspect / new_aspect)) / 2);
    }
    s = s.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2);
  }
  at::Tensor out = resize_4d(s, width, height, method);
  if (nd == 4) return out;
  std::vector<int64_t> folded = {orig[0], -1, orig[1], height, width};
  std::vector<int64_t> final_shape(orig.begin(), orig.end() - 2);
  final_shape.push_back(height);
  final_shape.push_back(width);
  return out.reshape(folded).movedim(2, 1).reshape(final_shape);
}

}  // namespace sdflow::nodes
