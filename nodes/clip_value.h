// CLIP values: ComfyUI's CLIP object (comfy/sd.py: CLIP) — the text encoders of a checkpoint,
// their tokenizer, the textual-inversion embeddings a prompt may name, and the clip-skip layer.
// CLIPSetLastLayer's clone shares everything but the layer.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "models/loader/checkpoint_loader.h"
#include "models/text_encoder/clip_encode.h"
#include "models/tokenizer/clip_bpe.h"
#include "models/tokenizer/clip_tokenize.h"
#include "models/tokenizer/vocab_locator.h"
#include "nodeapi/value.h"

namespace sdflow {
class StateDict;
}

namespace sdflow::nodes {

// ComfyUI's load_embed (comfy/sd1_clip.py) over the embeddings folders: NAME, then NAME plus
// .safetensors / .pt / .bin, in each folder and every folder below it, never leaving the folder.
// Pickle files (.pt, .bin) are found but not loaded (a warning; the embedding counts as
// missing), because loading them could run code. Not thread-safe: one per tokenization.
class EmbeddingFolder final : public EmbeddingLookup {
 public:
  // key: the tokenizer's embedding_key ("clip_l", "clip_g", "clip_h").
  EmbeddingFolder(std::vector<std::filesystem::path> roots, std::string key);

  std::optional<int> vectors_for(const std::string& name) override;
  // The vectors of `names` (TokenizedPrompt::embeddings), each [rows, width].
  std::vector<at::Tensor> vectors(const std::vector<std::string>& names) const;

 private:
  std::vector<std::filesystem::path> roots_;
  std::string key_;
  std::map<std::string, std::optional<at::Tensor>> loaded_;
};

// The file NAME names under `roots`, by load_embed's rules; nullopt when there is none.
std::optional<std::filesystem::path> find_embedding_file(const std::vector<std::filesystem::path>& roots,
                                                         const std::string& name);
// load_embed's choice of tensor in a safetensors file: `key`, else the A1111 bundle tensors
// (bundle_emb.*.string_to_param.*, then bundle_emb.*.<key>) concatenated, else the first
// tensor by name. Returned as [rows, width]. Throws Error(kModel) for an empty file.
at::Tensor select_embedding(const StateDict& file, const std::string& key);

// The CLIP BPE, read on first use: a workflow that never encodes text does not need the vocab
// files. Thread-safe.
class LazyClipTokenizer {
 public:
  explicit LazyClipTokenizer(ClipVocabSearch search) : search_(std::move(search)) {}
  // Throws Error(kModel) naming every place searched when the files are not found.
  const ClipBpe& get() const;

 private:
  ClipVocabSearch search_;
  mutable std::mutex mu_;
  mutable std::unique_ptr<ClipBpe> bpe_;
};

// What CLIP values cloned from one loader output share.
struct ClipCore {
  TextEncoders encoders;
  std::shared_ptr<const LazyClipTokenizer> tokenizer;
  std::vector<std::filesystem::path> embedding_dirs;  // models/embeddings (may not exist)
};

// CLIP.tokenize's result: one chunk list per encoder ({"l": …, "g": …} in ComfyUI).
struct ClipTokenSet {
  std::optional<ClipTokens> l;
  std::optional<ClipTokens> g;
  std::optional<ClipTokens> h;
};

// CLIP: immutable once made. `core` is null when the checkpoint had no text encoder weights:
// using it then fails like ComfyUI's `clip is None`.
struct ClipValue final : Object {
  std::shared_ptr<const ClipCore> core;
  std::optional<int64_t> clip_layer;  // CLIPSetLastLayer's stop_at_clip_layer
  // LoraLoader's stack for the text encoders (Note [LoRA as a weight patch]); null: none.
  std::shared_ptr<const WeightPatch> weight_patch;

  // Throws ComfyUI's "clip input is invalid" error (kRuntime, prefixed by `where`) without core.
  const ClipCore& require(const std::string& where) const;
  // SD1: l; SD2: h; SDXL and its refiner: g and l (the refiner encodes only g), each with its
  // tokenizer's padding and embedding key.
  ClipTokenSet tokenize(const std::string& text) const;
  // CLIP.encode_from_tokens with return_pooled: cond [1, 77k, D] and pooled [1, P] on
  // options.output_device; clip_layer is applied here (options.clip_layer is ignored).
  ClipEncodeResult encode(const ClipTokenSet& tokens, ClipEncodeOptions options) const;
};

inline Value make_clip(ClipValue v) { return Value::object(std::make_shared<ClipValue>(std::move(v))); }

}  // namespace sdflow::nodes
