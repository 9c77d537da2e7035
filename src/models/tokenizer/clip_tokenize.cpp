#include "models/tokenizer/clip_tokenize.h"

#include <algorithm>

#include "core/error.h"
#include "core/log.h"
#include "models/tokenizer/prompt_weights.h"
#include "models/tokenizer/unicode.h"

// Note [Prompt chunking]
// ComfyUI's SDTokenizer.tokenize_with_weights (comfy/sd1_clip.py, v0.8.0):
//  1. The prompt is split into weighted segments (Note [Prompt weights]).
//  2. Each segment is split before every " embedding:" / "\nembedding:" (the space or newline
//     is dropped); empty parts are dropped. A part that starts with "embedding:" names an
//     embedding when an embeddings folder exists: the name is its first whitespace-separated
//     word, the remaining words (joined by single spaces) are tokenized as text afterwards.
//     A name not found is retried without surrounding commas; then the cut-off tail of the
//     name (counted in characters from the stripped length) goes in front of the leftover
//     text. A missing embedding is dropped with a warning. The embedding's vectors form one
//     token group, each slot with the segment's weight.
//  3. Every other part is tokenized as a whole (start/end tokens removed) into one group.
//  4. Chunks: start with [start]; a group that fits (chunk + group ≤ max_length − 1) is
//     appended. Otherwise a group of ≥ max_word_length (8) tokens fills the chunk, the chunk
//     gets its end token, and the rest continues in the next chunk; a shorter group closes the
//     chunk (end token + padding) and moves whole to the next one. The last chunk gets its end
//     token, then min_padding pads, padding to max_length, padding to min_length.
//     Start, end and pad tokens have weight 1.0.
// Divergences, both where ComfyUI raises or hangs: "embedding:" followed by nothing is dropped
// with a warning (ComfyUI: IndexError), and a short group that cannot fit even an empty chunk
// (only possible with max_length < max_word_length + 2) is split like a long one (ComfyUI
// loops forever).

namespace sdflow {

namespace {

constexpr std::string_view kIdentifier = "embedding:";

std::vector<std::string> split_python_whitespace(std::string_view text) {
  std::vector<std::string> words;
  std::u32string cps = unicode::decode_utf8(text);
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && unicode::is_python_space(cps[i])) ++i;
    size_t j = i;
    while (j < cps.size() && !unicode::is_python_space(cps[j])) ++j;
    if (j > i) words.push_back(unicode::encode_utf8(std::u32string_view(cps).substr(i, j - i)));
    i = j;
  }
  return words;
}

// re.split(" embedding:|\nembedding:", text), then "embedding:" put back on every part but the
// first, and empty parts dropped.
std::vector<std::string> split_embedding_words(const std::string& text) {
  std::vector<std::string> parts;
  size_t pos = 0, from = 0;
  std::string current_prefix;
  while (true) {
    size_t hit = std::string::npos;
    for (size_t p = from; p + 1 + kIdentifier.size() <= text.size(); ++p) {
      if ((text[p] == ' ' || text[p] == '\n') && text.compare(p + 1, kIdentifier.size(), kIdentifier) == 0) {
        hit = p;
        break;
      }
    }
    std::string part =
        current_prefix + text.substr(pos, hit == std::string::npos ? std::string::npos : hit - pos);
    if (!part.empty()) parts.push_back(std::move(part));
    if (hit == std::string::npos) break;
    pos = from = hit + 1 + kIdentifier.size();
    current_prefix = std::string(kIdentifier);
  }
  return parts;
}

std::string strip_commas(const std::string& s) {
  size_t b = s.find_first_not_of(',');
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(',');
  return s.substr(b, e - b + 1);
}

// Python's s[n:] with n counted in characters.
std::string substr_chars(const std::string& s, size_t n) {
  std::u32string cps = unicode::decode_utf8(s);
  if (n >= cps.size()) return "";
  return unicode::encode_utf8(std::u32string_view(cps).substr(n));
}

class GroupBuilder {
 public:
  GroupBuilder(const ClipBpe& bpe, EmbeddingLookup* lookup, TokenizedPrompt& result)
      : bpe_(bpe), lookup_(lookup), result_(result) {}

  void add_segment(const WeightedSegment& seg) {
    for (std::string word : split_embedding_words(seg.text)) {
      if (lookup_ != nullptr && word.compare(0, kIdentifier.size(), kIdentifier) == 0) {
        std::string leftover;
        if (!add_embedding(word.substr(kIdentifier.size()), seg.weight, leftover)) continue;
        word = std::move(leftover);
      }
      std::vector<WeightedToken> group;
      for (int32_t id : bpe_.encode(word)) group.push_back({id, seg.weight, -1, 0});
      groups_.push_back(std::move(group));
    }
  }

