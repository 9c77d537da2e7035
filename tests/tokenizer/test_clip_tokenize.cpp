#include <gtest/gtest.h>

#include <map>

#include "clip_vocab_fixture.h"
#include "core/error.h"
#include "models/tokenizer/clip_tokenize.h"

namespace sdflow {
namespace {

using sdflow::testing::shared_clip_bpe;
using Ids = std::vector<int32_t>;

constexpr int32_t kStart = 49406, kEnd = 49407, kCat = 2368, kA = 320, kB = 321;

Ids ids_of(const std::vector<WeightedToken>& chunk) {
  Ids out;
  for (const auto& t : chunk) out.push_back(t.id);
  return out;
}

std::string repeat(const std::string& word, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? " " : "") + word;
  return s;
}

class FakeEmbeddings : public EmbeddingLookup {
 public:
  std::map<std::string, int> rows{{"foo", 2}, {"one", 1}};
  std::vector<std::string> asked;
  std::optional<int> vectors_for(const std::string& name) override {
    asked.push_back(name);
    auto it = rows.find(name);
    if (it == rows.end()) return std::nullopt;
    return it->second;
  }
};

TEST(ClipTokenize, OnePromptOneChunk) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  TokenizedPrompt l = tokenize_with_weights(*bpe, "a photo of a cat", TokenizeOptions::clip_l());
  ASSERT_EQ(l.chunks.size(), 1u);
  Ids expected{kStart, 320, 1125, 539, 320, kCat, kEnd};
  expected.resize(77, kEnd);  // CLIP-L pads with its end token
  EXPECT_EQ(ids_of(l.chunks[0]), expected);
  for (const auto& t : l.chunks[0]) {
    EXPECT_EQ(t.weight, 1.0);
    EXPECT_EQ(t.embedding, -1);
  }
  TokenizedPrompt g = tokenize_with_weights(*bpe, "a photo of a cat", TokenizeOptions::clip_g());
  expected.resize(7);
  expected.resize(77, 0);  // CLIP-G pads with 0
  EXPECT_EQ(ids_of(g.chunks[0]), expected);
}

TEST(ClipTokenize, EmptyPrompt) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  TokenizedPrompt t = tokenize_with_weights(*bpe, "", TokenizeOptions::clip_l());
  ASSERT_EQ(t.chunks.size(), 1u);
  Ids expected{kStart};
  expected.resize(77, kEnd);
  EXPECT_EQ(ids_of(t.chunks[0]), expected);
}

TEST(ClipTokenize, WeightsFollowSegments) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  TokenizedPrompt t = tokenize_with_weights(*bpe, "((a)) (cat:1.25) b", TokenizeOptions::clip_l());
  const auto& c = t.chunks[0];
  EXPECT_EQ(ids_of(c).size(), 77u);
  EXPECT_EQ(c[1].id, kA);
  EXPECT_EQ(c[1].weight, 1.1 * 1.1);
  EXPECT_EQ(c[2].id, kCat);
  EXPECT_EQ(c[2].weight, 1.25);
  EXPECT_EQ(c[3].id, kB);
  EXPECT_EQ(c[3].weight, 1.0);
  EXPECT_EQ(c[4].id, kEnd);
  EXPECT_EQ(c[4].weight, 1.0);
}

TEST(ClipTokenize, LongPromptSplitsAfter75Tokens) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  // One unweighted segment is one group, so it is cut exactly every 75 tokens.
  TokenizedPrompt t = tokenize_with_weights(*bpe, repeat("cat", 200), TokenizeOptions::clip_l());
  ASSERT_EQ(t.chunks.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    Ids ids = ids_of(t.chunks[k]);
    ASSERT_EQ(ids.size(), 77u);
    EXPECT_EQ(ids.front(), kStart);
    size_t cats = k < 2 ? 75 : 50;
    for (size_t i = 1; i <= cats; ++i) EXPECT_EQ(ids[i], kCat) << k << ":" << i;
    EXPECT_EQ(ids[cats + 1], kEnd);
    for (size_t i = cats + 2; i < 77; ++i) EXPECT_EQ(ids[i], kEnd);  // padding
  }
  EXPECT_EQ(tokenize_with_weights(*bpe, repeat("cat", 75), {}).chunks.size(), 1u);
  EXPECT_EQ(tokenize_with_weights(*bpe, repeat("cat", 76), {}).chunks.size(), 2u);
  TokenizedPrompt g = tokenize_with_weights(*bpe, repeat("cat", 200), TokenizeOptions::clip_g());
  EXPECT_EQ(ids_of(g.chunks[2])[52], 0);
}

