// Engine services that nodes look up through NodeContext::services() (nodeapi/node.h).
// The Engine owns them; a test can provide its own.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace sdflow::nodes {

// The folders a run may read and write. Every name from a workflow is confined to its root
// (io/paths.h).
struct EnginePaths {
  std::filesystem::path models;  // models/checkpoints, vae, loras, embeddings, ...
  std::filesystem::path input;   // LoadImage
  std::filesystem::path output;  // SaveImage, SaveLatent
  std::filesystem::path temp;    // PreviewImage
  std::string clip_vocab_dir;    // --clip-vocab (may be empty)
};

struct NodeSettings {
  bool disable_metadata = false;  // --disable-metadata: no prompt/workflow text in outputs
};

// Files the output nodes wrote during the current run (ComfyUI's "ui" results).
class OutputRecorder {
 public:
  struct File {
    std::string node_id;
    std::string path;       // absolute
    std::string filename;
    std::string subfolder;
    std::string type;       // "output" | "temp"
    std::string kind = "image";  // "image" | "latent" (ComfyUI's ui.images / ui.latents)
  };
  void add(File f) {
    std::lock_guard<std::mutex> lock(mu_);
    files_.push_back(std::move(f));
  }
  std::vector<File> take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(files_, {});
  }

 private:
  std::mutex mu_;
  std::vector<File> files_;
};

}  // namespace sdflow::nodes
