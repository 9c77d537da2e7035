#include "models/loader/state_dict.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "io/safetensors_torch.h"
#include "io/torch_checkpoint_torch.h"

namespace sdflow {

namespace {
constexpr const char* kConvertHint =
    ": pickle-based model files are only loaded when they hold nothing but tensors (anything else could "
    "execute code). Convert it to .safetensors first, e.g. with Python: safetensors.torch.save_file("
    "torch.load(f, weights_only=True)['state_dict'], 'model.safetensors')";

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}
}  // namespace

StateDict StateDict::open(const std::string& path) {
  const std::string ext = lower_extension(path);
  if (ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin") {
    // Zip checkpoints made of tensors only are read by an interpreter that executes nothing;
    // anything else (legacy pickles, pickled classes) is refused with the conversion hint.
    StateDict sd;
    sd.label_ = path;
    try {
      sd.tensors_ = load_torch_checkpoint(path);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::kIo) throw;
      throw Error(ErrorKind::kModel, std::string(e.what()) + "\n" + path + kConvertHint);
    }
    return sd;
  }
  if (ext == ".pt2") throw Error(ErrorKind::kModel, path + kConvertHint);
  auto file = SafetensorsFile::open(path);
  StateDict sd;
  sd.label_ = path;
  sd.tensors_ = load_all(file);
  sd.metadata_ = file->metadata();
  return sd;
}

StateDict StateDict::from_tensors(std::map<std::string, at::Tensor> tensors, std::string label) {
  StateDict sd;
  sd.label_ = std::move(label);
  sd.tensors_ = std::move(tensors);
  return sd;
}

const at::Tensor& StateDict::at(const std::string& key) const {
  auto it = tensors_.find(key);
  if (it == tensors_.end()) throw Error(ErrorKind::kModel, label_ + ": missing tensor '" + key + "'");
  return it->second;
}

StateDict StateDict::with_prefix(const std::string& prefix) const {
  StateDict out;
  out.label_ = label_;
  out.metadata_ = metadata_;
  for (auto it = tensors_.lower_bound(prefix); it != tensors_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    out.tensors_.emplace(it->first.substr(prefix.size()), it->second);
  return out;
}

size_t StateDict::count_prefix(const std::string& prefix) const {
  size_t n = 0;
  for (auto it = tensors_.lower_bound(prefix); it != tensors_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    ++n;
  return n;
}

}  // namespace sdflow
