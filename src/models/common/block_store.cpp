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
  std::vector<std::pair<std::string, std::map<std::string, at::Tensor>>> blocks;
  std::set<std::string> used;
  for (const BlockParamRef& p : params) {
    const std::string& key = *p.key;
    if (blocks.empty() || blocks.back().first != *p.block)
      blocks.emplace_back(*p.block, std::map<std::string, at::Tensor>{});
    if (!weights.has(key))
      throw Error(ErrorKind::kModel, weights.label() + ": " + spec.kind + " weight '" + key +
                                         "' is missing (config " + spec.config + ")");
    at::Tensor t = weights.at(key);
    if (spec.adapt) t = spec.adapt(key, t);
    if (t.sizes().vec() != *p.shape)
      throw Error(ErrorKind::kModel, weights.label() + ": " + spec.kind + " weight '" + key + "' has shape " +
                                         c10::str(t.sizes()) + ", expected " +
                                         c10::str(at::IntArrayRef(*p.shape)));
    blocks.back().second.emplace(key, t);
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
