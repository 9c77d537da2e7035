// Reads tests/data/sampling/goldens.{safetensors,json} (made by
// tools/goldens/make_sampling_goldens.py). A tiny safetensors reader keeps the sampling tests
// independent of the io library.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sdflow::sampling::testing {

inline std::string golden_dir() { return std::string(SDFLOW_SOURCE_DIR) + "/tests/data/sampling"; }

inline bool goldens_present() {
  std::ifstream a(golden_dir() + "/goldens.safetensors");
  std::ifstream b(golden_dir() + "/goldens.json");
  return a.good() && b.good();
}

inline std::map<std::string, at::Tensor> read_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, header_len));
  const size_t data_start = 8 + header_len;
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string dtype = info["dtype"];
    at::ScalarType st = dtype == "F32" ? at::kFloat : dtype == "F64" ? at::kDouble : at::kLong;
    std::vector<int64_t> shape = info["shape"].get<std::vector<int64_t>>();
    const auto begin = info["data_offsets"][0].get<size_t>();
    const auto end = info["data_offsets"][1].get<size_t>();
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
    if (static_cast<size_t>(t.nbytes()) != end - begin) throw std::runtime_error("bad tensor size: " + name);
    std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, end - begin);
    out[name] = t;
  }
  return out;
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(f);
}

// Largest |a - b| with NaN == NaN; +inf when shapes differ.
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  at::Tensor x = a.to(at::kDouble).cpu();
  at::Tensor y = b.to(at::kDouble).cpu();
  at::Tensor both_nan = x.isnan().logical_and(y.isnan());
  at::Tensor d = (x - y).abs().masked_fill(both_nan, 0);
  if (d.isnan().any().item<bool>()) return INFINITY;
  return d.numel() == 0 ? 0.0 : d.max().item<double>();
}

}  // namespace sdflow::sampling::testing
