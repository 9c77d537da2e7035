// MODEL values: a diffusion model with its patch list (what ComfyUI's ModelPatcher carries).
// Patch nodes (FreeU, LoRA-on-the-fly, ...) return a new ModelValue holding
// DiffusionModel::with_patch() of their input: the UNet weights stay shared, the input value
// is never changed (outputs are cached and shared between consumers).
#pragma once

#include <memory>
#include <utility>

#include "models/diffusion/diffusion_model.h"
#include "nodeapi/value.h"

namespace sdflow::nodes {

struct ModelValue final : Object {
  explicit ModelValue(std::shared_ptr<const DiffusionModel> m) : model(std::move(m)) {}
  std::shared_ptr<const DiffusionModel> model;
};

inline Value make_model(std::shared_ptr<const DiffusionModel> model) {
  return Value::object(std::make_shared<ModelValue>(std::move(model)));
}

}  // namespace sdflow::nodes
