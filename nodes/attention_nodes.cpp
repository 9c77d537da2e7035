// Per-model attention patches: sdflow's PatchModelAttention and KJNodes' PathchSageAttentionKJ
// (that spelling is the class name workflows carry). Both return a MODEL whose patch list ends
// with an AttentionOverride; the UNet weights stay shared (DiffusionModel::with_patch) and the
// guider runs the override through DiffusionModel::apply_model, as ComfyUI's
// transformer_options["optimized_attention_override"] reaches every UNet attention call.
//
// KJNodes' modes name SageAttention kernels; sdflow has one INT8 kernel (ops::attention_sage_int8)
// and maps each mode to its closest settings (docs/MEMORY.md, "Attention"):
//   auto, sageattn_qk_int8_pv_fp16_triton     per-block Q (128 tokens) / K (64), P·V fp16
//   sageattn_qk_int8_pv_fp16_cuda             finer Q blocks (32 tokens, SageAttention's per-warp
//                                             granularity; the real kernel goes per thread)
//   sageattn_qk_int8_pv_fp8_cuda, …_cuda++    as _fp16_cuda: P·V stays fp16 (no fp8 P·V here)
//   sageattn3, sageattn3_per_block_mean       per-block INT8 (SageAttention3's FP4 kernels are
//                                             Blackwell-only and not reproduced)
// As in KJNodes, fp32 models run the kernel on fp16 casts; "disabled" returns the model as is.
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "nodes/builtin.h"
#include "nodes/model_value.h"

namespace sdflow::nodes {

namespace {

std::shared_ptr<const DiffusionModel> input_model(NodeContext& ctx, const NodeInputs& in) {
  auto value = in.at("model").as<ModelValue>();
  if (!value || !value->model) throw Error(ErrorKind::kRuntime, ctx.where() + "model: empty MODEL value");
  return value->model;
}

Value patched(const std::shared_ptr<const DiffusionModel>& model, std::string node, AttentionOverride o) {
  ModelPatch patch;
  patch.name = std::move(node);
  patch.attention = std::move(o);
  return make_model(std::make_shared<const DiffusionModel>(model->with_patch(std::move(patch))));
}

const std::vector<std::string>& patch_modes() {
  static const std::vector<std::string> modes = {"sdpa", "split", "quad", "sage_int8"};
  return modes;
}

class PatchModelAttention final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const std::string& mode = in.at("mode").as_string();
    AttentionOverride o;
    if (mode == "sdpa") {
      o.backend = AttentionBackend::kPytorch;
    } else if (mode == "split") {
      o.backend = AttentionBackend::kSplit;
    } else if (mode == "quad") {
      o.backend = AttentionBackend::kQuad;
    } else if (mode == "sage_int8") {
      o.backend = AttentionBackend::kSage;
      o.sage.fp32_falls_back = false;
    } else {
      throw Error(ErrorKind::kValidation, ctx.where() + "input 'mode': unknown value '" + mode + "'");
    }
    return {patched(input_model(ctx, in), "PatchModelAttention", o)};
  }
};

const std::vector<std::string>& kj_sage_modes() {
  static const std::vector<std::string> modes = {"disabled",
                                                 "auto",
                                                 "sageattn_qk_int8_pv_fp16_cuda",
                                                 "sageattn_qk_int8_pv_fp16_triton",
                                                 "sageattn_qk_int8_pv_fp8_cuda",
                                                 "sageattn_qk_int8_pv_fp8_cuda++",
                                                 "sageattn3",
                                                 "sageattn3_per_block_mean"};
  return modes;
}

class PathchSageAttentionKJ final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const std::string& mode = in.at("sage_attention").as_string();
    auto model = input_model(ctx, in);
    if (mode == "disabled") return {make_model(model)};
    AttentionOverride o;
    o.backend = AttentionBackend::kSage;
    o.sage.fp32_falls_back = false;  // KJNodes casts fp32 q, k, v to fp16
    if (mode == "sageattn_qk_int8_pv_fp16_cuda" || mode == "sageattn_qk_int8_pv_fp8_cuda" ||
        mode == "sageattn_qk_int8_pv_fp8_cuda++") {
      o.sage.q_block = 32;
    } else if (mode != "auto" && mode != "sageattn_qk_int8_pv_fp16_triton" && mode != "sageattn3" &&
               mode != "sageattn3_per_block_mean") {
      throw Error(ErrorKind::kValidation, ctx.where() + "input 'sage_attention': unknown value '" + mode + "'");
    }
    return {patched(model, "PathchSageAttentionKJ", o)};
  }
};

}  // namespace

void register_attention_nodes(NodeRegistry& r) {
  r.add<PatchModelAttention>(SchemaBuilder("PatchModelAttention")
                                 .display("Patch Model Attention")
                                 .category("model_patches/unet")
                                 .description("Runs this model's UNet attention with another kernel.")
                                 .socket("model", "MODEL")
                                 .input(combo_input("mode", patch_modes(), std::string("sdpa")))
                                 .output("MODEL")
                                 .build());
  r.add<PathchSageAttentionKJ>(SchemaBuilder("PathchSageAttentionKJ")
                                   .display("Patch Sage Attention KJ")
                                   .category("KJNodes/experimental")
                                   .description("Runs this model's UNet attention with sdflow's INT8 "
                                                "(SageAttention-style) kernel.")
                                   .socket("model", "MODEL")
                                   .input(combo_input("sage_attention", kj_sage_modes()))
                                   .input(optional(bool_input("allow_compile", false)))
                                   .output("MODEL")
                                   .build());
}

}  // namespace sdflow::nodes
