#include "models/tokenizer/clip_bpe.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "models/tokenizer/unicode.h"

// Note [CLIP text normalization]
// ComfyUI calls transformers' CLIPTokenizer on each prompt segment. Which implementation that
// is depends on the installed transformers:
//  * transformers >= 5 (and CLIPTokenizerFast): the tokenizers library. Special tokens are cut
//    out of the raw text, case-sensitively; each other stretch is normalized: NFC (with
//    Unicode 9.0 tables: combining marks added later are plain starters to it) → every run of
//    White_Space becomes one space → lowercase each character alone (no final sigma); then
//    the CLIP regex below splits words, and GPT-2's regex (ByteLevel) splits them again, which
//    only changes a word spelling a special token ("<|endoftext|>" written in capitals):
//    "<|", "endoftext", "|>".
//  * transformers 4.x slow tokenizer without ftfy installed (ComfyUI does not install it):
//    special tokens are cut out of the raw text first; each other stretch goes through BERT's
//    BasicTokenizer(strip_accents=False, do_split_on_punc=False): drop NUL, U+FFFD and every
//    C* character but \t \n \r; turn \t \n \r and Zs into spaces; put spaces around CJK
//    ideographs; NFC; split on str.isspace(); str.lower() each piece (with its final-sigma
//    rule); then the CLIP regex. A regex match that spells a special token maps to its id.
//    With ftfy installed the slow tokenizer uses ftfy.fix_text instead; that is not emulated.
// Both then map UTF-8 bytes to printable characters (GPT-2's bytes_to_unicode), end each word
// with "</w>" and apply the merges by rank. The regex, tried at each position in this order:
//   <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d | \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+
// (whitespace matches nothing and is skipped).

namespace sdflow {

namespace {

constexpr std::u32string_view kStartText = U"<|startoftext|>";
constexpr std::u32string_view kEndText = U"<|endoftext|>";

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, std::string("cannot read CLIP ") + what + " '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// GPT-2's reversible byte → printable character map: printable Latin-1 bytes map to
// themselves, the others to U+0100 onward in byte order.
void build_byte_map(char32_t (&byte_to_char)[256]) {
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_to_char[b] = printable ? static_cast<char32_t>(b) : next++;
  }
}

bool is_cjk_ideograph(char32_t c) {
  // The ranges BERT's BasicTokenizer puts spaces around.
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_special_text(std::u32string_view w) { return w == kStartText || w == kEndText; }

// Splits `text` around the special-token strings, in order. Specials come back as pieces of
// their own, flagged.
template <typename Str, typename Fn>
void split_specials(const Str& text, const Str& start, const Str& end, Fn&& piece) {
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t a = text.find(start, pos), b = text.find(end, pos);
    size_t at = std::min(a, b);
    if (at == Str::npos) {
      piece(text.substr(pos), false);
      return;
    }
    if (at > pos) piece(text.substr(pos, at - pos), false);
    const Str& special = (at == a) ? start : end;
    piece(special, true);
    pos = at + special.size();
  }
}

std::u32string python_strip(std::u32string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && unicode::is_python_space(s[b])) ++b;
  while (e > b && unicode::is_python_space(s[e - 1])) --e;
  return std::u32string(s.substr(b, e - b));
}

// The tokenizers backend's normalizer: NFC, runs of White_Space → " ", lowercase per character.
std::u32string normalize_backend(std::string_view text) {
  std::u32string normalized = unicode::nfc(unicode::decode_utf8(text), unicode::NfcVersion::kUnicode9);
  std::u32string collapsed;
  collapsed.reserve(normalized.size());
  bool in_space = false;
  for (char32_t c : normalized) {
    bool space = unicode::is_white_space(c);
    if (!space)
      collapsed.push_back(c);
    else if (!in_space)
      collapsed.push_back(U' ');
    in_space = space;
  }
  return unicode::lower_each(collapsed);
}

