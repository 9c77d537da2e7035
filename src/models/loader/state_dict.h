// A model file's tensors by key: zero-copy CPU views of a safetensors mapping, or of a PyTorch zip
// checkpoint (.ckpt, .pt, .pth, .bin) that holds nothing but tensors, read without executing
// anything (io/torch_checkpoint.h). Any other pickle is refused with a message that says how to
// convert it, because loading it would mean executing code from the file.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sdflow {

class StateDict {
 public:
  // Throws Error(kModel) for pickle files, Error(kIo/kFormat) for unreadable/malformed files.
  static StateDict open(const std::string& path);
  static StateDict from_tensors(std::map<std::string, at::Tensor> tensors, std::string label = "<memory>");

  const std::string& label() const { return label_; }
  bool has(const std::string& key) const { return tensors_.count(key) > 0; }
  // Throws Error(kModel) naming the file and key when absent.
  const at::Tensor& at(const std::string& key) const;
  const std::map<std::string, at::Tensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Keys under `prefix`, with the prefix removed.
  StateDict with_prefix(const std::string& prefix) const;
  size_t count_prefix(const std::string& prefix) const;

 private:
  std::string label_;
  std::map<std::string, at::Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sdflow
