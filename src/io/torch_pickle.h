// A pickle reader that executes nothing: a small interpreter for the opcodes torch.save emits
// (protocol 2; protocol 3–5 framing is accepted) that builds plain values — None, bools, ints,
// floats, strings, tuples, lists, dicts — and the tensor records of torch's zip format. The only
// callables it "calls" are the few torch.save uses for tensors, and it calls none of them: it
// records what they would build. Any other global (a class, a function, anything a malicious
// file names) is refused with an Error naming the file and the global. See Note [Safe pickles].
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"  // DType

namespace sdflow {

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...): the storage is named by
// its key in the archive's data/ folder; offset, sizes and strides are in elements.
struct PickleTensor {
  std::string storage_key;
  DType dtype = DType::F32;
  uint64_t storage_numel = 0;  // elements, as the persistent id says
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
};

struct PickleValue {
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kTuple, kList, kDict, kGlobal, kStorage, kTensor };
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;                                   // string, bytes, global "module.name", storage key
  std::vector<PickleRef> items;                    // tuple, list
  std::vector<std::pair<PickleRef, PickleRef>> dict;  // in insertion order; later duplicates replace
  std::shared_ptr<const PickleTensor> tensor;      // kTensor; for kStorage: the storage's dtype/numel
  int depth = 0;                                   // containers: 1 + the deepest child
  bool nested = false;                             // put into a container: no longer mutable

  const char* kind_name() const;
  // The value under a string key of a dict, or nullptr.
  const PickleValue* get(const std::string& key) const;
};

inline constexpr int kMaxPickleDepth = 64;

// Runs the pickle in [data, data + size). Throws Error(kModel, "<label>: ...") for a global that
// is not one of torch.save's tensor globals, Error(kFormat, "<label>: ...") for anything else
// malformed (unknown opcodes, truncation, stack underflow, nesting deeper than kMaxPickleDepth).
PickleRef parse_torch_pickle(const uint8_t* data, size_t size, const std::string& label);

}  // namespace sdflow
