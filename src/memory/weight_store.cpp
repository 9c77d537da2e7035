#include "memory/weight_store.h"

#include <atomic>

#include "core/error.h"

namespace sdflow {

namespace {
std::atomic<uint64_t> next_store_id{1};
}

WeightStore::WeightStore(std::string model_name, at::ScalarType storage, at::ScalarType compute)
    : model_name_(std::move(model_name)), storage_(storage), compute_(compute), id_(next_store_id++) {}

void WeightStore::add_block(const std::string& name, std::map<std::string, at::Tensor> tensors) {
  if (index_.count(name)) throw Error(ErrorKind::kModel, model_name_ + ": weight block '" + name + "' added twice");
  WeightBlock b;
  b.name = name;
  for (auto& [key, t] : tensors) {
    at::Tensor host = t;
    if (at::isFloatingType(t.scalar_type()) && t.scalar_type() != storage_) host = t.to(storage_);
    b.bytes += static_cast<int64_t>(host.numel() * host.element_size());
    b.host.emplace(key, std::move(host));
  }
  total_bytes_ += b.bytes;
  index_[name] = blocks_.size();
  blocks_.push_back(std::move(b));
}

const WeightBlock& WeightStore::block(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(ErrorKind::kModel, model_name_ + ": no weight block '" + name + "'");
  return blocks_[it->second];
}

const at::Tensor& BlockLease::at(const std::string& key) const {
  if (!tensors_) throw Error(ErrorKind::kModel, "empty weight lease for block '" + block_ + "'");
  auto it = tensors_->find(key);
  if (it == tensors_->end())
    throw Error(ErrorKind::kModel, "weight block '" + block_ + "' has no tensor '" + key + "'");
  return it->second;
}

}  // namespace sdflow
