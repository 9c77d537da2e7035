#include "models/lora/unet_diffusers_names.h"

#include <utility>
#include <vector>

namespace sdflow {

namespace {

// ComfyUI's UNET_MAP_ATTENTIONS, TRANSFORMER_BLOCKS, UNET_MAP_RESNET and UNET_MAP_BASIC: the
// same names on both sides unless a pair is given (LDM, diffusers).
const char* const kAttentionParams[] = {"proj_in.weight", "proj_in.bias", "proj_out.weight",
                                        "proj_out.bias",  "norm.weight",  "norm.bias"};
const char* const kTransformerParams[] = {"norm1.weight",          "norm1.bias",
                                          "norm2.weight",          "norm2.bias",
                                          "norm3.weight",          "norm3.bias",
                                          "attn1.to_q.weight",     "attn1.to_k.weight",
                                          "attn1.to_v.weight",     "attn1.to_out.0.weight",
                                          "attn1.to_out.0.bias",   "attn2.to_q.weight",
                                          "attn2.to_k.weight",     "attn2.to_v.weight",
                                          "attn2.to_out.0.weight", "attn2.to_out.0.bias",
                                          "ff.net.0.proj.weight",  "ff.net.0.proj.bias",
                                          "ff.net.2.weight",       "ff.net.2.bias"};
const std::pair<const char*, const char*> kResnetParams[] = {
    {"in_layers.2.weight", "conv1.weight"},
    {"in_layers.2.bias", "conv1.bias"},
    {"emb_layers.1.weight", "time_emb_proj.weight"},
    {"emb_layers.1.bias", "time_emb_proj.bias"},
    {"out_layers.3.weight", "conv2.weight"},
    {"out_layers.3.bias", "conv2.bias"},
    {"skip_connection.weight", "conv_shortcut.weight"},
    {"skip_connection.bias", "conv_shortcut.bias"},
    {"in_layers.0.weight", "norm1.weight"},
    {"in_layers.0.bias", "norm1.bias"},
    {"out_layers.0.weight", "norm2.weight"},
    {"out_layers.0.bias", "norm2.bias"}};
const std::pair<const char*, const char*> kBasicParams[] = {
    {"label_emb.0.0.weight", "class_embedding.linear_1.weight"},
    {"label_emb.0.0.bias", "class_embedding.linear_1.bias"},
    {"label_emb.0.2.weight", "class_embedding.linear_2.weight"},
    {"label_emb.0.2.bias", "class_embedding.linear_2.bias"},
    {"label_emb.0.0.weight", "add_embedding.linear_1.weight"},
    {"label_emb.0.0.bias", "add_embedding.linear_1.bias"},
    {"label_emb.0.2.weight", "add_embedding.linear_2.weight"},
    {"label_emb.0.2.bias", "add_embedding.linear_2.bias"},
    {"input_blocks.0.0.weight", "conv_in.weight"},
    {"input_blocks.0.0.bias", "conv_in.bias"},
    {"out.0.weight", "conv_norm_out.weight"},
    {"out.0.bias", "conv_norm_out.bias"},
    {"out.2.weight", "conv_out.weight"},
    {"out.2.bias", "conv_out.bias"},
    {"time_embed.0.weight", "time_embedding.linear_1.weight"},
    {"time_embed.0.bias", "time_embedding.linear_1.bias"},
    {"time_embed.2.weight", "time_embedding.linear_2.weight"},
    {"time_embed.2.bias", "time_embedding.linear_2.bias"}};

std::string num(int64_t n) { return std::to_string(n); }

}  // namespace

std::map<std::string, std::string> unet_diffusers_names(const UNetConfig& c) {
  std::map<std::string, std::string> m;
  const int64_t levels = static_cast<int64_t>(c.channel_mult.size());
  std::vector<int64_t> depth = c.transformer_depth;             // consumed from the front
  std::vector<int64_t> depth_out = c.transformer_depth_output;  // consumed from the back
  auto transformer = [&](const std::string& d, const std::string& l, int64_t blocks) {
    for (const char* p : kAttentionParams) m[d + "." + p] = l + "." + p;
    for (int64_t t = 0; t < blocks; ++t)
      for (const char* p : kTransformerParams)
        m[d + ".transformer_blocks." + num(t) + "." + p] = l + ".transformer_blocks." + num(t) + "." + p;
  };

  for (int64_t x = 0; x < levels; ++x) {
    int64_t n = 1 + (c.num_res_blocks[x] + 1) * x;
    for (int64_t i = 0; i < c.num_res_blocks[x]; ++i) {
      const std::string d = "down_blocks." + num(x);
      for (const auto& [ldm, diff] : kResnetParams)
        m[d + ".resnets." + num(i) + "." + diff] = "input_blocks." + num(n) + ".0." + ldm;
      int64_t blocks = 0;
      if (!depth.empty()) {
        blocks = depth.front();
        depth.erase(depth.begin());
      }
      if (blocks > 0) transformer(d + ".attentions." + num(i), "input_blocks." + num(n) + ".1", blocks);
      ++n;
    }
    for (const char* k : {"weight", "bias"})
      m["down_blocks." + num(x) + ".downsamplers.0.conv." + k] = "input_blocks." + num(n) + ".0.op." + k;
  }

  // ComfyUI maps the middle attention's own tensors whatever the depth, and its blocks for a
  // depth ≥ 1 (range() of a negative depth is empty).
  for (const char* p : kAttentionParams)
    m[std::string("mid_block.attentions.0.") + p] = std::string("middle_block.1.") + p;
  for (int64_t t = 0; t < c.transformer_depth_middle; ++t)
    for (const char* p : kTransformerParams)
      m["mid_block.attentions.0.transformer_blocks." + num(t) + "." + p] =
          "middle_block.1.transformer_blocks." + num(t) + "." + p;
  for (int64_t i = 0; i < 2; ++i)
    for (const auto& [ldm, diff] : kResnetParams)
      m["mid_block.resnets." + num(i) + "." + diff] = "middle_block." + num(i * 2) + "." + ldm;

  for (int64_t x = 0; x < levels; ++x) {
    const int64_t res = c.num_res_blocks[levels - 1 - x];
    int64_t n = (res + 1) * x;
    const int64_t l = res + 1;
    for (int64_t i = 0; i < l; ++i) {
      const std::string d = "up_blocks." + num(x);
      int64_t sub = 0;
      for (const auto& [ldm, diff] : kResnetParams)
        m[d + ".resnets." + num(i) + "." + diff] = "output_blocks." + num(n) + ".0." + ldm;
      ++sub;
      int64_t blocks = 0;
      if (!depth_out.empty()) {
        blocks = depth_out.back();
        depth_out.pop_back();
      }
      if (blocks > 0) {
        ++sub;
        transformer(d + ".attentions." + num(i), "output_blocks." + num(n) + ".1", blocks);
      }
      if (i == l - 1)
        for (const char* k : {"weight", "bias"})
          m[d + ".upsamplers.0.conv." + k] = "output_blocks." + num(n) + "." + num(sub) + ".conv." + k;
      ++n;
    }
  }

  for (const auto& [ldm, diff] : kBasicParams) m[diff] = ldm;
  return m;
}

}  // namespace sdflow
