// A prompt → weighted 77-token chunks, as ComfyUI's SDTokenizer.tokenize_with_weights builds
// them for CLIP-L (SD1.x, SDXL) and CLIP-G (SDXL). See Note [Prompt chunking] in
// clip_tokenize.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer/clip_bpe.h"

namespace sdflow {

struct WeightedToken {
  int32_t id = 0;         // vocabulary id; -1 for a slot that holds an embedding vector
  double weight = 1.0;    // the segment's weight (double, as ComfyUI computes it)
  int embedding = -1;     // index into TokenizedPrompt::embeddings, or -1
  int embedding_row = 0;  // which vector of that embedding fills this slot
};

struct TokenizedPrompt {
  std::vector<std::vector<WeightedToken>> chunks;
  std::vector<std::string> embeddings;  // names as found by the lookup, in first-use order
};

// Resolves "embedding:NAME" words (textual inversion). The vectors themselves are loaded by
// whoever encodes; the tokenizer only needs how many slots each one takes.
class EmbeddingLookup {
 public:
  virtual ~EmbeddingLookup() = default;
  // How many vectors the embedding NAME (as written, e.g. "easynegative" or "sub/x.pt") has
  // for this text encoder, or nullopt when there is no such embedding.
  virtual std::optional<int> vectors_for(const std::string& name) = 0;
};

struct TokenizeOptions {
  int32_t pad_token = 49407;  // CLIP-L pads with its end token, SDXL's CLIP-G with 0
  int max_length = 77;        // tokens per chunk, start and end included; at least 3
  bool pad_to_max_length = true;
  std::optional<int> min_length;   // pad the last chunk to at least this many
  std::optional<int> min_padding;  // pad the last chunk by this many after its end token
  int max_word_length = 8;         // groups this long may be split across chunks
  bool disable_weights = false;    // the whole prompt is one segment of weight 1.0

  static TokenizeOptions clip_l() { return {}; }
  static TokenizeOptions clip_g() {
    TokenizeOptions o;
    o.pad_token = 0;
    return o;
  }
};

// Throws Error(kValidation) for a prompt ComfyUI cannot parse either (parentheses nested over
// 1000 deep), Error(kUsage) for max_length < 3. With no lookup, "embedding:x" is plain text
// (ComfyUI without an embeddings folder); with one, a missing embedding is dropped with a
// warning, as ComfyUI does.
TokenizedPrompt tokenize_with_weights(const ClipBpe& bpe, std::string_view prompt,
                                      const TokenizeOptions& options, EmbeddingLookup* embeddings = nullptr);

}  // namespace sdflow