// The CLIP pre-tokenizer regex (Note [CLIP text normalization]) on lowercased text; appends
// the matches to `words`.
void split_words(std::u32string_view text, std::vector<std::u32string>& words) {
  using unicode::is_letter;
  using unicode::is_number;
  auto is_space = unicode::is_white_space;
  size_t i = 0, n = text.size();
  while (i < n) {
    std::u32string_view rest = text.substr(i);
    if (rest.substr(0, kStartText.size()) == kStartText || rest.substr(0, kEndText.size()) == kEndText) {
      size_t len = rest[2] == 's' ? kStartText.size() : kEndText.size();
      words.emplace_back(rest.substr(0, len));
      i += len;
      continue;
    }
    char32_t c = text[i];
    if (c == '\'' && i + 1 < n) {
      char32_t c1 = text[i + 1];
      char32_t c2 = i + 2 < n ? text[i + 2] : 0;
      size_t len = 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
        len = 2;
      else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        len = 3;
      if (len != 0) {
        words.emplace_back(text.substr(i, len));
        i += len;
        continue;
      }
    }
    if (is_letter(c)) {
      size_t j = i + 1;
      while (j < n && is_letter(text[j])) ++j;
      words.emplace_back(text.substr(i, j - i));
      i = j;
    } else if (is_number(c)) {
      words.emplace_back(1, c);
      ++i;
    } else if (!is_space(c)) {
      size_t j = i + 1;
      while (j < n && !is_space(text[j]) && !is_letter(text[j]) && !is_number(text[j])) ++j;
      words.emplace_back(text.substr(i, j - i));
      i = j;
    } else {
      ++i;
    }
  }
}

// BERT's BasicTokenizer as CLIPTokenizer configures it, down to its whitespace-separated,
// lowercased pieces.
std::vector<std::u32string> normalize_slow(std::string_view text) {
  std::u32string cleaned;
  for (char32_t c : unicode::decode_utf8(text)) {
    bool keep_ws = c == '\t' || c == '\n' || c == '\r';
    if (c == 0 || c == 0xFFFD || (!keep_ws && unicode::is_other(c))) continue;
    if (c == ' ' || keep_ws || unicode::is_space_separator(c)) {
      cleaned.push_back(U' ');
    } else if (is_cjk_ideograph(c)) {
      cleaned.push_back(U' ');
      cleaned.push_back(c);
      cleaned.push_back(U' ');
    } else {
      cleaned.push_back(c);
    }
  }
  std::u32string normalized = unicode::nfc(cleaned);
  std::vector<std::u32string> pieces;
  size_t i = 0, n = normalized.size();
  while (i < n) {
    while (i < n && unicode::is_python_space(normalized[i])) ++i;
    size_t j = i;
    while (j < n && !unicode::is_python_space(normalized[j])) ++j;
    if (j > i) pieces.push_back(unicode::lower_python(std::u32string_view(normalized).substr(i, j - i)));
    i = j;
  }
  return pieces;
}

}  // namespace

struct ClipBpe::Cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>> words;  // UTF-8 word → symbols
};

ClipBpe::ClipBpe() : cache_(std::make_unique<Cache>()) {}
ClipBpe::ClipBpe(ClipBpe&&) noexcept = default;
ClipBpe& ClipBpe::operator=(ClipBpe&&) noexcept = default;
ClipBpe::~ClipBpe() = default;

ClipBpe ClipBpe::from_files(const std::string& vocab_json_path, const std::string& merges_txt_path,
                            ClipNormalization normalization) {
  std::string vocab = read_file(vocab_json_path, "vocabulary");
  std::string merges = read_file(merges_txt_path, "merges");
  try {
    return from_strings(vocab, merges, normalization);
  } catch (const Error& e) {
    throw Error(e.kind(),
                std::string(e.what()) + " (files '" + vocab_json_path + "', '" + merges_txt_path + "')");
  }
}

ClipBpe ClipBpe::from_strings(std::string_view vocab_json, std::string_view merges_txt,
                              ClipNormalization normalization) {
  ClipBpe bpe;
  bpe.normalization_ = normalization;
  bpe.load(vocab_json, merges_txt);
  return bpe;
}

