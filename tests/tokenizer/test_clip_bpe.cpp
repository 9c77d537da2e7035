#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "clip_vocab_fixture.h"
#include "core/error.h"
#include "models/tokenizer/clip_bpe.h"

namespace sdflow {
namespace {

using Ids = std::vector<int32_t>;
using Strs = std::vector<std::string>;
using sdflow::testing::shared_clip_bpe;

constexpr auto kFast = ClipNormalization::kTokenizersBackend;
constexpr auto kSlow = ClipNormalization::kPythonSlow;

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A vocabulary small enough to reason about: only "ab" merges.
ClipBpe tiny_bpe() {
  return ClipBpe::from_strings(
      R"({"a": 1, "b": 2, "a</w>": 3, "b</w>": 4, "ab</w>": 5, "<|startoftext|>": 6, "<|endoftext|>": 7})",
      "#version: 0.2\na b</w>\n");
}

TEST(ClipBpeTiny, MergesAndUnknown) {
  ClipBpe bpe = tiny_bpe();
  EXPECT_EQ(bpe.encode("ab"), (Ids{5}));
  EXPECT_EQ(bpe.encode("ba"), (Ids{2, 3}));
  EXPECT_EQ(bpe.encode("AB ab"), (Ids{5, 5}));
  EXPECT_EQ(bpe.encode("c"), (Ids{7}));  // not in the vocabulary: the unknown token (<|endoftext|>)
  EXPECT_EQ(bpe.start_token(), 6);
  EXPECT_EQ(bpe.end_token(), 7);
  EXPECT_EQ(bpe.vocab_size(), 7u);
  EXPECT_EQ(bpe.tokenize("ab ba"), (Strs{"ab</w>", "b", "a</w>"}));
  EXPECT_EQ(bpe.decode({5, 2, 3}), "ab ba");
  EXPECT_EQ(bpe.token_string(5), "ab</w>");
  EXPECT_EQ(bpe.token_string(99), "");
}

TEST(ClipBpeTiny, MalformedFilesAreFormatErrors) {
  auto kind_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kRuntime;
  };
  EXPECT_EQ(kind_of([] { ClipBpe::from_strings("{not json", "#version: 0.2\n"); }), ErrorKind::kFormat);
  EXPECT_EQ(kind_of([] { ClipBpe::from_strings("[1, 2]", ""); }), ErrorKind::kFormat);
  EXPECT_EQ(kind_of([] { ClipBpe::from_strings(R"({"a": 1, "<|startoftext|>": 2})", ""); }),
            ErrorKind::kFormat);
  EXPECT_EQ(
      kind_of([] { ClipBpe::from_strings(R"({"a": "x", "<|startoftext|>": 2, "<|endoftext|>": 3})", ""); }),
      ErrorKind::kFormat);
  EXPECT_EQ(kind_of([] {
              ClipBpe::from_strings(R"({"<|startoftext|>": 2, "<|endoftext|>": 3})",
                                    "#version: 0.2\na b c\n");
            }),
            ErrorKind::kFormat);
  EXPECT_EQ(kind_of([] { ClipBpe::from_files("/nonexistent/vocab.json", "/nonexistent/merges.txt"); }),
            ErrorKind::kIo);
  EXPECT_THROW(tiny_bpe().decode({42}), Error);
}

TEST(ClipBpe, KnownIds) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  EXPECT_EQ(bpe->vocab_size(), 49408u);
  EXPECT_EQ(bpe->start_token(), 49406);
  EXPECT_EQ(bpe->end_token(), 49407);
  // The well-known CLIP ids ([49406, ..., 49407] once the tokenizer adds start and end).
  EXPECT_EQ(bpe->encode("a photo of a cat"), (Ids{320, 1125, 539, 320, 2368}));
  EXPECT_EQ(bpe->tokenize("a photo of a cat"), (Strs{"a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"}));
  EXPECT_EQ(bpe->encode("dog"), (Ids{1929}));
  EXPECT_EQ(bpe->encode(","), (Ids{267}));
  EXPECT_EQ(bpe->token_string(49406), "<|startoftext|>");
}

TEST(ClipBpe, CaseAndWhitespaceDoNotMatter) {
  for (auto mode : {kFast, kSlow}) {
    const ClipBpe* bpe = shared_clip_bpe(mode);
    SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
    Ids ref = bpe->encode("a photo of a cat");
    EXPECT_EQ(bpe->encode("A  PHOTO\tof\na CAT "), ref);
    EXPECT_EQ(bpe->encode("\u3000a\u00a0photo of\u2028a cat"), ref);
    EXPECT_TRUE(bpe->encode("").empty());
    EXPECT_TRUE(bpe->encode(" \n\t ").empty());
  }
}

TEST(ClipBpe, PreTokenizerRules) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  EXPECT_EQ(bpe->tokenize("it's"), (Strs{"it</w>", "'s</w>"}));
  EXPECT_EQ(bpe->encode("it's"), (Ids{585, 568}));
  // Numbers split into single digits.
  EXPECT_EQ(bpe->tokenize("2026"), (Strs{"2</w>", "0</w>", "2</w>", "6</w>"}));
  // Runs of punctuation stay together; letters end them.
  EXPECT_EQ(bpe->encode("a,b"), concat({bpe->encode("a"), bpe->encode(","), bpe->encode("b")}));
  EXPECT_EQ(bpe->tokenize("!'s").front(), "!'</w>");  // "'s" only counts where a match starts
  // Special-token text becomes the special id and splits the words around it.
  EXPECT_EQ(bpe->encode("hello<|endoftext|>world"),
            concat({bpe->encode("hello"), Ids{49407}, bpe->encode("world")}));
  EXPECT_EQ(bpe->encode("<|startoftext|>"), (Ids{49406}));
}

