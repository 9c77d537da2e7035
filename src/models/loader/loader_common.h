// What the single-file checkpoint loader and the separate-file loaders (UNETLoader, CLIPLoader,
// DualCLIPLoader) build the same way: weight stores tied to the residency, text encoders per
// ComfyUI slot, errors that name the file.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <utility>

#include "core/error.h"
#include "device/device.h"
#include "memory/residency.h"
#include "memory/weight_store.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_text.h"

namespace sdflow {

class MemoryManager;

// Weight stores outlive nothing: when the last model using one goes (a cached loader output
// dropped), its device copies go too, instead of staying in the residency forever.
// `residency_owner` is kept alive as long as the store (a private CPU residency).
std::shared_ptr<const WeightStore> evict_on_release(std::shared_ptr<WeightStore> store, Residency& residency,
                                                    std::shared_ptr<const void> residency_owner = {});

// Adds the file's name to errors that only name a key.
template <typename F>
auto naming_file(const StateDict& sd, const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.find(sd.label()) != std::string::npos) throw;
    throw Error(e.kind(), sd.label() + ": " + what + ": " + msg);
  }
}

// A CPU device and residency of its own, for models that run on the CPU whatever the compute
// device is (--cpu-vae, CLIPLoader's device "cpu"); kept alive by the weight stores using it.
struct CpuResidency {
  std::unique_ptr<ComputeDevice> device = make_cpu_device();
  std::unique_ptr<Residency> residency = make_all_resident(*device);
};

// ComfyUI builds each text encoder slot from a fixed JSON config (sd1_clip_config.json,
// clip_config_bigg.json, sd2_clip_config.json): the activation is the slot's, whatever the width.
enum class ClipSlot { kL, kG, kH };

// A text encoder from HF-layout weights (`text_model.…`, see clip_text_layout.h) in `slot`,
// stored and computed in the MemoryManager's text encoder dtypes. `random_test_weights`: heads
// of the tiny test configs for widths no released model has (Note [Random test checkpoints]).
// `cpu`: on a private CPU residency instead of the compute device. Throws Error(kModel) naming
// the file for weights that do not fit.
std::shared_ptr<const ClipTextModel> build_clip(const StateDict& hf, ClipSlot slot, bool random_test_weights,
                                                MemoryManager& memory, const std::string& name,
                                                bool cpu = false);

// "first_stage_model. (248), model.diffusion_model. (686)": what a file holds, for errors.
std::string describe_keys(const StateDict& sd);

}  // namespace sdflow
