#include "models/vae/vae_config.h"

#include <sstream>

#include "core/error.h"
#include "models/loader/state_dict.h"

namespace sdflow {

namespace {

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

bool has_prefix(const ShapeMap& shapes, const std::string& prefix) {
  auto it = shapes.lower_bound(prefix);
  return it != shapes.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

int64_t count_blocks(const ShapeMap& shapes, const std::string& prefix, const std::string& suffix) {
  int64_t n = 0;
  while (has_prefix(shapes, prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

const std::vector<int64_t>& shape_of(const ShapeMap& shapes, const std::string& key) {
  auto it = shapes.find(key);
  if (it == shapes.end()) throw Error(ErrorKind::kModel, "VAE detection: missing tensor '" + key + "'");
  return it->second;
}

std::string join(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

void VaeConfig::validate() const {
  auto fail = [&](const std::string& why) {
    throw Error(ErrorKind::kModel, "VAE config " + describe() + ": " + why);
  };
  if (ch_mult.empty()) fail("ch_mult is empty");
  if (ch_mult.size() > 6) fail("too many levels");
  if (num_res_blocks < 1) fail("num_res_blocks must be ≥ 1");
  for (int64_t m : ch_mult)
    if (m <= 0 || (ch * m) % 32 != 0)
      fail("every level's width must be a positive multiple of 32 (GroupNorm)");
  if (ch % 32 != 0) fail("ch must be a multiple of 32 (GroupNorm)");
  if (z_channels <= 0 || embed_dim <= 0 || in_channels <= 0 || out_ch <= 0)
    fail("channel counts must be positive");
}

bool VaeConfig::same_architecture(const VaeConfig& o) const {
  return ch == o.ch && ch_mult == o.ch_mult && num_res_blocks == o.num_res_blocks &&
         in_channels == o.in_channels && out_ch == o.out_ch && z_channels == o.z_channels &&
         embed_dim == o.embed_dim && has_quant_conv == o.has_quant_conv && has_encoder == o.has_encoder;
}

std::string VaeConfig::describe() const {
  std::ostringstream s;
  s << "{ch " << ch << ", ch_mult " << join(ch_mult) << ", num_res_blocks " << num_res_blocks << ", in "
    << in_channels << ", out " << out_ch << ", z " << z_channels << ", embed " << embed_dim
    << (has_quant_conv ? "" : ", no quant_conv") << (has_encoder ? "" : ", decoder only") << "}";
  return s.str();
}

VaeConfig VaeConfig::detect(const StateDict& vae_weights) {
  ShapeMap shapes;
  for (const auto& [key, t] : vae_weights.tensors()) shapes.emplace(key, t.sizes().vec());
  return detect_from_shapes(shapes);
}

// Follows what comfy/sd.py: VAE.__init__ accepts as an SD-style AutoencoderKL, reading the
// widths from the shapes instead of assuming ch 128 / ch_mult [1, 2, 4, 4] (which is what the
// shapes give for every VAE ComfyUI builds this way).
VaeConfig VaeConfig::detect_from_shapes(const ShapeMap& shapes) {
  auto refuse = [](const std::string& what) {
    throw Error(ErrorKind::kModel, "VAE: " + what + " is not supported (only SD-style AutoencoderKL)");
  };
  if (shapes.count("decoder.up_blocks.0.resnets.0.norm1.weight")) refuse("a diffusers-layout VAE");
  if (shapes.count("taesd_decoder.1.weight")) refuse("TAESD as a VAE file");
  if (shapes.count("decoder.mid.block_1.mix_factor")) refuse("a temporal (video) decoder");
  if (shapes.count("bn.running_mean")) refuse("a VAE with batch-norm latents");
  if (!shapes.count("decoder.conv_in.weight"))
    throw Error(ErrorKind::kModel, "not an AutoencoderKL: no 'decoder.conv_in.weight'");
  const auto& dec_in = shapes.at("decoder.conv_in.weight");
  if (dec_in.size() != 4) refuse("a 3-D (video) VAE");

  VaeConfig c;
  c.z_channels = dec_in[1];
  c.has_encoder = shapes.count("encoder.conv_in.weight") > 0;
  c.has_quant_conv = shapes.count("post_quant_conv.weight") > 0;
  c.embed_dim = c.has_quant_conv ? shape_of(shapes, "post_quant_conv.weight").at(1) : c.z_channels;
  const auto& dec_out = shape_of(shapes, "decoder.conv_out.weight");
  c.out_ch = dec_out.at(0);
  const int64_t levels = count_blocks(shapes, "decoder.up.", ".");
  if (levels == 0) throw Error(ErrorKind::kModel, "VAE detection: no decoder.up levels");
  c.num_res_blocks = count_blocks(shapes, "decoder.up.0.block.", ".") - 1;
  if (c.has_encoder) {
    const auto& enc_in = shapes.at("encoder.conv_in.weight");
    c.ch = enc_in.at(0);
    c.in_channels = enc_in.at(1);
  } else {
    c.ch = dec_out.at(1);  // = ch · ch_mult[0]; decoder-only files are assumed to start at 1×
  }
  c.ch_mult.clear();
  for (int64_t i = 0; i < levels; ++i)
    c.ch_mult.push_back(shape_of(shapes, "decoder.up." + std::to_string(i) + ".block.0.conv2.weight").at(0) /
                        c.ch);
  c.validate();
  return c;
}

VaeConfig VaeConfig::sd() { return {}; }

VaeConfig VaeConfig::tiny() {
  VaeConfig c;
  c.ch = 32;
  c.ch_mult = {2, 1, 1};
  c.num_res_blocks = 1;
  return c;
}

}  // namespace sdflow
