// Text conditioning nodes (nodes.py CLIPTextEncode, CLIPSetLastLayer; comfy_extras/
// nodes_clip_sdxl.py; COMFY_COMPAT 3.2, 4.7, 4.8). Each CONDITIONING entry holds the cond tensor
// and pooled_output; the SDXL nodes add their size/crop/aesthetic values under the option names
// the sampler reads (nodes/sampling_nodes.cpp), and plain CLIPTextEncode adds none, so SDXL's
// ADM sizes default to the latent size at sampling time as in ComfyUI.
#include <cstdint>
#include <map>
#include <string>

#include "core/error.h"
#include "memory/memory_manager.h"
#include "nodes/builtin.h"
#include "nodes/clip_value.h"
#include "nodes/values.h"

namespace sdflow::nodes {
namespace {

constexpr int64_t kMaxResolution = 16384;  // ComfyUI's MAX_RESOLUTION

std::shared_ptr<const ClipValue> clip_input(const NodeInputs& in) {
  auto clip = in.at("clip").as<ClipValue>();
  clip->require("");
  return clip;
}

ClipEncodeOptions encode_options(NodeContext& ctx) {
  ClipEncodeOptions o;
  const MemoryManager* mm = ctx.services().find<MemoryManager>();
  o.output_device = mm ? mm->intermediate_device() : at::Device(at::kCPU);
  o.check_cancel = [&ctx] { ctx.check_cancelled(); };
  return o;
}

// encode_from_tokens_scheduled without hooks: one entry, pooled_output plus add_dict.
Value encode_to_conditioning(NodeContext& ctx, const ClipValue& clip, const ClipTokenSet& tokens,
                             std::map<std::string, CondOption> add) {
  const ClipEncodeResult r = clip.encode(tokens, encode_options(ctx));
  CondEntry e;
  e.cond = r.cond;
  e.options["pooled_output"] = r.pooled;
  for (auto& [k, v] : add) e.options[k] = std::move(v);
  ConditioningValue out;
  out.entries.push_back(std::move(e));
  return make_conditioning(std::move(out));
}

class CLIPTextEncode final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto clip = clip_input(in);
    return {encode_to_conditioning(ctx, *clip, clip->tokenize(in.at("text").as_string()), {})};
  }
};

class CLIPSetLastLayer final : public Node {
 public:
  ValueList run(NodeContext&, const NodeInputs& in) override {
    ClipValue out = *clip_input(in);
    out.clip_layer = in.at("stop_at_clip_layer").as_int();
    return {make_clip(std::move(out))};
  }
};

void append_chunks(ClipTokens& to, const ClipTokens& from) {
  to.prompt.chunks.insert(to.prompt.chunks.end(), from.prompt.chunks.begin(), from.prompt.chunks.end());
}

// text_g feeds CLIP-G and text_l CLIP-L; the shorter chunk list is padded with empty-prompt
// chunks so both encoders see the same number of chunks.
class CLIPTextEncodeSDXL final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto clip = clip_input(in);
    ClipTokenSet tokens = clip->tokenize(in.at("text_g").as_string());
    ClipTokenSet l = clip->tokenize(in.at("text_l").as_string());
    if (!tokens.g || !l.l)
      throw Error(ErrorKind::kRuntime,
                  std::string("clip: CLIPTextEncodeSDXL needs an SDXL text encoder (CLIP-L and "
                              "CLIP-G), this one is ") +
                      to_string(clip->core->encoders.family));
    tokens.l = std::move(l.l);
    if (tokens.l->prompt.chunks.size() != tokens.g->prompt.chunks.size()) {
      const ClipTokenSet empty = clip->tokenize("");
      while (tokens.l->prompt.chunks.size() < tokens.g->prompt.chunks.size())
        append_chunks(*tokens.l, *empty.l);
      while (tokens.l->prompt.chunks.size() > tokens.g->prompt.chunks.size())
        append_chunks(*tokens.g, *empty.g);
    }
    std::map<std::string, CondOption> add;
    for (const char* key : {"width", "height", "crop_w", "crop_h", "target_width", "target_height"})
      add[key] = in.at(key).as_int();
    return {encode_to_conditioning(ctx, *clip, tokens, std::move(add))};
  }
};

class CLIPTextEncodeSDXLRefiner final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto clip = clip_input(in);
    std::map<std::string, CondOption> add;
    add["aesthetic_score"] = in.at("ascore").as_float();
    add["width"] = in.at("width").as_int();
    add["height"] = in.at("height").as_int();
    return {encode_to_conditioning(ctx, *clip, clip->tokenize(in.at("text").as_string()), std::move(add))};
  }
};

InputSpec prompt_input(const std::string& name) {
  InputSpec s = string_input(name, "", /*multiline=*/true);
  s.dynamic_prompts = true;
  return s;
}

}  // namespace

void register_text_nodes(NodeRegistry& r) {
  r.add<CLIPTextEncode>(SchemaBuilder("CLIPTextEncode")
                            .display("CLIP Text Encode (Prompt)")
                            .category("conditioning")
                            .input(prompt_input("text"))
                            .socket("clip", "CLIP")
                            .output("CONDITIONING")
                            .build());
  r.add<CLIPSetLastLayer>(SchemaBuilder("CLIPSetLastLayer")
                              .category("conditioning")
                              .socket("clip", "CLIP")
                              .input(int_input("stop_at_clip_layer", -1, -24, -1))
                              .output("CLIP")
                              .build());
  r.add<CLIPTextEncodeSDXL>(SchemaBuilder("CLIPTextEncodeSDXL")
                                .category("advanced/conditioning")
                                .socket("clip", "CLIP")
                                .input(int_input("width", 1024, 0, kMaxResolution))
                                .input(int_input("height", 1024, 0, kMaxResolution))
                                .input(int_input("crop_w", 0, 0, kMaxResolution))
                                .input(int_input("crop_h", 0, 0, kMaxResolution))
                                .input(int_input("target_width", 1024, 0, kMaxResolution))
                                .input(int_input("target_height", 1024, 0, kMaxResolution))
                                .input(prompt_input("text_g"))
                                .input(prompt_input("text_l"))
                                .output("CONDITIONING")
                                .build());
  r.add<CLIPTextEncodeSDXLRefiner>(SchemaBuilder("CLIPTextEncodeSDXLRefiner")
                                       .category("advanced/conditioning")
                                       .input(float_input("ascore", 6.0, 0.0, 1000.0, 0.01))
                                       .input(int_input("width", 1024, 0, kMaxResolution))
                                       .input(int_input("height", 1024, 0, kMaxResolution))
                                       .input(prompt_input("text"))
                                       .socket("clip", "CLIP")
                                       .output("CONDITIONING")
                                       .build());
}

}  // namespace sdflow::nodes
