// Fuzzes the safetensors header parser: any input must either parse into a header that meets
// the documented invariants or throw sdflow::Error. Anything else (another exception, a crash,
// a sanitizer report, a broken invariant) is a bug.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace {

// Trap rather than assert: the invariants must hold in release builds too.
void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_invariants(const sdflow::SafetensorsHeader& h, size_t size) {
  check(h.data_offset >= 8 && h.data_offset <= size);
  const uint64_t data_size = size - h.data_offset;
  std::vector<const sdflow::TensorInfo*> by_begin;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const auto& t = h.tensors[i];
    if (i > 0) check(h.tensors[i - 1].name < t.name);
    check(t.name != "__metadata__");
    check(t.begin <= t.end && t.end <= data_size);
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      check(d >= 0);
      numel *= static_cast<uint64_t>(d);  // cannot wrap: the parser proved the product fits
    }
    check(static_cast<uint64_t>(t.numel()) == numel);
    check(numel * sdflow::dtype_size(t.dtype) == t.nbytes());
    if (t.nbytes() > 0) by_begin.push_back(&t);
  }
  std::sort(by_begin.begin(), by_begin.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) check(by_begin[i]->begin >= by_begin[i - 1]->end);
}

void parse_one(const uint8_t* data, size_t size) {
  try {
    check_invariants(sdflow::parse_safetensors_header(data, size, "fuzz"), size);
  } catch (const sdflow::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // As a whole file: exercises the length prefix and the bounds against the real size.
  parse_one(data, size);
  // As the header text of a file with a correct length prefix and 64 data bytes: random inputs
  // rarely get the prefix right, so this is what reaches the JSON and tensor validation.
  std::vector<uint8_t> file(8 + size + 64, 0);
  for (int i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>(uint64_t{size} >> (8 * i));
  if (size) std::memcpy(file.data() + 8, data, size);
  parse_one(file.data(), file.size());
  return 0;
}