TEST(ClipBpe, SpecialTokensInCapitals) {
  // Both tokenizers cut special tokens out of the raw text, case-sensitively. Written in
  // capitals, the text is lowercased and reaches the regex as "<|endoftext|>": the slow
  // tokenizer maps that word to the special id, the backend splits it again into "<|",
  // "endoftext", "|>" (checked against ComfyUI 0.8.0 with transformers 5.17).
  const ClipBpe* fast = shared_clip_bpe(kFast);
  const ClipBpe* slow = shared_clip_bpe(kSlow);
  SDFLOW_REQUIRE_CLIP_VOCAB(fast);
  EXPECT_EQ(fast->encode("a <|ENDOFTEXT|> b"), (Ids{320, 27, 347, 40786, 4160, 91, 285, 321}));
  EXPECT_EQ(slow->encode("a <|ENDOFTEXT|> b"), (Ids{320, 49407, 321}));
  for (const ClipBpe* bpe : {fast, slow}) {
    EXPECT_EQ(bpe->encode("a <|endoftext|> b"), (Ids{320, 49407, 321}));
    EXPECT_EQ(bpe->encode("!<|endoftext|>"), (Ids{bpe->encode("!")[0], 49407}));
  }
  // In the slow tokenizer, punctuation before capitals swallows their "<|".
  EXPECT_NE(slow->encode("!<|ENDOFTEXT|>"), (Ids{slow->encode("!")[0], 49407}));
}

TEST(ClipBpe, UnicodeRoundTrips) {
  for (auto mode : {kFast, kSlow}) {
    const ClipBpe* bpe = shared_clip_bpe(mode);
    SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
    for (const char* text : {"a photo of a cat", "café naïve résumé", "タワー 서울",
                             "👍🏽 ❤️ 🇫🇷", "ελληνικά", "привет мир"}) {
      EXPECT_EQ(bpe->decode(bpe->encode(text)), text) << text;
    }
    // The slow tokenizer splits ideographs apart and drops the zero-width joiner.
    std::string cjk = "東京 👩‍👩‍👧";
    EXPECT_EQ(bpe->decode(bpe->encode(cjk)), mode == kFast ? cjk : "東 京 👩👩👧");
    // Decomposed accents are composed first (NFC).
    EXPECT_EQ(bpe->encode("cafe\u0301"), bpe->encode("caf\u00e9"));
    EXPECT_EQ(bpe->encode("\u212b"), bpe->encode("\u00e5"));
  }
}

TEST(ClipBpe, NormalizationsDifferOnlyWhereTransformersDoes) {
  const ClipBpe* fast = shared_clip_bpe(kFast);
  const ClipBpe* slow = shared_clip_bpe(kSlow);
  SDFLOW_REQUIRE_CLIP_VOCAB(fast);
  // BasicTokenizer drops format characters (zero-width space, ZWJ); the backend keeps them.
  EXPECT_EQ(slow->encode("zero\u200bwidth"), slow->encode("zerowidth"));
  EXPECT_EQ(fast->encode("zero\u200bwidth"),
            concat({fast->encode("zero"), fast->encode("\u200b"), fast->encode("width")}));
  // BasicTokenizer puts spaces around CJK ideographs; the backend keeps runs of letters.
  EXPECT_EQ(slow->encode("猫咪"), concat({slow->encode("猫"), slow->encode("咪")}));
  EXPECT_NE(fast->encode("猫咪"), concat({fast->encode("猫"), fast->encode("咪")}));
  // str.lower() has the final-sigma rule, per-character lowercasing does not.
  EXPECT_EQ(slow->encode("ΟΔΟΣ"), slow->encode("οδος"));
  EXPECT_EQ(fast->encode("ΟΔΟΣ"), fast->encode("οδοσ"));
  // Both agree on ordinary prompts.
  const char* prompt = "masterpiece, best quality, 1girl, solo, long_hair, (ultra detailed:1.2), café, 👍";
  EXPECT_EQ(slow->encode(prompt), fast->encode(prompt));
}

TEST(ClipBpe, ThousandPromptsAreFast) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  std::vector<std::string> prompts;
  const char* words[] = {"masterpiece", "best",      "quality",  "portrait", "of",       "a",
                         "woman",       "cinematic", "lighting", "highly",   "detailed", "sharp",
                         "focus",       "castle",    "dragon",   "sunset",   "8k",       "photo"};
  for (int i = 0; i < 1000; ++i) {
    std::string p;
    for (int w = 0; w < 40; ++w) p += std::string(words[(i * 7 + w * 13) % 18]) + (w % 5 == 4 ? ", " : " ");
    prompts.push_back(p);
  }
  auto t0 = std::chrono::steady_clock::now();
  size_t total = 0;
  for (const auto& p : prompts) total += bpe->encode(p).size();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(total, 40000u);
  EXPECT_LT(seconds, 2.0) << "1000 prompts took " << seconds << " s";
  std::cout << "[ timing ] 1000 prompts (" << total << " tokens): " << seconds * 1000 << " ms\n";
}

TEST(ClipBpe, ConcurrentEncodingAgrees) {
  const ClipBpe* bpe = shared_clip_bpe();
  SDFLOW_REQUIRE_CLIP_VOCAB(bpe);
  const std::string prompt =
      "a watercolor painting of unusual xylophones and quizzical zebras, 猫, 👍🏽";
  Ids expected = bpe->encode(prompt);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int good = 0;
      for (int i = 0; i < 200; ++i)
        good += bpe->encode(prompt + " word" + std::to_string(i % 17)).size() > expected.size();
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (int v : ok) EXPECT_EQ(v, 200);
  EXPECT_EQ(bpe->encode(prompt), expected);
}

}  // namespace
}  // namespace sdflow
