// libFuzzer target: PNG text chunk parsing must reject any input with sdflow::Error, never crash,
// read out of bounds or allocate without bound.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/png_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sdflow::read_png_text_chunks(data, size, "fuzz");
  } catch (const sdflow::Error&) {
  }
  return 0;
}
