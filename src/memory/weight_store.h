// Note [Models own no device memory]
// A model is described by a WeightStore: its tensors grouped into blocks (a UNet input block,
// a CLIP layer, a VAE stage), each kept on the host (a zero-copy view of the mmap'd file when
// the dtype already matches, else a converted copy). Model code never holds device tensors
// across calls: for each block it asks the Residency for a lease and reads weights through it.
// Whether that lease is a lookup (everything resident), a copy that was prefetched on a side
// stream (streaming), or a CPU tensor (--cpu) is the memory policy's business, not the model's.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sdflow {

struct WeightBlock {
  std::string name;                        // stable path, e.g. "unet.input_blocks.4"
  std::map<std::string, at::Tensor> host;  // key → host tensor at the storage dtype
  int64_t bytes = 0;
};

// One model's weights. Thread-compatible; immutable once built.
class WeightStore {
 public:
  // storage: dtype kept on the host and copied to the device; compute: dtype the model runs in
  // (fp8 storage computes in fp16/bf16).
  WeightStore(std::string model_name, at::ScalarType storage, at::ScalarType compute);
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  // Adds a block; tensors of another floating dtype are converted to the storage dtype
  // (integer tensors are kept as they are). Throws Error(kModel) on a duplicate block.
  void add_block(const std::string& name, std::map<std::string, at::Tensor> tensors);

  const std::string& model_name() const { return model_name_; }
  // Where the weights came from (a file name), for logs and --report; set once by the builder.
  void set_source(std::string source) { source_ = std::move(source); }
  const std::string& source() const { return source_; }
  // "unet (v1-5.safetensors)", or the model name alone.
  std::string label() const { return source_.empty() ? model_name_ : model_name_ + " (" + source_ + ")"; }
  at::ScalarType storage_dtype() const { return storage_; }
  at::ScalarType compute_dtype() const { return compute_; }
  // The dtype of the floating tensors a residency puts on the device: the compute dtype, except
  // for 8-bit float storage, which stays 8-bit there and is upcast layer by layer where it is
  // used (ComfyUI's manual cast): an fp8 UNet then takes half the VRAM of an fp16 one.
  at::ScalarType device_dtype() const { return c10::elementSize(storage_) == 1 ? storage_ : compute_; }
  const WeightBlock& block(const std::string& name) const;  // throws Error(kModel)
  bool has_block(const std::string& name) const { return index_.count(name) > 0; }
  const std::vector<WeightBlock>& blocks() const { return blocks_; }
  int64_t total_bytes() const { return total_bytes_; }
  // Unique identity for residency bookkeeping (stable while the store lives).
  uint64_t id() const { return id_; }

 private:
  std::string model_name_;
  std::string source_;
  at::ScalarType storage_;
  at::ScalarType compute_;
  std::vector<WeightBlock> blocks_;
  std::map<std::string, size_t> index_;
  int64_t total_bytes_ = 0;
  uint64_t id_;
};

// A block's weights on the compute device, valid while the lease lives.
class BlockLease {
 public:
  BlockLease() = default;
  BlockLease(std::shared_ptr<const std::map<std::string, at::Tensor>> tensors, std::string block)
      : tensors_(std::move(tensors)), block_(std::move(block)) {}
  // Throws Error(kModel) naming block and key when absent.
  const at::Tensor& at(const std::string& key) const;
  bool has(const std::string& key) const { return tensors_ && tensors_->count(key) > 0; }

 private:
  std::shared_ptr<const std::map<std::string, at::Tensor>> tensors_;
  std::string block_;
};

}  // namespace sdflow