  std::vector<std::vector<WeightedToken>>& groups() { return groups_; }

 private:
  // Returns whether text is left over to tokenize (in `leftover`).
  bool add_embedding(const std::string& rest, double weight, std::string& leftover) {
    std::vector<std::string> words = split_python_whitespace(rest);
    if (words.empty()) {
      log::warn("prompt: 'embedding:' names no embedding, ignoring it");
      return false;
    }
    std::string name = words[0];
    for (size_t i = 1; i < words.size(); ++i) leftover += (i > 1 ? " " : "") + words[i];
    std::optional<int> vectors = lookup_->vectors_for(name);
    std::string found = name;
    if (!vectors) {
      std::string stripped = strip_commas(name);
      if (stripped.size() < name.size()) {
        if (!stripped.empty()) vectors = lookup_->vectors_for(stripped);
        found = stripped;
        leftover = substr_chars(name, unicode::decode_utf8(stripped).size()) + " " + leftover;
      }
    }
    if (!vectors) {
      log::warn("prompt: embedding:{} does not exist, ignoring it", name);
    } else {
      int index = embedding_index(found);
      std::vector<WeightedToken> group;
      for (int row = 0; row < *vectors; ++row) group.push_back({-1, weight, index, row});
      groups_.push_back(std::move(group));
    }
    return !leftover.empty();
  }

  int embedding_index(const std::string& name) {
    auto& names = result_.embeddings;
    auto it = std::find(names.begin(), names.end(), name);
    if (it != names.end()) return static_cast<int>(it - names.begin());
    names.push_back(name);
    return static_cast<int>(names.size() - 1);
  }

  const ClipBpe& bpe_;
  EmbeddingLookup* lookup_;
  TokenizedPrompt& result_;
  std::vector<std::vector<WeightedToken>> groups_;
};

}  // namespace

TokenizedPrompt tokenize_with_weights(const ClipBpe& bpe, std::string_view prompt,
                                      const TokenizeOptions& options, EmbeddingLookup* embeddings) {
  if (options.max_length < 3)
    throw Error(ErrorKind::kUsage, "CLIP tokenizer: max_length must be at least 3 (got " +
                                       std::to_string(options.max_length) + ")");
  TokenizedPrompt result;
  GroupBuilder builder(bpe, embeddings, result);
  for (const WeightedSegment& seg : parse_prompt_weights(prompt, options.disable_weights))
    builder.add_segment(seg);

  const auto max_length = static_cast<size_t>(options.max_length);
  const WeightedToken start{bpe.start_token(), 1.0, -1, 0};
  const WeightedToken end{bpe.end_token(), 1.0, -1, 0};
  const WeightedToken pad{options.pad_token, 1.0, -1, 0};
  auto pad_by = [&](std::vector<WeightedToken>& chunk, size_t n) { chunk.insert(chunk.end(), n, pad); };

  auto& chunks = result.chunks;
  chunks.push_back({start});
  for (const std::vector<WeightedToken>& group : builder.groups()) {
    bool is_large = group.size() >= static_cast<size_t>(std::max(options.max_word_length, 0));
    size_t pos = 0;
    while (pos < group.size()) {
      std::vector<WeightedToken>* chunk = &chunks.back();
      size_t left = group.size() - pos;
      if (left + chunk->size() <= max_length - 1) {
        chunk->insert(chunk->end(), group.begin() + static_cast<std::ptrdiff_t>(pos), group.end());
        break;
      }
      size_t room = max_length - chunk->size() - 1;
      if (is_large || chunk->size() == 1) {
        auto from = group.begin() + static_cast<std::ptrdiff_t>(pos);
        chunk->insert(chunk->end(), from, from + static_cast<std::ptrdiff_t>(room));
        pos += room;
        chunk->push_back(end);
      } else {
        chunk->push_back(end);
        if (options.pad_to_max_length) pad_by(*chunk, room);
      }
      chunks.push_back({start});
    }
  }
  std::vector<WeightedToken>& last = chunks.back();
  last.push_back(end);
  if (options.min_padding && *options.min_padding > 0)
    pad_by(last, static_cast<size_t>(*options.min_padding));
  if (options.pad_to_max_length && last.size() < max_length) pad_by(last, max_length - last.size());
  if (options.min_length && last.size() < static_cast<size_t>(std::max(*options.min_length, 0)))
    pad_by(last, static_cast<size_t>(*options.min_length) - last.size());
  return result;
}

}  // namespace sdflow