void ClipBpe::load(std::string_view vocab_json, std::string_view merges_txt) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(vocab_json.begin(), vocab_json.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::kFormat, std::string("CLIP vocab.json is not valid JSON: ") + e.what());
  }
  if (!doc.is_object()) throw Error(ErrorKind::kFormat, "CLIP vocab.json is not an object of token → id");
  int32_t max_id = -1;
  vocab_.reserve(doc.size());
  for (auto& [key, value] : doc.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() > std::numeric_limits<int32_t>::max() / 2)
      throw Error(ErrorKind::kFormat, "CLIP vocab.json: token '" + key + "' has no valid id");
    auto id = static_cast<int32_t>(value.get<int64_t>());
    vocab_[key] = id;
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (auto& [key, id] : vocab_) id_to_token_[static_cast<size_t>(id)] = key;
  auto special = [&](const char* s) {
    auto it = vocab_.find(s);
    if (it == vocab_.end()) throw Error(ErrorKind::kFormat, std::string("CLIP vocab.json has no ") + s);
    return it->second;
  };
  start_token_ = special("<|startoftext|>");
  end_token_ = special("<|endoftext|>");

  build_byte_map(byte_to_char_);
  char_to_byte_.clear();
  std::unordered_map<std::string, int32_t> symbol_of;
  symbol_strings_.clear();
  auto intern = [&](const std::string& s) {
    auto [it, fresh] = symbol_of.emplace(s, static_cast<int32_t>(symbol_strings_.size()));
    if (fresh) symbol_strings_.push_back(s);
    return it->second;
  };
  for (int b = 0; b < 256; ++b) {
    char_to_byte_[byte_to_char_[b]] = static_cast<uint8_t>(b);
    std::string s;
    unicode::append_utf8(s, byte_to_char_[b]);
    intern(s);
  }
  for (int b = 0; b < 256; ++b) intern(symbol_strings_[static_cast<size_t>(b)] + "</w>");

  // merges.txt: a "#version" line, then one "left right" pair per line, best first.
  merges_.clear();
  size_t pos = 0, line_no = 0;
  uint64_t rank = 0;
  while (pos < merges_txt.size()) {
    size_t nl = merges_txt.find('\n', pos);
    if (nl == std::string_view::npos) nl = merges_txt.size();
    std::string_view line = merges_txt.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || line.find(' ', sp + 1) != std::string_view::npos)
      throw Error(ErrorKind::kFormat, "CLIP merges.txt line " + std::to_string(line_no) +
                                          " is not 'left right': '" + std::string(line) + "'");
    std::string left(line.substr(0, sp)), right(line.substr(sp + 1));
    auto l = static_cast<uint64_t>(intern(left));
    auto r = static_cast<uint64_t>(intern(right));
    auto merged = static_cast<uint64_t>(intern(left + right));
    merges_[(l << 32) | r] = (rank << 32) | merged;  // a repeated pair keeps its last rank, as HF does
    ++rank;
  }
  symbol_to_id_.resize(symbol_strings_.size());
  for (size_t i = 0; i < symbol_strings_.size(); ++i) {
    auto it = vocab_.find(symbol_strings_[i]);
    symbol_to_id_[i] = it == vocab_.end() ? end_token_ : it->second;  // the unknown token is <|endoftext|>
  }
}

const std::string& ClipBpe::token_string(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return kEmpty;
  return id_to_token_[static_cast<size_t>(id)];
}

