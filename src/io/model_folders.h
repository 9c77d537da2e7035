// ComfyUI's model folder layout (folder_paths.py) under one models root: which folders a kind
// of model lives in, what a loader's list of choices is, and where a chosen name is on disk.
// Thread-compatible: const methods only read the disk, so concurrent use is fine.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace sdflow {

class ModelFolders {
 public:
  explicit ModelFolders(std::filesystem::path models_root);

  const std::filesystem::path& root() const { return root_; }

  // Kinds as ComfyUI names them: checkpoints, vae, loras, embeddings, vae_approx, clip_vision,
  // controlnet, upscale_models, hypernetworks, style_models, tokenizers, text_encoders (alias
  // clip), diffusion_models (alias unet).
  static bool is_known_kind(const std::string& kind);
  static std::vector<std::string> known_kinds();

  // Every folder a kind is searched in, in search order (ComfyUI's legacy pairs:
  // text_encoders → text_encoders, clip; diffusion_models → unet, diffusion_models).
  // Throws Error(kUsage) for an unknown kind, here and below.
  std::vector<std::filesystem::path> folders(const std::string& kind) const;
  // The first of folders(kind).
  std::filesystem::path folder(const std::string& kind) const;

  // Model files below the kind's folders (recursively, following symlinked folders), as
  // relative names with '/' separators, filtered by extension (.safetensors .sft .ckpt .pt .pt2
  // .bin .pth, any case), without duplicates, sorted bytewise. Missing folders list nothing.
  std::vector<std::string> list(const std::string& kind) const;

  // The file `name` (as in list(), '\' also accepted) from the first folder that has it,
  // confined to that folder (see confine()). Throws Error(kValidation) naming the kind, the
  // name and the folders searched when no folder has it, or when the name leaves its folder.
  std::filesystem::path resolve(const std::string& kind, const std::string& name) const;

 private:
  std::filesystem::path root_;
};

// ComfyUI's VAELoader choices (nodes.py VAELoader.vae_list): the files of "vae", then each
// tiny-autoencoder name whose "<name>_encoder.*" and "<name>_decoder.*" files are both in
// "vae_approx", in the order taesd, taesdxl, taesd3, taef1, taef2 (taef2 as newer ComfyUI lists
// it). ComfyUI's "pixel_space" and video TAEs are not offered: sdflow does not run them.
std::vector<std::string> vae_loader_names(const ModelFolders& folders);
inline const std::vector<std::string>& taesd_names() {
  static const std::vector<std::string> names{"taesd", "taesdxl", "taesd3", "taef1", "taef2"};
  return names;
}
// The first "vae_approx" file starting with "<name>_<half>." (half: "encoder" or "decoder"), as
// ComfyUI's load_taesd picks it; empty when there is none.
std::string taesd_file(const ModelFolders& folders, const std::string& name, const std::string& half);

}  // namespace sdflow
