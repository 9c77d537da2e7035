#include "io/model_folders.h"

#include <algorithm>
#include <set>
#include <system_error>
#include <utility>

#include "core/error.h"
#include "io/paths.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

struct KindFolders {
  const char* kind;
  const char* first;
  const char* second;  // nullptr when the kind has one folder
};

// folder_paths.py's table (v0.8.0), with its legacy names "clip" and "unet" as aliases.
constexpr KindFolders kKinds[] = {
    {"checkpoints", "checkpoints", nullptr},
    {"vae", "vae", nullptr},
    {"loras", "loras", nullptr},
    {"embeddings", "embeddings", nullptr},
    {"vae_approx", "vae_approx", nullptr},
    {"clip_vision", "clip_vision", nullptr},
    {"controlnet", "controlnet", "t2i_adapter"},
    {"upscale_models", "upscale_models", nullptr},
    {"hypernetworks", "hypernetworks", nullptr},
    {"style_models", "style_models", nullptr},
    {"tokenizers", "tokenizers", nullptr},
    {"text_encoders", "text_encoders", "clip"},
    {"clip", "text_encoders", "clip"},
    {"diffusion_models", "unet", "diffusion_models"},
    {"unet", "unet", "diffusion_models"},
};

constexpr const char* kModelExtensions[] = {".safetensors", ".sft", ".ckpt", ".pt", ".pt2", ".bin", ".pth"};

// Symlinked folders are followed (models are often linked in from elsewhere); this bounds a
// pathological tree, and `visited` breaks symlink cycles.
constexpr int kMaxDepth = 32;

const KindFolders* find_kind(const std::string& kind) {
  for (const KindFolders& k : kKinds) {
    if (kind == k.kind) return &k;
  }
  return nullptr;
}

const KindFolders& require_kind(const std::string& kind) {
  const KindFolders* k = find_kind(kind);
  if (!k) throw Error(ErrorKind::kUsage, "unknown model folder kind '" + kind + "'");
  return *k;
}

bool has_model_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
  for (const char* e : kModelExtensions) {
    if (ext == e) return true;
  }
  return false;
}

void walk(const fs::path& dir, const std::string& prefix, int depth, std::set<fs::path>& visited,
          std::set<std::string>& out) {
  std::error_code ec;
  const fs::path real = fs::canonical(dir, ec);
  if (ec || !visited.insert(real).second || depth > kMaxDepth) return;
  fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  // An unreadable folder lists nothing rather than failing every loader's choice list.
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    std::error_code sec;
    const fs::file_status st = fs::status(p, sec);  // follows symlinks, like os.walk(followlinks=True)
    if (sec) continue;
    if (fs::is_directory(st)) {
      if (name != ".git") walk(p, prefix + name + "/", depth + 1, visited, out);
    } else if (fs::is_regular_file(st) && has_model_extension(p)) {
      out.insert(prefix + name);
    }
  }
}

}  // namespace

ModelFolders::ModelFolders(fs::path models_root) : root_(std::move(models_root)) {}

bool ModelFolders::is_known_kind(const std::string& kind) { return find_kind(kind) != nullptr; }

std::vector<std::string> ModelFolders::known_kinds() {
  std::vector<std::string> kinds;
  for (const KindFolders& k : kKinds) kinds.emplace_back(k.kind);
  return kinds;
}

std::vector<fs::path> ModelFolders::folders(const std::string& kind) const {
  const KindFolders& k = require_kind(kind);
  std::vector<fs::path> result{root_ / k.first};
  if (k.second) result.push_back(root_ / k.second);
  return result;
}

fs::path ModelFolders::folder(const std::string& kind) const { return folders(kind).front(); }

std::vector<std::string> ModelFolders::list(const std::string& kind) const {
  std::set<std::string> names;  // std::string orders bytewise, i.e. by code point for UTF-8
  std::set<fs::path> visited;
  for (const fs::path& dir : folders(kind)) walk(dir, "", 0, visited, names);
  return {names.begin(), names.end()};
}

fs::path ModelFolders::resolve(const std::string& kind, const std::string& name) const {
  const std::vector<fs::path> dirs = folders(kind);
  for (const fs::path& dir : dirs) {
    const fs::path p = confine(dir, name, kind);
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p;
  }

  std::string where;
  for (size_t i = 0; i < dirs.size(); ++i) where += (i ? " or " : "") + dirs[i].string();
  std::string message = kind + " '" + name + "' not found in " + where;
  const std::vector<std::string> available = list(kind);
  if (available.empty()) {
    message += " (no model files there)";
  } else {
    constexpr size_t kShown = 8;
    message += " (" + std::to_string(available.size()) + " there: ";
    for (size_t i = 0; i < available.size() && i < kShown; ++i) message += (i ? ", " : "") + available[i];
    message += available.size() > kShown ? ", ...)" : ")";
  }
  throw Error(ErrorKind::kValidation, message);
}

std::string taesd_file(const ModelFolders& folders, const std::string& name, const std::string& half) {
  const std::string prefix = name + "_" + half + ".";
  for (const std::string& f : folders.list("vae_approx"))
    if (f.compare(0, prefix.size(), prefix) == 0) return f;
  return "";
}

std::vector<std::string> vae_loader_names(const ModelFolders& folders) {
  std::vector<std::string> names = folders.list("vae");
  for (const std::string& tae : taesd_names())
    if (!taesd_file(folders, tae, "encoder").empty() && !taesd_file(folders, tae, "decoder").empty())
      names.push_back(tae);
  return names;
}

}  // namespace sdflow
