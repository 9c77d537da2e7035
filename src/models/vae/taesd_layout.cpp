#include "models/vae/taesd_layout.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "models/common/block_store.h"
#include "models/loader/state_dict.h"

namespace sdflow {

namespace {

constexpr int64_t kWidth = 64;
constexpr int64_t kPoolWidth = 4 * kWidth;

const char* kEncoder = "taesd_encoder";
const char* kDecoder = "taesd_decoder";

bool is_encoder_block(int i) { return i == 1 || (i >= 3 && i <= 5) || (i >= 7 && i <= 9) || (i >= 11 && i <= 13); }
bool is_decoder_block(int i) { return (i >= 3 && i <= 5) || (i >= 8 && i <= 10) || (i >= 13 && i <= 15) || i == 18; }

struct Adder {
  std::vector<TaesdParam>& out;
  std::string block;
  void conv(int i, int64_t in, int64_t out_ch, int64_t k, bool bias, const std::string& sub = "") {
    const std::string p = block + "." + std::to_string(i) + sub;
    out.push_back({p + ".weight", {out_ch, in, k, k}, block, false, false});
    if (bias) out.push_back({p + ".bias", {out_ch}, block, true, false});
  }
  void res_block(int i, bool pool) {
    for (int c : {0, 2, 4}) conv(i, kWidth, kWidth, 3, true, ".conv." + std::to_string(c));
    if (!pool) return;
    conv(i, kWidth, kPoolWidth, 1, false, ".pool.0");
    const std::string n = block + "." + std::to_string(i) + ".pool.1";
    out.push_back({n + ".weight", {kPoolWidth}, block, false, true});
    out.push_back({n + ".bias", {kPoolWidth}, block, true, true});
    conv(i, kPoolWidth, kWidth, 1, false, ".pool.3");
  }
};

}  // namespace

void TaesdConfig::validate() const {
  if (conv_channels <= 0 || (latent_channels != conv_channels && latent_channels != 4 * conv_channels))
    throw Error(ErrorKind::kModel, "TAESD: " + describe() + " is not a supported configuration");
  if (!has_encoder && !has_decoder) throw Error(ErrorKind::kModel, "TAESD: neither an encoder nor a decoder");
  if (!(scale > 0.0) || !std::isfinite(shift))
    throw Error(ErrorKind::kModel, "TAESD: vae_scale must be positive and vae_shift finite (" + describe() + ")");
}

std::string TaesdConfig::describe() const {
  std::ostringstream s;
  s << family << " (latent " << latent_channels;
  if (patchified()) s << " = " << conv_channels << "×2×2";
  s << ", scale " << scale << ", shift " << shift << (midblock_gn ? ", mid-block GroupNorm" : "")
    << (has_encoder ? "" : ", no encoder") << (has_decoder ? "" : ", no decoder") << ")";
  return s.str();
}

const std::vector<std::string>& TaesdConfig::family_names() {
  static const std::vector<std::string> names{"taesd", "taesdxl", "taesd3", "taef1", "taef2"};
  return names;
}

TaesdConfig TaesdConfig::for_family(const std::string& name) {
  TaesdConfig c;
  c.family = name;
  if (name == "taesd") {
    c.scale = 0.18215;
  } else if (name == "taesdxl") {
    c.scale = 0.13025;
  } else if (name == "taesd3") {
    c.conv_channels = c.latent_channels = 16;
    c.scale = 1.5305;
    c.shift = 0.0609;
  } else if (name == "taef1") {
    c.conv_channels = c.latent_channels = 16;
    c.scale = 0.3611;
    c.shift = 0.1159;
  } else if (name == "taef2") {
    c.conv_channels = 32;
    c.latent_channels = 128;
    c.midblock_gn = true;
  } else {
    throw Error(ErrorKind::kUsage, "TAESD: unknown family '" + name + "'");
  }
  return c;
}

bool is_taesd_state_dict(const StateDict& w) {
  return w.has("taesd_decoder.1.weight") || w.has("taesd_encoder.14.weight");
}

TaesdConfig TaesdConfig::detect(const StateDict& w, std::optional<int64_t> latent_channels) {
  TaesdConfig c;
  c.family = "custom";
  c.has_decoder = w.has("taesd_decoder.1.weight");
  c.has_encoder = w.has("taesd_encoder.14.weight");
  if (!c.has_decoder && !c.has_encoder)
    throw Error(ErrorKind::kModel, w.label() + ": no TAESD weights ('taesd_decoder.1.weight' is missing)");
  const at::Tensor& t = c.has_decoder ? w.at("taesd_decoder.1.weight") : w.at("taesd_encoder.14.weight");
  if (t.dim() != 4) throw Error(ErrorKind::kModel, w.label() + ": TAESD conv weights must be 4-D");
  c.conv_channels = c.has_decoder ? t.size(1) : t.size(0);
  c.latent_channels = latent_channels.value_or(c.conv_channels);
  c.midblock_gn = w.has("taesd_decoder.3.pool.0.weight") || w.has("taesd_encoder.11.pool.0.weight");
  auto scalar = [&](const char* key, double fallback) {
    if (!w.has(key)) return fallback;
    const at::Tensor& s = w.at(key);
    if (s.numel() != 1) throw Error(ErrorKind::kModel, w.label() + ": '" + key + "' must hold one number");
    return s.to(at::kDouble).item<double>();
  };
  c.scale = scalar("vae_scale", 1.0);
  c.shift = scalar("vae_shift", 0.0);
  c.validate();
  return c;
}

std::vector<TaesdParam> taesd_params(const TaesdConfig& c) {
  std::vector<TaesdParam> out;
  if (c.has_encoder) {
    Adder a{out, kEncoder};
    for (int i = 0; i <= 14; ++i) {
      if (i == 0) a.conv(i, 3, kWidth, 3, true);
      else if (i == 14) a.conv(i, kWidth, c.conv_channels, 3, true);
      else if (i == 2 || i == 6 || i == 10) a.conv(i, kWidth, kWidth, 3, false);
      else if (is_encoder_block(i)) a.res_block(i, c.midblock_gn && i >= 11);
    }
  }
  if (c.has_decoder) {
    Adder a{out, kDecoder};
    for (int i = 1; i <= 19; ++i) {
      if (i == 1) a.conv(i, c.conv_channels, kWidth, 3, true);
      else if (i == 19) a.conv(i, kWidth, 3, 3, true);
      else if (i == 7 || i == 12 || i == 17) a.conv(i, kWidth, kWidth, 3, false);
      else if (is_decoder_block(i)) a.res_block(i, c.midblock_gn && i <= 5);
    }
  }
  return out;
}

std::shared_ptr<WeightStore> build_taesd_weight_store(const StateDict& weights, const TaesdConfig& config,
                                                      at::ScalarType storage, at::ScalarType compute) {
  BlockStoreSpec spec;
  spec.model_name = "vae";
  spec.kind = "TAESD";
  spec.config = config.describe();
  spec.storage = storage;
  spec.compute = compute;
  return build_block_store(weights, taesd_params(config), spec);
}

}  // namespace sdflow
