#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/log.h"

namespace sdflow {

namespace {

using nlohmann::json;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I64, "I64", 8},   {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},     {DType::U8, "U8", 1},           {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& entry_for(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  throw Error(ErrorKind::kUsage, "invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

// A valid header nests three levels (object → tensor entry → shape array); the cap leaves room
// for unknown extension fields while keeping a hostile "[[[[..." from building a huge tree.
constexpr size_t kMaxJsonDepth = 8;

// nlohmann's messages quote the offending input, which may be arbitrary bytes; error messages
// end up in JSON reports, so keep them printable ASCII.
std::string printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = '?';
  }
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Parses the header JSON, rejecting duplicate keys (parsers disagree on which one wins, so a
// file could mean different things to different readers) and excessive nesting.
json parse_header_json(const uint8_t* first, const uint8_t* last, const std::string& label) {
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore whatever follows;
  // valid JSON never contains one, so reject it rather than read a different header than others.
  if (const void* nul = std::memchr(first, 0, static_cast<size_t>(last - first))) {
    throw Error(ErrorKind::kFormat, label + ": header is not valid JSON: NUL byte at offset " +
                                        std::to_string(static_cast<const uint8_t*>(nul) - first));
  }
  std::vector<std::set<std::string>> frames;  // keys seen, per open object or array
  json::parser_callback_t callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (frames.size() >= kMaxJsonDepth) {
          throw Error(ErrorKind::kFormat,
                      label + ": header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        }
        frames.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!frames.empty()) frames.pop_back();
        break;
      case json::parse_event_t::key:
        if (!frames.empty() && parsed.is_string() &&
            !frames.back().insert(parsed.get_ref<const std::string&>()).second) {
          throw Error(ErrorKind::kFormat,
                      label + ": header has a duplicate key '" + parsed.get_ref<const std::string&>() + "'");
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(first, last, callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    std::string what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag; the rest says where and why.
    if (auto close = what.find("] "); what.rfind("[json.exception.", 0) == 0 && close != std::string::npos) {
      what = what.substr(close + 2);
    }
    throw Error(ErrorKind::kFormat, label + ": header is not valid JSON: " + printable(what));
  }
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

TensorInfo parse_tensor_entry(const std::string& name, const json& entry, uint64_t data_size,
                              const std::string& label) {
  auto fail = [&](const std::string& what) -> Error {
    return Error(ErrorKind::kFormat, label + ": tensor '" + name + "': " + what);
  };
  if (!entry.is_object())
    throw fail(std::string("entry is not a JSON object (got ") + entry.type_name() + ")");

  TensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) throw fail("missing 'dtype'");
  if (!dtype_it->is_string()) throw fail("'dtype' is not a string");
  const auto& dtype_name_str = dtype_it->get_ref<const std::string&>();
  auto dtype = parse_dtype(dtype_name_str);
  if (!dtype) throw fail("unknown dtype '" + printable(dtype_name_str) + "'");
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) throw fail("missing 'shape'");
  if (!shape_it->is_array()) throw fail("'shape' is not an array");
  info.shape.reserve(shape_it->size());
  for (const auto& dim : *shape_it) {
    if (dim.is_number_unsigned()) {
      const auto v = dim.get<uint64_t>();
      if (v > static_cast<uint64_t>(INT64_MAX))
        throw fail("shape dimension " + std::to_string(v) + " is too large");
      info.shape.push_back(static_cast<int64_t>(v));
    } else if (dim.is_number_integer()) {
      // nlohmann stores non-negative integers as unsigned, so a signed one is negative.
      throw fail("shape dimension " + std::to_string(dim.get<int64_t>()) + " is negative");
    } else {
      throw fail(std::string("shape dimension is not an integer (got ") + dim.type_name() + ")");
    }
  }

  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end()) throw fail("missing 'data_offsets'");
  if (!offsets_it->is_array() || offsets_it->size() != 2)
    throw fail("'data_offsets' is not a [begin, end] pair");
  for (const auto& off : *offsets_it) {
    if (!off.is_number_unsigned()) {
      throw fail(std::string("'data_offsets' entries must be non-negative integers (got ") + off.type_name() +
                 ")");
    }
  }
  info.begin = (*offsets_it)[0].get<uint64_t>();
  info.end = (*offsets_it)[1].get<uint64_t>();
  if (info.begin > info.end) {
    throw fail("data_offsets begin " + std::to_string(info.begin) + " > end " + std::to_string(info.end));
  }
  if (info.end > data_size) {
    throw fail("data_offsets end " + std::to_string(info.end) + " is beyond the data section (" +
               std::to_string(data_size) + " bytes)");
  }

  // Zeros are skipped in the product so that [0, huge] is an empty tensor, but an overflowing
  // product of the other dimensions is rejected in any order.
  uint64_t numel = 1;
  bool has_zero = false;
  for (int64_t d : info.shape) {
    if (d == 0) {
      has_zero = true;
      continue;
    }
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) ||
        numel > static_cast<uint64_t>(INT64_MAX)) {
      throw fail("shape " + shape_string(info.shape) + " has too many elements");
    }
  }
  if (has_zero) numel = 0;
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(info.dtype)), &nbytes)) {
    throw fail("shape " + shape_string(info.shape) + " is too large for " + dtype_name(info.dtype));
  }
  if (nbytes != info.nbytes()) {
    throw fail("shape " + shape_string(info.shape) + " of " + dtype_name(info.dtype) + " needs " +
               std::to_string(nbytes) + " bytes but data_offsets span " + std::to_string(info.nbytes()));
  }
  return info;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& label) {
  if (!value.is_object()) {
    throw Error(ErrorKind::kFormat,
                label + ": __metadata__ is not a JSON object (got " + std::string(value.type_name()) + ")");
  }
  std::map<std::string, std::string> out;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      throw Error(ErrorKind::kFormat, label + ": __metadata__: value of '" + key + "' is not a string (got " +
                                          std::string(v.type_name()) + ")");
    }
    out.emplace(key, v.get<std::string>());
  }
  return out;
}

