// CONDITIONING nodes from ComfyUI's nodes.py (COMFY_COMPAT.md 3.2). A CONDITIONING value is a
// list of (tensor [B, tokens, dim], options) entries; these nodes copy the list and change
// tensors or options, never the input (values are shared between consumers).
#include <algorithm>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/log.h"
#include "nodes/builtin.h"
#include "nodes/values.h"

namespace sdflow::nodes {
namespace {

constexpr int64_t kMaxResolution = 16384;  // ComfyUI's MAX_RESOLUTION

std::shared_ptr<const ConditioningValue> cond_input(const NodeContext& ctx, const NodeInputs& in,
                                                    const std::string& name) {
  auto c = in.at(name).as<ConditioningValue>();
  for (size_t i = 0; i < c->entries.size(); ++i) {
    const at::Tensor& t = c->entries[i].cond;
    if (!t.defined() || t.dim() != 3)
      throw Error(ErrorKind::kRuntime, ctx.where() + name + ": entry " + std::to_string(i) +
                                           " is not a [batch, tokens, dim] tensor");
  }
  return c;
}

const at::Tensor* find_tensor_option(const CondEntry& e, const std::string& key) {
  auto it = e.options.find(key);
  if (it == e.options.end()) return nullptr;
  return std::get_if<at::Tensor>(&it->second);
}

class ConditioningCombine final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto a = cond_input(ctx, in, "conditioning_1");
    auto b = cond_input(ctx, in, "conditioning_2");
    ConditioningValue out;
    out.entries = a->entries;
    out.entries.insert(out.entries.end(), b->entries.begin(), b->entries.end());
    return {make_conditioning(std::move(out))};
  }
};

// Blends every "to" entry with the first "from" entry: to·s + from·(1 − s), the from tokens
// cut or zero-padded to the to length. The pooled output is blended the same way, and
// ComfyUI's default of "to pooled = from pooled" means a missing one blends from with itself.
class ConditioningAverage final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto to = cond_input(ctx, in, "conditioning_to");
    auto from = cond_input(ctx, in, "conditioning_from");
    const double s = in.at("conditioning_to_strength").as_float();
    if (from->entries.empty()) throw Error(ErrorKind::kRuntime, ctx.where() + "conditioning_from is empty");
    if (from->entries.size() > 1)
      log::warn(
          "{}conditioning_from contains more than 1 cond, only the first one will actually be applied "
          "to conditioning_to.",
          ctx.where());
    const at::Tensor& cond_from = from->entries[0].cond;
    const at::Tensor* pooled_from = find_tensor_option(from->entries[0], "pooled_output");

    ConditioningValue out;
    for (const CondEntry& e : to->entries) {
      const at::Tensor& t1 = e.cond;
      if (t1.size(2) != cond_from.size(2) ||
          (cond_from.size(0) != t1.size(0) && cond_from.size(0) != 1 && t1.size(0) != 1))
        throw Error(ErrorKind::kRuntime, ctx.where() + "conditioning_to " + shape_text(t1) +
                                             " and conditioning_from " + shape_text(cond_from) +
                                             " cannot be averaged");
      at::Tensor t0 = cond_from.narrow(1, 0, std::min(cond_from.size(1), t1.size(1)));
      if (t0.size(1) < t1.size(1)) {
        at::Tensor pad = at::zeros({t0.size(0), t1.size(1) - t0.size(1), t1.size(2)}, t0.options());
        t0 = at::cat({t0, pad}, 1);
      }
      CondEntry n;
      n.cond = at::mul(t1, s) + at::mul(t0, 1.0 - s);
      n.options = e.options;
      if (pooled_from) {
        const at::Tensor* pooled_to = find_tensor_option(e, "pooled_output");
        const at::Tensor& pt = pooled_to ? *pooled_to : *pooled_from;
        n.options["pooled_output"] = at::mul(pt, s) + at::mul(*pooled_from, 1.0 - s);
      }
      out.entries.push_back(std::move(n));
    }
    return {make_conditioning(std::move(out))};
  }

 private:
  static std::string shape_text(const at::Tensor& t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
    return s + "]";
  }
};

class ConditioningSetArea final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto c = cond_input(ctx, in, "conditioning");
    const int64_t width = in.at("width").as_int();
    const int64_t height = in.at("height").as_int();
    const int64_t x = in.at("x").as_int();
    const int64_t y = in.at("y").as_int();
    const double strength = in.at("strength").as_float();
    if (width < 0 || height < 0 || x < 0 || y < 0)
      throw Error(ErrorKind::kRuntime, ctx.where() + "area sizes and positions must not be negative");
    // Latent cells, (height, width, y, x) — ComfyUI's order; floor division of non-negatives.
    const std::vector<int64_t> area = {height / 8, width / 8, y / 8, x / 8};
    ConditioningValue out;
    out.entries = c->entries;
    for (CondEntry& e : out.entries) {
      e.options["area"] = area;
      e.options["strength"] = strength;
      e.options["set_area_to_bounds"] = false;
    }
    return {make_conditioning(std::move(out))};
  }
};

class ConditioningZeroOut final : public Node {
 public:
  ValueList run(NodeContext& ctx, const NodeInputs& in) override {
    auto c = cond_input(ctx, in, "conditioning");
    ConditioningValue out;
    for (const CondEntry& e : c->entries) {
      CondEntry n;
      n.cond = at::zeros_like(e.cond);
      n.options = e.options;
      for (const char* key : {"pooled_output", "conditioning_lyrics"}) {
        if (const at::Tensor* t = find_tensor_option(e, key)) n.options[key] = at::zeros_like(*t);
      }
      out.entries.push_back(std::move(n));
    }
    return {make_conditioning(std::move(out))};
  }
};

}  // namespace

void register_conditioning_nodes(NodeRegistry& r) {
  r.add<ConditioningCombine>(SchemaBuilder("ConditioningCombine")
                                 .display("Conditioning (Combine)")
                                 .category("conditioning")
                                 .socket("conditioning_1", "CONDITIONING")
                                 .socket("conditioning_2", "CONDITIONING")
                                 .output("CONDITIONING")
                                 .build());
  // ComfyUI's display-name table spells this key "ConditioningAverage " (trailing space), so
  // the UI shows the class name; we do the same.
  r.add<ConditioningAverage>(SchemaBuilder("ConditioningAverage")
                                 .category("conditioning")
                                 .socket("conditioning_to", "CONDITIONING")
                                 .socket("conditioning_from", "CONDITIONING")
                                 .input(float_input("conditioning_to_strength", 1.0, 0.0, 1.0, 0.01))
                                 .output("CONDITIONING")
                                 .build());
  r.add<ConditioningSetArea>(SchemaBuilder("ConditioningSetArea")
                                 .display("Conditioning (Set Area)")
                                 .category("conditioning")
                                 .socket("conditioning", "CONDITIONING")
                                 .input(int_input("width", 64, 64, kMaxResolution, 8))
                                 .input(int_input("height", 64, 64, kMaxResolution, 8))
                                 .input(int_input("x", 0, 0, kMaxResolution, 8))
                                 .input(int_input("y", 0, 0, kMaxResolution, 8))
                                 .input(float_input("strength", 1.0, 0.0, 10.0, 0.01))
                                 .output("CONDITIONING")
                                 .build());
  r.add<ConditioningZeroOut>(SchemaBuilder("ConditioningZeroOut")
                                 .category("advanced/conditioning")
                                 .socket("conditioning", "CONDITIONING")
                                 .output("CONDITIONING")
                                 .build());
}

}  // namespace sdflow::nodes
