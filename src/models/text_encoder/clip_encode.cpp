#include "models/text_encoder/clip_encode.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "core/log.h"

// Note [CLIP encoding]
// ComfyUI encodes a prompt's chunks in one batch (sd1_clip.py):
//  1. If any token weight differs from 1.0, an "empty" sequence
//     [start, end, pad, …] of the chunks' length is appended to the batch.
//  2. process_tokens: integer tokens are looked up; embedding slots (textual inversion) hold
//     their vectors (fp32) at their positions. A vector of the wrong width is dropped with a
//     warning and the sequence is padded at the end with pad-token rows instead. num_tokens =
//     the integer tokens up to and including the first end token, plus every embedding row;
//     the pooled output is row num_tokens − 1 of the final-normed last layer.
//  3. The cond is the last layer (final-normed) for layer "last", else the chosen hidden layer,
//     final-normed only when layer_norm_hidden_state.
//  4. Weights: for every chunk position j with weight w ≠ 1, z[j] = (z[j] − z_empty[j])·w +
//     z_empty[j] in fp32, indexed by the position in the tokenizer's chunk. Pooled outputs are
//     never weighted.
//  5. cond = chunks concatenated along tokens; pooled = the first chunk's.

namespace sdflow {

namespace {

struct Sequence {
  std::vector<int64_t> ids;  // one per position; 0 where an embedding row goes
  std::vector<std::pair<int64_t, at::Tensor>> rows;
  int64_t num_tokens = 0;
};

Sequence make_sequence(const std::vector<WeightedToken>& chunk, const ClipEncoderSpec& spec,
                       const std::vector<at::Tensor>& embeddings, int64_t width) {
  Sequence s;
  bool eos = false;
  int64_t pad_extra = 0;
  for (const WeightedToken& t : chunk) {
    if (t.embedding < 0) {
      if (t.id < 0) throw Error(ErrorKind::kRuntime, "CLIP encode: token slot without id or embedding");
      if (!eos) ++s.num_tokens;
      if (!eos && t.id == spec.end_token) eos = true;
      s.ids.push_back(t.id);
      continue;
    }
    if (static_cast<size_t>(t.embedding) >= embeddings.size() || !embeddings[t.embedding].defined())
      throw Error(ErrorKind::kRuntime,
                  "CLIP encode: no vectors for embedding #" + std::to_string(t.embedding));
    const at::Tensor& e = embeddings[t.embedding];
    const at::Tensor table = e.reshape({-1, e.size(-1)});
    if (t.embedding_row < 0 || t.embedding_row >= table.size(0))
      throw Error(ErrorKind::kRuntime, "CLIP encode: embedding #" + std::to_string(t.embedding) +
                                           " has no row " + std::to_string(t.embedding_row));
    if (table.size(1) != width) {
      log::warn("CLIP encode: embedding of width {} does not fit this text encoder ({}), ignoring it",
                table.size(1), width);
      ++pad_extra;
      continue;
    }
    s.rows.emplace_back(static_cast<int64_t>(s.ids.size()), table[t.embedding_row]);
    s.ids.push_back(0);
    ++s.num_tokens;
  }
  s.ids.insert(s.ids.end(), pad_extra, spec.pad_token);
  return s;
}

bool has_weights(const TokenizedPrompt& prompt) {
  for (const auto& chunk : prompt.chunks)
    for (const WeightedToken& t : chunk)
      if (t.weight != 1.0) return true;
  return false;
}

}  // namespace

ClipEncoderSpec ClipEncoderSpec::sd1_clip_l() {
  ClipEncoderSpec s;
  s.return_projected_pooled = false;
  return s;
}

ClipEncoderSpec ClipEncoderSpec::sdxl_clip_l() {
  ClipEncoderSpec s;
  s.default_layer = -2;
  s.layer_norm_hidden_state = false;
  return s;
}

ClipEncoderSpec ClipEncoderSpec::sdxl_clip_g() {
  ClipEncoderSpec s = sdxl_clip_l();
  s.pad_token = 0;
  return s;
}

ClipEncoderSpec ClipEncoderSpec::sd2_clip_h() {
  ClipEncoderSpec s;
  s.pad_token = 0;
  s.default_layer = -2;
  return s;
}

std::optional<int64_t> effective_clip_layer(const ClipEncoderSpec& spec, std::optional<int64_t> clip_layer,
                                            int64_t layers) {
  if (!clip_layer) return spec.default_layer;
  if (std::llabs(*clip_layer) > layers) return std::nullopt;
  return clip_layer;
}

ClipEncodeResult encode_token_weights(const ClipTextModel& model, const ClipEncoderSpec& spec,
                                      const ClipTokens& tokens, const ClipEncodeOptions& options) {
  const ClipTextConfig& config = model.config();
  const auto& chunks = tokens.prompt.chunks;
  const int64_t sections = static_cast<int64_t>(chunks.size());
  // ComfyUI fails too: its 2-token "empty" sequence does not fit the position embedding.
  if (sections == 0) throw Error(ErrorKind::kRuntime, "CLIP encode: the prompt has no chunks");
  const bool weighted = has_weights(tokens.prompt);
  size_t length = 0;
  for (const auto& chunk : chunks) length = std::max(length, chunk.size());
  for (const auto& chunk : chunks)
    if (chunk.size() != length) throw Error(ErrorKind::kRuntime, "CLIP encode: chunks differ in length");

  std::vector<Sequence> seqs;
  for (const auto& chunk : chunks)
    seqs.push_back(make_sequence(chunk, spec, tokens.embeddings, config.width));
  if (weighted) {
    std::vector<WeightedToken> empty(length, WeightedToken{spec.pad_token});
    empty.at(0).id = spec.start_token;
    empty.at(1).id = spec.end_token;
    seqs.push_back(make_sequence(empty, spec, {}, config.width));
  }

  std::vector<int64_t> ids, num_tokens;
  for (const Sequence& s : seqs) {
    ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    num_tokens.push_back(s.num_tokens);
  }
  const auto S = static_cast<int64_t>(seqs.size());
  at::Tensor embeds = model.embed_tokens(at::tensor(ids, at::kLong).reshape({S, -1}), options.weight_patch);
  for (int64_t i = 0; i < S; ++i)
    for (const auto& [pos, row] : seqs[i].rows) embeds[i][pos].copy_(row.to(embeds.device(), at::kFloat));

  const std::optional<int64_t> layer = effective_clip_layer(spec, options.clip_layer, config.layers);
  ClipTextRunOptions run;
  run.intermediate_layer = layer;
  run.final_layer_norm_intermediate = spec.layer_norm_hidden_state;
  run.check_cancel = options.check_cancel;
  run.weight_patch = options.weight_patch;
  const ClipTextOutput out = model.forward_embeds(embeds, num_tokens, run);
  at::Tensor z = (layer ? out.intermediate : out.last).to(at::kFloat);

  const bool projected =
      spec.return_projected_pooled && !options.unprojected_pooled && out.projected.defined();
  ClipEncodeResult result;
  result.pooled = (projected ? out.projected : out.pooled).narrow(0, 0, 1).to(options.output_device);
  at::Tensor cond = z.narrow(0, 0, sections);
  if (weighted) {
    std::vector<float> w;
    std::vector<uint8_t> changed;
    for (const auto& chunk : chunks)
      for (const WeightedToken& t : chunk) {
        w.push_back(static_cast<float>(t.weight));
        changed.push_back(t.weight != 1.0);
      }
    const at::Tensor wt = at::tensor(w, at::kFloat).reshape({sections, -1, 1}).to(z.device());
    const at::Tensor mask =
        at::tensor(changed, at::kByte).reshape({sections, -1, 1}).to(z.device()).to(at::kBool);
    const at::Tensor empty = z[S - 1];
    cond = at::where(mask, (cond - empty) * wt + empty, cond);
  }
  result.cond = cond.reshape({1, -1, z.size(-1)}).to(options.output_device);
  return result;
}

ClipEncodeResult encode_sd1(const ClipTextModel& clip_l, const ClipTokens& l,
                            const ClipEncodeOptions& options) {
  return encode_token_weights(clip_l, ClipEncoderSpec::sd1_clip_l(), l, options);
}

ClipEncodeResult encode_sd2(const ClipTextModel& clip_h, const ClipTokens& h,
                            const ClipEncodeOptions& options) {
  return encode_token_weights(clip_h, ClipEncoderSpec::sd2_clip_h(), h, options);
}

ClipEncodeResult encode_sdxl(const ClipTextModel& clip_l, const ClipTextModel& clip_g, const ClipTokens& l,
                             const ClipTokens& g, const ClipEncodeOptions& options) {
  ClipEncodeResult gr = encode_token_weights(clip_g, ClipEncoderSpec::sdxl_clip_g(), g, options);
  ClipEncodeResult lr = encode_token_weights(clip_l, ClipEncoderSpec::sdxl_clip_l(), l, options);
  const int64_t cut = std::min(lr.cond.size(1), gr.cond.size(1));
  ClipEncodeResult result;
  result.cond = at::cat({lr.cond.narrow(1, 0, cut), gr.cond.narrow(1, 0, cut)}, -1);
  result.pooled = gr.pooled;
  return result;
}

ClipEncodeResult encode_sdxl_refiner(const ClipTextModel& clip_g, const ClipTokens& g,
                                     const ClipEncodeOptions& options) {
  return encode_token_weights(clip_g, ClipEncoderSpec::sdxl_clip_g(), g, options);
}

}  // namespace sdflow
