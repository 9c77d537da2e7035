// Model patch nodes (comfy_extras/nodes_freelunch.py: FreeU, FreeU_V2). Each returns a new MODEL
// whose DiffusionModel carries one more patch (ModelPatcher.clone() + set_model_output_block_patch):
// the UNet weights are shared, the input MODEL is unchanged, and patches stack in order.
#include <string>

#include "core/error.h"
#include "models/patches/freeu.h"
#include "nodes/builtin.h"
#include "nodes/model_value.h"

namespace sdflow::nodes {
namespace {

template <FreeUVersion V>
class FreeUNode final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    const auto& model = in.at("model").as<ModelValue>()->model;
    if (!model) throw Error(ErrorKind::kRuntime, ctx.where() + "model: empty MODEL value");
    FreeUParams p;
    p.version = V;
    p.b1 = in.at("b1").as_float();
    p.b2 = in.at("b2").as_float();
    p.s1 = in.at("s1").as_float();
    p.s2 = in.at("s2").as_float();
    ModelPatch patch;
    patch.name = ctx.class_type();
    patch.output_block = make_freeu_patch(p, model->unet().config().model_channels);
    return {make_model(std::make_shared<const DiffusionModel>(model->with_patch(std::move(patch))))};
  }
};

SchemaBuilder freeu_schema(const char* name, double b1, double b2) {
  SchemaBuilder b(name);
  b.category("model_patches/unet")
      .socket("model", "MODEL")
      .input(float_input("b1", b1, 0.0, 10.0, 0.01))
      .input(float_input("b2", b2, 0.0, 10.0, 0.01))
      .input(float_input("s1", 0.9, 0.0, 10.0, 0.01))
      .input(float_input("s2", 0.2, 0.0, 10.0, 0.01))
      .output("MODEL");
  return b;
}

}  // namespace

void register_patch_nodes(NodeRegistry& r) {
  r.add<FreeUNode<FreeUVersion::kV1>>(freeu_schema("FreeU", 1.1, 1.2).build());
  r.add<FreeUNode<FreeUVersion::kV2>>(freeu_schema("FreeU_V2", 1.3, 1.4).build());
}

}  // namespace sdflow::nodes
