// Memory policy nodes. ModelBlockSwap is not a ComfyUI core node: it is the community's block
// swap (Note [Weight streaming] in memory/block_streamer.h) as a MODEL patch, so the same
// checkpoint can be sampled with and without it and no weights are copied to make the patch.
#include "core/error.h"
#include "nodes/builtin.h"
#include "nodes/model_value.h"

namespace sdflow::nodes {
namespace {

// Streams the last `blocks_to_swap` of the UNet's input, middle and output blocks (in
// execution order, so output_blocks.11 first) from host memory on every step, keeping the rest
// resident. 0 keeps the model's normal placement.
class ModelBlockSwap final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto model = in.at("model").as<ModelValue>()->model;
    if (!model) throw Error(ErrorKind::kRuntime, ctx.where() + "model: empty MODEL value");
    ModelPatch patch;
    patch.name = "ModelBlockSwap";
    patch.blocks_to_swap = in.at("blocks_to_swap").as_int();
    return {make_model(std::make_shared<const DiffusionModel>(model->with_patch(std::move(patch))))};
  }
};

}  // namespace

void register_memory_nodes(NodeRegistry& r) {
  r.add<ModelBlockSwap>(SchemaBuilder("ModelBlockSwap")
                            .display("Model Block Swap")
                            .category("model_patches/memory")
                            .socket("model", "MODEL")
                            .input(int_input("blocks_to_swap", 0, 0, 64))
                            .output("MODEL")
                            .build());
}

}  // namespace sdflow::nodes
