// safetensors ⇄ at::Tensor. Reading is zero-copy: tensors view the read-only mmap and keep it
// alive through their deleter, so they stay valid after the SafetensorsFile is destroyed.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/torch_compat.h"
#include "io/safetensors.h"

namespace sdflow {

// The ATen dtype a safetensors dtype is loaded as. fp8 types map to the native fp8 dtypes when
// compat::kHasFp8, else to kByte (raw bits; see fp8_to_float).
at::ScalarType scalar_type_for(DType dtype);
// The safetensors dtype for an ATen dtype; nullopt for types safetensors cannot store here
// (complex, unsigned > 8 bit, ...). kByte is U8: raw fp8 bits on a torch without fp8 cannot be
// told apart, so save those with write_safetensors and an explicit F8 dtype.
std::optional<DType> dtype_for(at::ScalarType type);

// A CPU tensor with the contents of `info`. Zero-copy when the bytes are aligned to the element
// size (always, for files from write_safetensors and the reference writer); else a copy.
// The view's memory is the PROT_READ mapping: it is fine to read, share and copy (.to(),
// .clone()), but any in-place write crashes — clone() first. BOOL tensors whose bytes are not
// all 0/1 are copied and normalised, because ATen assumes bool storage holds only 0 or 1.
at::Tensor tensor_view(const std::shared_ptr<SafetensorsFile>& file, const TensorInfo& info);

// Every tensor of the file by name (views, as tensor_view).
std::map<std::string, at::Tensor> load_all(const std::shared_ptr<SafetensorsFile>& file);
std::map<std::string, at::Tensor> load_all(const std::string& path);

// Upcasts fp8 data to float32, same shape and device. `raw` is either the kByte bits of an
// F8_E4M3 (E4M3FN: bias 7, no infinities, S.1111.111 is NaN) or F8_E5M2 (bias 15, IEEE-like
// with inf/NaN) tensor, or — on torch builds with fp8 — a tensor of the matching native dtype.
// Throws Error(kUsage) for any other dtype.
at::Tensor fp8_to_float(const at::Tensor& raw, DType dtype);

// Writes tensors (any device, layout or strides: contiguous CPU copies are made as needed)
// through write_safetensors, with its atomicity. Throws Error(kUsage) for unsupported dtypes.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace sdflow
