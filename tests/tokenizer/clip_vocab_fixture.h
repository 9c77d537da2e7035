// The real CLIP vocabulary for tests. It is not in the repository: tests read it from
// SDFLOW_SHARED_DIR/data/clip-tokenizer and skip when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "models/tokenizer/clip_bpe.h"

namespace sdflow::testing {

inline std::string clip_vocab_dir() { return std::string(SDFLOW_SHARED_DIR) + "/data/clip-tokenizer"; }

// One loaded vocabulary per normalization for the whole test binary; nullptr when the files
// are missing.
inline const ClipBpe* shared_clip_bpe(
    ClipNormalization normalization = ClipNormalization::kTokenizersBackend) {
  static std::mutex mutex;
  static std::map<ClipNormalization, std::unique_ptr<ClipBpe>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = loaded.find(normalization);
  if (it != loaded.end()) return it->second.get();
  std::string dir = clip_vocab_dir();
  std::unique_ptr<ClipBpe> bpe;
  if (std::filesystem::is_regular_file(dir + "/vocab.json") &&
      std::filesystem::is_regular_file(dir + "/merges.txt"))
    bpe = std::make_unique<ClipBpe>(
        ClipBpe::from_files(dir + "/vocab.json", dir + "/merges.txt", normalization));
  return (loaded[normalization] = std::move(bpe)).get();
}

}  // namespace sdflow::testing

#define SDFLOW_REQUIRE_CLIP_VOCAB(bpe)                                                                     \
  if ((bpe) == nullptr)                                                                                    \
  GTEST_SKIP() << "CLIP vocab (vocab.json, merges.txt) not found in " << sdflow::testing::clip_vocab_dir() \
               << "; it is not part of the repository"
