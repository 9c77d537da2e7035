// OpenAI CLIP's byte-level BPE as Hugging Face's CLIPTokenizer runs it for ComfyUI: text
// cleanup, the CLIP pre-tokenization regex, bytes → unicode, "</w>" word ends, merge ranks.
// See Note [CLIP text normalization] in clip_bpe.cpp for the two cleanups ComfyUI can get.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sdflow {

// Which CLIPTokenizer ComfyUI's transformers gives it; they differ only on unusual text
// (control characters, CJK ideographs, "<|endoftext|>" written in capitals).
enum class ClipNormalization {
  kTokenizersBackend,  // transformers >= 5 (tokenizers library): NFC, \s+ → " ", lowercase
  kPythonSlow,         // transformers 4.x slow tokenizer without ftfy (BasicTokenizer cleanup)
};

// Thread-safety: encode() and decode() may be called from several threads at once (the word
// cache is guarded by a mutex). Move-only.
class ClipBpe {
 public:
  // Throws Error(kIo) when a file cannot be read, Error(kFormat) when one is malformed or the
  // vocabulary lacks <|startoftext|> / <|endoftext|>.
  static ClipBpe from_files(const std::string& vocab_json_path, const std::string& merges_txt_path,
                            ClipNormalization normalization = ClipNormalization::kTokenizersBackend);
  static ClipBpe from_strings(std::string_view vocab_json, std::string_view merges_txt,
                              ClipNormalization normalization = ClipNormalization::kTokenizersBackend);

  ClipBpe(ClipBpe&&) noexcept;
  ClipBpe& operator=(ClipBpe&&) noexcept;
  ~ClipBpe();

  // Token ids of `text` (UTF-8) without the start and end tokens the HF tokenizer adds.
  std::vector<int32_t> encode(std::string_view text) const;
  // The BPE token strings (vocabulary keys) encode() looks up, for tests and debugging.
  std::vector<std::string> tokenize(std::string_view text) const;
  // HF's decode without skipping special tokens: bytes back to UTF-8 (invalid sequences become
  // U+FFFD), "</w>" → " ", stripped.
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t start_token() const { return start_token_; }
  int32_t end_token() const { return end_token_; }
  size_t vocab_size() const { return vocab_.size(); }
  ClipNormalization normalization() const { return normalization_; }
  // The vocabulary key of an id, or "" when the id is not in the vocabulary.
  const std::string& token_string(int32_t id) const;

 private:
  struct Cache;
  ClipBpe();
  void load(std::string_view vocab_json, std::string_view merges_txt);
  void bpe_word(const std::u32string& word, std::vector<int32_t>& ids, std::vector<std::string>* strs) const;
  void encode_into(std::string_view text, std::vector<int32_t>& ids, std::vector<std::string>* strs) const;

  ClipNormalization normalization_ = ClipNormalization::kTokenizersBackend;
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  int32_t start_token_ = -1;
  int32_t end_token_ = -1;
  // BPE runs on symbols: 0..255 are single bytes, 256..511 the same with "</w>", then every
  // merge result. merges_ maps (left << 32 | right) to (rank << 32 | merged symbol).
  std::vector<std::string> symbol_strings_;
  std::vector<int32_t> symbol_to_id_;
  std::unordered_map<uint64_t, uint64_t> merges_;
  char32_t byte_to_char_[256] = {};
  std::unordered_map<char32_t, uint8_t> char_to_byte_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace sdflow