TEST(ClipTokenize, ShortGroupsMoveWholeToTheNextChunk) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  // 72 tokens, then a weighted group of 5 that does not fit (1 + 72 + 5 > 76).
  TokenizedPrompt t = tokenize_with_weights(*bpe, repeat("cat", 72) + " (a b a b a:1.1)", {});
  ASSERT_EQ(t.chunks.size(), 2u);
  Ids first = ids_of(t.chunks[0]);
  EXPECT_EQ(first[72], kCat);
  EXPECT_EQ(first[73], kEnd);
  EXPECT_EQ(first[76], kEnd);
  const auto& second = t.chunks[1];
  EXPECT_EQ(second[0].id, kStart);
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(second[static_cast<size_t>(i)].weight, 1.1);
  EXPECT_EQ(second[6].id, kEnd);
  EXPECT_EQ(second.size(), 77u);
}

TEST(ClipTokenize, LongGroupsAreSplitAtTheChunkEnd) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  // 70 tokens, then a weighted group of 9 (≥ 8): 5 fill the chunk, 4 continue.
  TokenizedPrompt t = tokenize_with_weights(*bpe, repeat("cat", 70) + " (" + repeat("a", 9) + ":0.5)", {});
  ASSERT_EQ(t.chunks.size(), 2u);
  const auto& first = t.chunks[0];
  ASSERT_EQ(first.size(), 77u);
  for (int i = 71; i <= 75; ++i) EXPECT_EQ(first[static_cast<size_t>(i)].weight, 0.5);
  EXPECT_EQ(first[76].id, kEnd);
  const auto& second = t.chunks[1];
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(second[static_cast<size_t>(i)].weight, 0.5);
  EXPECT_EQ(second[5].id, kEnd);
  EXPECT_EQ(second[5].weight, 1.0);
}

TEST(ClipTokenize, PaddingOptions) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  TokenizeOptions o;
  o.pad_to_max_length = false;
  EXPECT_EQ(ids_of(tokenize_with_weights(*bpe, "a cat", o).chunks[0]), (Ids{kStart, kA, kCat, kEnd}));
  o.min_padding = 2;
  EXPECT_EQ(ids_of(tokenize_with_weights(*bpe, "a cat", o).chunks[0]),
            (Ids{kStart, kA, kCat, kEnd, kEnd, kEnd}));
  o.min_padding.reset();
  o.min_length = 6;
  o.pad_token = 0;
  EXPECT_EQ(ids_of(tokenize_with_weights(*bpe, "a cat", o).chunks[0]), (Ids{kStart, kA, kCat, kEnd, 0, 0}));
  o.max_length = 2;
  EXPECT_THROW(tokenize_with_weights(*bpe, "a cat", o), Error);
}

TEST(ClipTokenize, DisableWeights) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  TokenizeOptions o;
  o.disable_weights = true;
  o.pad_to_max_length = false;
  TokenizedPrompt t = tokenize_with_weights(*bpe, "(cat:1.5)", o);
  Ids expected{kStart};
  for (int32_t id : bpe->encode("(cat:1.5)")) expected.push_back(id);
  expected.push_back(kEnd);
  EXPECT_EQ(ids_of(t.chunks[0]), expected);
  for (const auto& tok : t.chunks[0]) EXPECT_EQ(tok.weight, 1.0);
}

