#include "models/common/block_store.h"

#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/log.h"

namespace sdflow {

std::shared_ptr<WeightStore> build_block_store(const StateDict& weights,
                                               const std::vector<BlockParamRef>& params,
                                               const BlockStoreSpec& spec) {
  // Blocks in order of first appearance: a layout may come back to a block (a UNet
  // transformer's proj_out belongs to the unit acquired before its transformer blocks).
  std::vector<std::pair<std::string, std::map<std::string, at::Tensor>>> blocks;
  std::map<std::string, size_t> position;
  std::set<std::string> used;
  for (const BlockParamRef& p : params) {
    const std::string& key = *p.key;
    auto [pos, fresh] = position.emplace(*p.block, blocks.size());
    if (fresh) blocks.emplace_back(*p.block, std::map<std::string, at::Tensor>{});
    auto& block = blocks[pos->second];
    if (!weights.has(key))
      throw Error(ErrorKind::kModel, weights.label() + ": " + spec.kind + " weight '" + key +
                                         "' is missing (config " + spec.config + ")");
    at::Tensor t = weights.at(key);
    if (spec.adapt) t = spec.adapt(key, t);
    if (t.sizes().vec() != *p.shape)
      throw Error(ErrorKind::kModel, weights.label() + ": " + spec.kind + " weight '" + key + "' has shape " +
                                         c10::str(t.sizes()) + ", expected " +
                                         c10::str(at::IntArrayRef(*p.shape)));
    block.second.emplace(key, t);
    used.insert(key);
  }
  size_t unexpected = 0;
  for (const auto& [key, t] : weights.tensors()) {
    if (used.count(key)) continue;
    if (unexpected++ < 20) log::debug("{}: unexpected {} key '{}' ignored", weights.label(), spec.kind, key);
  }
  if (unexpected > 20)
    log::debug("{}: {} unexpected {} keys ignored in all", weights.label(), unexpected, spec.kind);

  auto store = std::make_shared<WeightStore>(spec.model_name, spec.storage, spec.compute);
  store->set_source(std::filesystem::path(weights.label()).filename().string());
  for (auto& [name, tensors] : blocks) store->add_block(name, std::move(tensors));
  return store;
}

}  // namespace sdflow
