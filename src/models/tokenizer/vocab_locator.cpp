#include "models/tokenizer/vocab_locator.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace sdflow {

namespace fs = std::filesystem;

namespace {

constexpr const char* kEnvVar = "SDFLOW_CLIP_VOCAB";

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// "" when the folder holds both files, else what is missing.
std::string missing_in(const fs::path& dir) {
  if (!is_dir(dir)) return "no such folder";
  bool vocab = is_file(dir / "vocab.json"), merges = is_file(dir / "merges.txt");
  if (vocab && merges) return "";
  if (!vocab && !merges) return "no vocab.json, no merges.txt";
  return vocab ? "no merges.txt" : "no vocab.json";
}

std::string hint() {
  return "Put vocab.json and merges.txt of the OpenAI CLIP tokenizer (ComfyUI's comfy/sd1_tokenizer/ or "
         "openai/clip-vit-large-patch14 on Hugging Face have them) into <models>/tokenizers/clip/, or pass "
         "--clip-vocab DIR, or set " +
         std::string(kEnvVar) + "=DIR.";
}

}  // namespace

std::vector<std::pair<std::string, std::string>> clip_vocab_candidates(const ClipVocabSearch& search) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!search.cli_dir.empty()) out.emplace_back(search.cli_dir, "--clip-vocab");
  std::string env;
  if (search.env_dir) {
    env = *search.env_dir;
  } else if (const char* v = std::getenv(kEnvVar)) {
    env = v;
  }
  if (!env.empty()) out.emplace_back(env, std::string("$") + kEnvVar);
  if (!search.models_dir.empty())
    out.emplace_back((fs::path(search.models_dir) / "tokenizers" / "clip").string(), "models folder");
  if (!search.checkpoint_path.empty()) {
    fs::path ckpt(search.checkpoint_path);
    fs::path base = is_dir(ckpt) ? ckpt : ckpt.parent_path();
    if (base.empty()) base = ".";
    out.emplace_back((base / "tokenizer").string(), "beside the checkpoint");
  }
  return out;
}

ClipVocabFiles locate_clip_vocab(const ClipVocabSearch& search) {
  std::string looked;
  for (const auto& [dir, origin] : clip_vocab_candidates(search)) {
    std::string missing = missing_in(dir);
    if (missing.empty()) {
      fs::path d(dir);
      return {dir, (d / "vocab.json").string(), (d / "merges.txt").string()};
    }
    looked += "\n  " + dir + " (" + origin + "): " + missing;
    if (origin == "--clip-vocab" || origin[0] == '$')
      throw Error(ErrorKind::kModel, "CLIP tokenizer files not found in the folder given by " + origin + ":" +
                                         looked + "\n" + hint());
  }
  if (looked.empty())
    looked = "\n  (no folder to look in: no --clip-vocab, $SDFLOW_CLIP_VOCAB, models folder or checkpoint)";
  throw Error(ErrorKind::kModel,
              "CLIP tokenizer files (vocab.json, merges.txt) not found. Looked in:" + looked + "\n" + hint());
}

}  // namespace sdflow