void ClipBpe::bpe_word(const std::u32string& word, std::vector<int32_t>& ids,
                       std::vector<std::string>* strs) const {
  // Symbol b is byte b's printable stand-in, so the word's UTF-8 bytes are its first symbols.
  std::string key = unicode::encode_utf8(word);
  std::vector<int32_t> symbols;
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(key);
    if (it != cache_->words.end()) symbols = it->second;
  }
  if (symbols.empty() && !key.empty()) {
    symbols.reserve(key.size());
    for (size_t i = 0; i < key.size(); ++i) {
      auto b = static_cast<uint8_t>(key[i]);
      symbols.push_back(i + 1 == key.size() ? 256 + b : b);
    }
    // Merge the best-ranked adjacent pair everywhere (left to right), until none is left.
    while (symbols.size() > 1) {
      uint64_t best = std::numeric_limits<uint64_t>::max();
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto it =
            merges_.find((static_cast<uint64_t>(symbols[i]) << 32) | static_cast<uint32_t>(symbols[i + 1]));
        if (it != merges_.end() && (it->second >> 32) < (best >> 32)) best = it->second;
      }
      if (best == std::numeric_limits<uint64_t>::max()) break;
      std::vector<int32_t> next;
      next.reserve(symbols.size());
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size()) {
          auto it =
              merges_.find((static_cast<uint64_t>(symbols[i]) << 32) | static_cast<uint32_t>(symbols[i + 1]));
          if (it != merges_.end() && it->second == best) {
            next.push_back(static_cast<int32_t>(best & 0xFFFFFFFFu));
            ++i;
            continue;
          }
        }
        next.push_back(symbols[i]);
      }
      symbols.swap(next);
    }
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->words.size() > 200000) cache_->words.clear();  // bounds memory for odd inputs
    cache_->words.emplace(key, symbols);
  }
  for (int32_t s : symbols) {
    ids.push_back(symbol_to_id_[static_cast<size_t>(s)]);
    if (strs) strs->push_back(symbol_strings_[static_cast<size_t>(s)]);
  }
}

void ClipBpe::encode_into(std::string_view text, std::vector<int32_t>& ids,
                          std::vector<std::string>* strs) const {
  std::vector<std::u32string> words;
  auto special = [&](std::u32string_view s) {
    int32_t id = s == kStartText ? start_token_ : end_token_;
    ids.push_back(id);
    if (strs) strs->push_back(id_to_token_[static_cast<size_t>(id)]);
  };
  const bool backend = normalization_ == ClipNormalization::kTokenizersBackend;
  auto emit_words = [&]() {
    for (const std::u32string& w : words) {
      if (!is_special_text(w)) {
        bpe_word(w, ids, strs);
      } else if (!backend) {
        special(w);  // the slow tokenizer's BPE cache maps the two strings to themselves
      } else {
        // The backend's ByteLevel pre-tokenizer splits again with GPT-2's regex, which only
        // changes these words: "<|", the letters, "|>".
        bpe_word(std::u32string(w.substr(0, 2)), ids, strs);
        bpe_word(std::u32string(w.substr(2, w.size() - 4)), ids, strs);
        bpe_word(std::u32string(w.substr(w.size() - 2)), ids, strs);
      }
    }
    words.clear();
  };

  // Both tokenizers cut the special tokens out of the raw text first, case-sensitively.
  split_specials(text, std::string_view("<|startoftext|>"), std::string_view("<|endoftext|>"),
                 [&](std::string_view piece, bool is_special) {
                   if (is_special) {
                     special(piece == "<|startoftext|>" ? kStartText : kEndText);
                     return;
                   }
                   if (backend) {
                     split_words(normalize_backend(piece), words);
                   } else {
                     for (const std::u32string& p : normalize_slow(piece)) split_words(p, words);
                   }
                   emit_words();
                 });
}

std::vector<int32_t> ClipBpe::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  encode_into(text, ids, nullptr);
  return ids;
}

std::vector<std::string> ClipBpe::tokenize(std::string_view text) const {
  std::vector<int32_t> ids;
  std::vector<std::string> strs;
  encode_into(text, ids, &strs);
  return strs;
}

std::string ClipBpe::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() ||
        id_to_token_[static_cast<size_t>(id)].empty())
      throw Error(ErrorKind::kUsage, "CLIP token id " + std::to_string(id) + " is not in the vocabulary");
    for (char32_t c : unicode::decode_utf8(id_to_token_[static_cast<size_t>(id)])) {
      auto it = char_to_byte_.find(c);
      if (it != char_to_byte_.end()) {
        bytes.push_back(static_cast<char>(it->second));
      } else {
        unicode::append_utf8(bytes, c);
      }
    }
  }
  std::string text = unicode::encode_utf8(unicode::decode_utf8(bytes));
  std::string replaced;
  replaced.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "</w>") == 0) {
      replaced.push_back(' ');
      i += 4;
    } else {
      replaced.push_back(text[i++]);
    }
  }
  return unicode::encode_utf8(python_strip(unicode::decode_utf8(replaced)));
}

}  // namespace sdflow
