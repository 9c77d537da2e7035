// Fuzzes the torch.save zip reader and the pickle interpreter behind it: any input must either
// parse into tensor records that lie inside their storages or throw sdflow::Error. Inputs that
// start with a zip header go through the whole reader; others are run as a bare data.pkl.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/torch_checkpoint.h"
#include "io/torch_pickle.h"
#include "io/zip_archive.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_invariants(const sdflow::TorchCheckpoint& ck) {
  check(!ck.tensors.empty());
  for (size_t i = 0; i < ck.tensors.size(); ++i) {
    const auto& t = ck.tensors[i];
    if (i > 0) check(ck.tensors[i - 1].name < t.name);
    check(t.shape.size() == t.strides.size());
    const uint64_t elem = sdflow::dtype_size(t.dtype);
    check(t.storage_bytes % elem == 0);
    bool empty = false;
    uint64_t last = static_cast<uint64_t>(t.offset);
    for (size_t d = 0; d < t.shape.size(); ++d) {
      check(t.shape[d] >= 0 && t.strides[d] >= 0);
      if (t.shape[d] == 0) empty = true;
      else last += static_cast<uint64_t>(t.shape[d] - 1) * static_cast<uint64_t>(t.strides[d]);
    }
    if (empty) continue;
    check(last < t.storage_bytes / elem);
    // Touch the first and the last byte the view can reach (ASan catches anything outside).
    volatile uint8_t sink = t.storage[t.offset * elem];
    sink = t.storage[(last + 1) * elem - 1];
    (void)sink;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    if (sdflow::looks_like_zip(data, size)) {
      check_invariants(sdflow::parse_torch_checkpoint(data, size, "fuzz.pth"));
    } else {
      sdflow::PickleRef v = sdflow::parse_torch_pickle(data, size, "fuzz.pkl");
      check(v != nullptr && v->depth <= sdflow::kMaxPickleDepth);
    }
  } catch (const sdflow::Error&) {
  }
  return 0;
}
