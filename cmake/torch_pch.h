// Precompiled for every torch-using target: the narrow ATen headers, never <torch/torch.h>.
#pragma once
#include <ATen/ATen.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <memory>