TEST(ClipTokenize, Embeddings) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  TokenizeOptions o;
  o.pad_to_max_length = false;
  FakeEmbeddings emb;
  TokenizedPrompt t = tokenize_with_weights(*bpe, "a embedding:foo b", o, &emb);
  ASSERT_EQ(t.chunks[0].size(), 6u);
  EXPECT_EQ(t.embeddings, (std::vector<std::string>{"foo"}));
  EXPECT_EQ(t.chunks[0][1].id, kA);
  for (int row = 0; row < 2; ++row) {
    const WeightedToken& slot = t.chunks[0][static_cast<size_t>(2 + row)];
    EXPECT_EQ(slot.id, -1);
    EXPECT_EQ(slot.embedding, 0);
    EXPECT_EQ(slot.embedding_row, row);
  }
  EXPECT_EQ(t.chunks[0][4].id, kB);

  // The slots carry the segment's weight; the same embedding keeps its index.
  t = tokenize_with_weights(*bpe, "(embedding:foo:1.3) embedding:one embedding:foo", o, &emb);
  EXPECT_EQ(t.embeddings, (std::vector<std::string>{"foo", "one"}));
  ASSERT_EQ(t.chunks[0].size(), 2u + 2 + 1 + 2);
  EXPECT_EQ(t.chunks[0][1].weight, 1.3);
  EXPECT_EQ(t.chunks[0][3].embedding, 1);
  EXPECT_EQ(t.chunks[0][4].embedding, 0);
}

TEST(ClipTokenize, EmbeddingNamesAsComfyUIReadsThem) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  TokenizeOptions o;
  o.pad_to_max_length = false;
  auto ids = [&](const std::string& prompt, EmbeddingLookup* lookup) {
    return ids_of(tokenize_with_weights(*bpe, prompt, o, lookup).chunks[0]);
  };
  FakeEmbeddings emb;
  // Missing: dropped with a warning, the rest is kept.
  EXPECT_EQ(ids("a embedding:nope b", &emb), (Ids{kStart, kA, kB, kEnd}));
  // "foo," is not found, "foo" is; the commas go back in front of the leftover text.
  int32_t comma = bpe->encode(",")[0];
  EXPECT_EQ(ids("embedding:foo, b", &emb), (Ids{kStart, -1, -1, comma, kB, kEnd}));
  EXPECT_EQ(emb.asked, (std::vector<std::string>{"nope", "foo,", "foo"}));
  // Only after a space or a newline, or at the start of a segment.
  EXPECT_EQ(ids("a\nembedding:foo", &emb), (Ids{kStart, kA, -1, -1, kEnd}));
  Ids glued = ids("xembedding:foo", &emb);
  EXPECT_EQ(glued.size(), bpe->encode("xembedding:foo").size() + 2);
  // Without an embeddings folder the words are plain text.
  Ids text{kStart};
  for (int32_t id : bpe->encode("embedding:foo")) text.push_back(id);
  text.push_back(kEnd);
  EXPECT_EQ(ids("embedding:foo", nullptr), text);
  // A bare "embedding:" is dropped (ComfyUI raises IndexError there).
  EXPECT_EQ(ids("a embedding:", &emb), (Ids{kStart, kA, kEnd}));
}

TEST(ClipTokenize, EmbeddingGroupsChunkLikeWords) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  FakeEmbeddings emb;
  emb.rows["big"] = 10;
  // 70 tokens, then a 10-vector embedding (a large group): split at the chunk end.
  TokenizedPrompt t = tokenize_with_weights(*bpe, repeat("cat", 70) + " embedding:big", {}, &emb);
  ASSERT_EQ(t.chunks.size(), 2u);
  EXPECT_EQ(t.chunks[0][75].embedding_row, 4);
  EXPECT_EQ(t.chunks[1][1].embedding_row, 5);
  EXPECT_EQ(t.chunks[1][6].id, kEnd);
}

}  // namespace
}  // namespace sdflow
