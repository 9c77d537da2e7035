#include "io/torch_checkpoint.h"

#include <algorithm>
#include <iterator>
#include <map>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/torch_pickle.h"
#include "io/zip_archive.h"

namespace sdflow {

namespace {

// torch.save before 1.6 wrote a bare pickle stream starting with this magic number (a LONG1).
bool looks_like_legacy_torch(const uint8_t* data, size_t size) {
  static const uint8_t kMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  return size >= sizeof kMagic && std::equal(std::begin(kMagic), std::end(kMagic), data);
}

// ComfyUI's load_torch_file: which dict of the pickle is the state dict.
const PickleValue& state_dict_of(const PickleValue& top) {
  if (const PickleValue* sd = top.get("state_dict"); sd && sd->kind == PickleValue::Kind::kDict) return *sd;
  if (top.dict.size() == 1 && top.dict[0].second->kind == PickleValue::Kind::kDict) return *top.dict[0].second;
  return top;
}

}  // namespace

TorchCheckpoint parse_torch_checkpoint(const uint8_t* data, size_t size, const std::string& label,
                                       std::shared_ptr<const void> owner) {
  auto fail = [&](const std::string& what) { throw Error(ErrorKind::kFormat, label + ": " + what); };
  if (looks_like_legacy_torch(data, size))
    fail("a legacy (before PyTorch 1.6) torch.save file; re-save it with a current PyTorch or convert it to "
         ".safetensors");
  if (!looks_like_zip(data, size)) fail("not a PyTorch zip checkpoint (no zip header)");
  const ZipArchive zip(data, size, label);

  // Every entry lives under one top folder whose name torch.save takes from the file name.
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (pkl) fail("more than one data.pkl");
      pkl = &e;
    }
  }
  if (!pkl) fail("no <archive>/data.pkl entry: not a torch.save zip file");
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - std::string("data.pkl").size());
  if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
    const ZipBytes b = zip.read_checked(*order, owner);
    if (std::string(reinterpret_cast<const char*>(b.data), b.size) != "little")
      fail("tensors are stored big-endian, which is not supported");
  }

  const ZipBytes pickle = zip.read_checked(*pkl, owner);
  const PickleRef top = parse_torch_pickle(pickle.data, pickle.size, label);
  if (top->kind != PickleValue::Kind::kDict)
    throw Error(ErrorKind::kModel, label + ": holds a " + std::string(top->kind_name()) + ", not a dict of tensors");
  const PickleValue& sd = state_dict_of(*top);

  std::map<std::string, TorchTensorRecord> records;
  std::map<std::string, std::pair<DType, ZipBytes>> storages;
  TorchCheckpoint out;
  for (const auto& item : sd.dict) {
    const PickleRef& key = item.first;  // not a structured binding: lambdas below capture it
    const PickleRef& value = item.second;
    if (key->kind != PickleValue::Kind::kString)
      fail(std::string("a state dict key is a ") + key->kind_name() + ", not a string");
    if (value->kind != PickleValue::Kind::kTensor) {
      out.skipped.push_back(key->s);
      continue;
    }
    const PickleTensor& t = *value->tensor;
    auto where = [&](const std::string& what) { fail("tensor '" + key->s + "': " + what); };
    const uint64_t elem = dtype_size(t.dtype);

    auto st = storages.find(t.storage_key);
    if (st == storages.end()) {
      const ZipEntry* e = zip.find(prefix + "data/" + t.storage_key);
      if (!e) where("storage '" + t.storage_key + "' is missing from the archive");
      ZipBytes bytes = zip.read(*e, owner, std::max<uint64_t>(e->compressed_size, 1) * 1032);
      uint64_t want = 0;
      if (__builtin_mul_overflow(t.storage_numel, elem, &want) || want != bytes.size)
        where("storage '" + t.storage_key + "' has " + std::to_string(bytes.size) + " bytes, but " +
              std::to_string(t.storage_numel) + " elements of " + dtype_name(t.dtype) + " need " +
              std::to_string(t.storage_numel) + "×" + std::to_string(elem));
      st = storages.emplace(t.storage_key, std::make_pair(t.dtype, std::move(bytes))).first;
    } else if (st->second.first != t.dtype) {
      where("storage '" + t.storage_key + "' is used with two dtypes");
    }
    const ZipBytes& bytes = st->second.second;
    const uint64_t storage_numel = bytes.size / elem;

    // The furthest element the view touches must be inside the storage (negative strides and
    // sizes are refused; a zero-size view touches nothing).
    if (t.offset < 0) where("negative storage offset");
    uint64_t last = static_cast<uint64_t>(t.offset);
    bool empty = false;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      if (t.sizes[d] < 0 || t.strides[d] < 0) where("negative size or stride");
      if (t.sizes[d] == 0) empty = true;
    }
    if (!empty) {
      for (size_t d = 0; d < t.sizes.size(); ++d) {
        uint64_t span = 0;
        if (__builtin_mul_overflow(static_cast<uint64_t>(t.sizes[d] - 1), static_cast<uint64_t>(t.strides[d]), &span) ||
            __builtin_add_overflow(last, span, &last))
          where("size and stride overflow");
      }
      if (last >= storage_numel)
        where("view reaches element " + std::to_string(last) + " of a storage of " + std::to_string(storage_numel));
    }
    uint64_t numel = 1;
    for (int64_t s : t.sizes)
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(s), &numel) || numel > (uint64_t{1} << 62))
        where("too many elements");

    TorchTensorRecord r;
    r.name = key->s;
    r.dtype = t.dtype;
    r.shape = t.sizes;
    r.strides = t.strides;
    r.offset = t.offset;
    r.storage = bytes.data;
    r.storage_bytes = bytes.size;
    r.owner = bytes.owner;
    records[key->s] = std::move(r);  // a later duplicate key replaces, as in a Python dict
  }
  if (records.empty())
    throw Error(ErrorKind::kModel, label + ": no tensors in the checkpoint's state dict");
  for (auto& [name, r] : records) out.tensors.push_back(std::move(r));
  return out;
}

TorchCheckpoint open_torch_checkpoint(const std::string& path) {
  std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  return parse_torch_checkpoint(file->data(), file->size(), path, file);
}

}  // namespace sdflow
