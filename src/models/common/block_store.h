// Builds a model's WeightStore from a checkpoint: one place for the walk every family does over
// its layout (key, shape, block) — check presence and shape, group by block in execution order,
// note keys the layout does not use.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "memory/weight_store.h"
#include "models/loader/state_dict.h"

namespace sdflow {

struct BlockStoreSpec {
  std::string model_name;  // WeightStore name ("unet", "vae", "clip_l")
  std::string kind;        // for messages: "UNet", "VAE", "CLIP text"
  std::string config;      // the config's description, for missing-key messages
  at::ScalarType storage = at::kFloat;
  at::ScalarType compute = at::kFloat;
  // Optional per-key fix-up before the shape check (e.g. 2-D attention matrices stored for 1×1 convs).
  std::function<at::Tensor(const std::string& key, at::Tensor)> adapt;
};

struct BlockParamRef {
  const std::string* key;
  const std::vector<int64_t>* shape;
  const std::string* block;
};

// Throws Error(kModel) naming the file and key when a weight is missing or misshapen.
std::shared_ptr<WeightStore> build_block_store(const StateDict& weights,
                                               const std::vector<BlockParamRef>& params,
                                               const BlockStoreSpec& spec);

// Any layout whose params have `key`, `shape` and `block` members.
template <typename Param>
std::shared_ptr<WeightStore> build_block_store(const StateDict& weights, const std::vector<Param>& params,
                                               const BlockStoreSpec& spec) {
  std::vector<BlockParamRef> refs;
  refs.reserve(params.size());
  for (const Param& p : params) refs.push_back({&p.key, &p.shape, &p.block});
  return build_block_store(weights, refs, spec);
}

}  // namespace sdflow