// Rejects tensors that share bytes: a writer never produces them, and a hostile file could use
// them to make two weights alias. Empty tensors occupy no bytes and are skipped.
void check_no_overlap(const std::vector<TensorInfo>& tensors, uint64_t data_size, const std::string& label) {
  std::vector<const TensorInfo*> order;
  order.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (t.nbytes() > 0) order.push_back(&t);
  }
  std::sort(order.begin(), order.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  uint64_t used = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i > 0 && order[i]->begin < order[i - 1]->end) {
      const auto& a = *order[i - 1];
      const auto& b = *order[i];
      throw Error(ErrorKind::kFormat, label + ": tensor '" + b.name + "': data_offsets [" +
                                          std::to_string(b.begin) + ", " + std::to_string(b.end) +
                                          ") overlap tensor '" + a.name + "' [" + std::to_string(a.begin) +
                                          ", " + std::to_string(a.end) + ")");
    }
    used += order[i]->nbytes();
  }
  if (used != data_size) {
    log::debug("{}: {} of {} data bytes belong to no tensor", label, data_size - used, data_size);
  }
}

}  // namespace

size_t dtype_size(DType dtype) { return entry_for(dtype).size; }

const char* dtype_name(DType dtype) { return entry_for(dtype).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& label) {
  if (size < 8) {
    throw Error(ErrorKind::kFormat, label + ": file too small for safetensors (" + std::to_string(size) +
                                        " bytes, need at least 8)");
  }
  const uint64_t header_len = read_le64(data);
  if (header_len > kMaxSafetensorsHeaderBytes) {
    throw Error(ErrorKind::kFormat, label + ": header length " + std::to_string(header_len) +
                                        " exceeds the limit of " +
                                        std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  }
  if (header_len > size - 8) {
    throw Error(ErrorKind::kFormat, label + ": header length " + std::to_string(header_len) +
                                        " exceeds the file size (" + std::to_string(size) + " bytes)");
  }

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  const uint64_t data_size = size - header.data_offset;

  const json root = parse_header_json(data + 8, data + 8 + header_len, label);
  if (!root.is_object()) {
    throw Error(ErrorKind::kFormat,
                label + ": header is not a JSON object (got " + std::string(root.type_name()) + ")");
  }
  header.tensors.reserve(root.size());
  // nlohmann's object is a std::map, so tensors come out sorted by name.
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      header.metadata = parse_metadata(value, label);
    } else {
      header.tensors.push_back(parse_tensor_entry(key, value, data_size, label));
    }
  }
  check_no_overlap(header.tensors, data_size, label);
  return header;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  auto header = parse_safetensors_header(mapping->data(), mapping->size(), path);
  return std::shared_ptr<SafetensorsFile>(new SafetensorsFile(std::move(mapping), std::move(header)));
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto& ts = header_.tensors;
  auto it = std::lower_bound(ts.begin(), ts.end(), name, [](const TensorInfo& t, std::string_view n) {
    return std::string_view(t.name) < n;
  });
  return it != ts.end() && it->name == name ? &*it : nullptr;
}

const uint8_t* SafetensorsFile::data(const TensorInfo& info) const {
  const uint64_t data_size = mapping_->size() - header_.data_offset;
  if (info.begin > info.end || info.end > data_size) {
    throw Error(ErrorKind::kUsage, path() + ": tensor '" + info.name + "': range [" +
                                       std::to_string(info.begin) + ", " + std::to_string(info.end) +
                                       ") is not in this file");
  }
  return mapping_->data() + header_.data_offset + info.begin;
}

nlohmann::json describe_safetensors(const SafetensorsFile& file) {
  json dtypes = json::object();
  json tensors = json::array();
  uint64_t total = 0;
  for (const auto& t : file.tensors()) {
    auto& count = dtypes[dtype_name(t.dtype)];
    count = count.is_null() ? 1 : count.get<int64_t>() + 1;
    tensors.push_back(
        {{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.nbytes()}});
    total += t.nbytes();
  }
  return {{"path", file.path()},
          {"file_bytes", file.file_size()},
          {"tensor_count", file.tensors().size()},
          {"total_bytes", total},
          {"dtypes", std::move(dtypes)},
          {"metadata", file.metadata()},
          {"tensors", std::move(tensors)}};
}

}  // namespace sdflow
