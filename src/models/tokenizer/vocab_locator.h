// Where the CLIP BPE files (vocab.json + merges.txt) come from. They are not shipped with sdflow
// (the same files as ComfyUI's comfy/sd1_tokenizer, or openai/clip-vit-large-patch14's).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sdflow {

struct ClipVocabSearch {
  std::string cli_dir;                 // --clip-vocab DIR; empty when not given
  std::optional<std::string> env_dir;  // nullopt: read SDFLOW_CLIP_VOCAB; "" : do not use it
  std::string models_dir;              // looks in <models>/tokenizers/clip
  std::string checkpoint_path;         // looks in tokenizer/ beside it (or inside it, for a
                                       // Hugging Face model folder)
};

struct ClipVocabFiles {
  std::string dir;
  std::string vocab_json;
  std::string merges_txt;
};

// The places searched, in order: --clip-vocab, $SDFLOW_CLIP_VOCAB, <models>/tokenizers/clip,
// the checkpoint's tokenizer/ folder. The first folder holding both files wins. A folder given
// explicitly (--clip-vocab or the variable) that lacks them is an error of its own, so a typo
// is not hidden by a fallback. Throws Error(kModel) naming every place looked at and what to
// put where.
ClipVocabFiles locate_clip_vocab(const ClipVocabSearch& search);

// The candidate folders, in search order, with where each came from ("--clip-vocab", ...).
std::vector<std::pair<std::string, std::string>> clip_vocab_candidates(const ClipVocabSearch& search);

}  // namespace sdflow
