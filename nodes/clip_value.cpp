#include "nodes/clip_value.h"

#include <algorithm>
#include <system_error>

#include "core/error.h"
#include "core/log.h"
#include "models/loader/state_dict.h"

namespace sdflow::nodes {

namespace fs = std::filesystem;

namespace {

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                    [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// expand_directory_list: each root and every folder below it (symlinks followed). ComfyUI
// walks a set, so its order is arbitrary; here a root comes before its subfolders, sorted.
std::vector<fs::path> expand_directories(const std::vector<fs::path>& roots) {
  std::vector<fs::path> out;
  for (const fs::path& root : roots) {
    out.push_back(root);
    std::error_code ec;
    if (!fs::is_directory(root, ec)) continue;
    std::vector<fs::path> below;
    fs::recursive_directory_iterator it(
        root, fs::directory_options::follow_directory_symlink | fs::directory_options::skip_permission_denied,
        ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      if (it->is_directory(ec)) below.push_back(it->path());
    std::sort(below.begin(), below.end());
    out.insert(out.end(), below.begin(), below.end());
  }
  return out;
}

at::Tensor as_rows(const at::Tensor& t) {
  return t.dim() <= 1 ? t.reshape({1, -1}) : t.reshape({-1, t.size(-1)});
}

at::Tensor bundled(const StateDict& file, const std::string& suffix) {
  std::vector<at::Tensor> parts;
  for (const auto& [key, t] : file.tensors())
    if (key.compare(0, 11, "bundle_emb.") == 0 && key.size() >= suffix.size() &&
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0)
      parts.push_back(t);
  return parts.empty() ? at::Tensor() : at::cat(parts, 0);
}

}  // namespace

std::optional<fs::path> find_embedding_file(const std::vector<fs::path>& roots, const std::string& name) {
  if (name.empty()) return std::nullopt;
  for (const fs::path& dir : expand_directories(roots)) {
    std::error_code ec;
    const fs::path base = fs::absolute(dir, ec).lexically_normal();
    if (ec) continue;
    const fs::path path = (base / fs::path(name)).lexically_normal();
    // os.path.commonpath((embed_dir, embed_path)) == embed_dir, on normalized absolute paths.
    const fs::path rel = path.lexically_relative(base);
    if (rel.empty() || *rel.begin() == "..") continue;
    if (is_file(path)) return path;
    for (const char* ext : {".safetensors", ".pt", ".bin"}) {
      fs::path with_ext = path;
      with_ext += ext;
      if (is_file(with_ext)) return with_ext;
    }
  }
  return std::nullopt;
}

at::Tensor select_embedding(const StateDict& file, const std::string& key) {
  if (file.tensors().empty())
    throw Error(ErrorKind::kModel, file.label() + ": the embedding file has no tensors");
  if (file.has(key)) return as_rows(file.at(key));
  at::Tensor t = bundled(file, ".string_to_param.*");
  if (!t.defined()) t = bundled(file, "." + key);
  if (!t.defined()) t = file.tensors().begin()->second;
  return as_rows(t);
}

EmbeddingFolder::EmbeddingFolder(std::vector<fs::path> roots, std::string key)
    : roots_(std::move(roots)), key_(std::move(key)) {}

std::optional<int> EmbeddingFolder::vectors_for(const std::string& name) {
  auto it = loaded_.find(name);
  if (it == loaded_.end()) {
    std::optional<at::Tensor> vectors;
    if (auto path = find_embedding_file(roots_, name)) {
      if (!ends_with_ci(path->string(), ".safetensors")) {
        log::warn(
            "embedding {}: {} is a pickle file, which sdflow does not load (convert it to .safetensors)",
            name, path->string());
      } else {
        try {
          vectors = select_embedding(StateDict::open(path->string()), key_);
        } catch (const Error& e) {
          log::warn("error loading embedding, skipping loading: {} ({})", name, e.what());
        }
      }
    }
    it = loaded_.emplace(name, std::move(vectors)).first;
  }
  if (!it->second) return std::nullopt;
  return static_cast<int>(it->second->size(0));
}

std::vector<at::Tensor> EmbeddingFolder::vectors(const std::vector<std::string>& names) const {
  std::vector<at::Tensor> out;
  for (const std::string& name : names) {
    auto it = loaded_.find(name);
    out.push_back(it != loaded_.end() && it->second ? *it->second : at::Tensor());
  }
  return out;
}

const ClipBpe& LazyClipTokenizer::get() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!bpe_) {
    const ClipVocabFiles files = locate_clip_vocab(search_);
    bpe_ = std::make_unique<ClipBpe>(ClipBpe::from_files(files.vocab_json, files.merges_txt));
    log::debug("CLIP tokenizer from {}", files.dir);
  }
  return *bpe_;
}

const ClipCore& ClipValue::require(const std::string& where) const {
  if (!core)
    throw Error(ErrorKind::kRuntime, where +
                                         "ERROR: clip input is invalid: None\n\nIf the clip is from a "
                                         "checkpoint loader node your checkpoint "
                                         "does not contain a valid clip or text encoder model.");
  return *core;
}

ClipTokenSet ClipValue::tokenize(const std::string& text) const {
  const ClipCore& c = require("");
  const ClipBpe& bpe = c.tokenizer->get();
  auto one = [&](const TokenizeOptions& options, const char* embedding_key) {
    EmbeddingFolder embeddings(c.embedding_dirs, embedding_key);
    ClipTokens t;
    t.prompt = tokenize_with_weights(bpe, text, options, &embeddings);
    t.embeddings = embeddings.vectors(t.prompt.embeddings);
    return t;
  };
  ClipTokenSet out;
  switch (c.encoders.family) {
    case ClipFamily::kSd1:
      out.l = one(TokenizeOptions::clip_l(), "clip_l");
      break;
    case ClipFamily::kSd2:
      out.h = one(TokenizeOptions::clip_g(), "clip_h");  // SD2ClipHTokenizer pads with 0, like CLIP-G
      break;
    case ClipFamily::kSdxl:
    case ClipFamily::kSdxlRefiner:
      out.g = one(TokenizeOptions::clip_g(), "clip_g");
      out.l = one(TokenizeOptions::clip_l(), "clip_l");
      break;
  }
  return out;
}

ClipEncodeResult ClipValue::encode(const ClipTokenSet& tokens, ClipEncodeOptions options) const {
  const ClipCore& c = require("");
  const TextEncoders& e = c.encoders;
  options.clip_layer = clip_layer;
  options.weight_patch = weight_patch.get();
  auto need = [&](const std::optional<ClipTokens>& t, const char* which) -> const ClipTokens& {
    if (!t)
      throw Error(ErrorKind::kRuntime, std::string("CLIP encode: no '") + which + "' tokens for this " +
                                           to_string(e.family) + " text encoder");
    return *t;
  };
  switch (e.family) {
    case ClipFamily::kSd1:
      return encode_sd1(*e.clip_l, need(tokens.l, "l"), options);
    case ClipFamily::kSd2:
      return encode_sd2(*e.clip_h, need(tokens.h, "h"), options);
    case ClipFamily::kSdxl:
      return encode_sdxl(*e.clip_l, *e.clip_g, need(tokens.l, "l"), need(tokens.g, "g"), options);
    case ClipFamily::kSdxlRefiner:
      return encode_sdxl_refiner(*e.clip_g, need(tokens.g, "g"), options);
  }
  throw Error(ErrorKind::kRuntime, "CLIP encode: unknown text encoder family");
}

}  // namespace sdflow::nodes
