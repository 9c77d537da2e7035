#include "models/lora/lora_adapter.h"

#include <atomic>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "models/loader/state_dict.h"

namespace sdflow {

namespace {

std::atomic<uint64_t> next_adapters_id{1};

int64_t tensor_bytes(const at::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.numel() * t.element_size()) : 0;
}

int64_t numel_from(at::IntArrayRef shape, size_t first_dim) {
  int64_t n = 1;
  for (size_t i = first_dim; i < shape.size(); ++i) n *= shape[i];
  return n;
}

std::string shape_str(at::IntArrayRef s) { return c10::str(s); }

// The adapter tensors of weight_adapter/lora.py LoRAAdapter.load, first match wins:
// {up, down, mid (regular only)} name suffixes.
struct LoraNames {
  const char* up;
  const char* down;
  const char* mid;
};
const LoraNames kLoraNames[] = {
    {".lora_up.weight", ".lora_down.weight", ".lora_mid.weight"},                 // kohya / LyCORIS LoCon
    {"_lora.up.weight", "_lora.down.weight", nullptr},                            // diffusers attn-procs
    {".lora_B.weight", ".lora_A.weight", nullptr},                                // peft
    {".lora.up.weight", ".lora.down.weight", nullptr},                            // diffusers
    {".lora_B", ".lora_A", nullptr},                                              // mochi
    {".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight", nullptr},  // transformers
    {".lora_B.default.weight", ".lora_A.default.weight", nullptr},                // qwen
};

// Whether `a` broadcast with `b` fits in place into `target` (weight_decompose's in-place `*=`).
bool broadcast_into(at::IntArrayRef a, at::IntArrayRef b, at::IntArrayRef target) {
  const size_t n = std::max(a.size(), b.size());
  if (n > target.size()) return false;
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t db = i < b.size() ? b[b.size() - 1 - i] : 1;
    if (da != db && da != 1 && db != 1) return false;
    const int64_t d = std::max(da, db);
    if (d != 1 && d != target[target.size() - 1 - i]) return false;
  }
  return true;
}

class Matcher {
 public:
  Matcher(const StateDict& lora, std::vector<std::string>* not_loaded)
      : lora_(lora), not_loaded_(not_loaded) {}

  const at::Tensor* get(const std::string& key) {
    if (!lora_.has(key)) return nullptr;
    used_.insert(key);
    return &lora_.at(key);
  }

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw Error(ErrorKind::kModel, lora_.label() + ": LoRA tensor '" + key + "': " + why);
  }

  // The patches of one base name (load_lora's loop body), keyed by ComfyUI's model key.
  void match(const std::string& x, const LoraTarget& target,
             std::map<std::string, std::pair<LoraTarget, LoraAdapter>>& out) {
    std::optional<double> alpha;
    if (const at::Tensor* a = get(x + ".alpha")) {
      if (a->numel() != 1) fail(x + ".alpha", "alpha must be one number, got shape " + shape_str(a->sizes()));
      alpha = a->to(at::kDouble).item<double>();
    }
    at::Tensor dora;
    if (const at::Tensor* d = get(x + ".dora_scale")) dora = *d;

    for (const LoraNames& n : kLoraNames) {
      if (!lora_.has(x + n.up)) continue;
      LoraAdapter a;
      a.kind = LoraAdapter::Kind::kLora;
      a.name = x;
      a.up = *get(x + n.up);
      const at::Tensor* down = get(x + n.down);
      if (!down) fail(x + n.up, "has no matching '" + x + n.down + "'");
      a.down = *down;
      if (n.mid)
        if (const at::Tensor* mid = get(x + n.mid)) a.mid = *mid;
      a.alpha = alpha;
      a.dora_scale = dora;
      if (lora_.has(x + ".reshape_weight"))
        log::warn("{}: '{}.reshape_weight' (weight padding) is not supported; ignored", lora_.label(), x);
      check_lora(a, target, x + n.up);
      out[target.comfy_key] = {target, std::move(a)};
      break;
    }
    if (lora_.has(x + ".hada_w1_a") || lora_.has(x + ".lokr_w1") || lora_.has(x + ".lokr_w1_a") ||
        lora_.has(x + ".lokr_w2") || lora_.has(x + ".lokr_w2_a"))
      log::warn("{}: '{}' is a LoHa/LoKr adapter, which sdflow does not apply yet", lora_.label(), x);

    auto diff = [&](const std::string& key, const LoraTarget& t, LoraAdapter::Kind kind) {
      const at::Tensor* v = get(key);
      if (!v) return;
      LoraAdapter a;
      a.kind = kind;
      a.name = key;
      a.value = *v;
      if (t.store && !t.unused) {
        const at::Tensor& w = t.store->block(t.block).host.at(t.key);
        if (v->sizes() != w.sizes())
          fail(key, "shape " + shape_str(v->sizes()) + " does not match " + t.comfy_key + " " +
                        shape_str(w.sizes()));
      }
      out[t.comfy_key] = {t, std::move(a)};
    };
    const LoraTarget bias = bias_of(target);
    if (lora_.has(x + ".w_norm")) {
      diff(x + ".w_norm", target, LoraAdapter::Kind::kDiff);
      diff(x + ".b_norm", bias, LoraAdapter::Kind::kDiff);
    }
    diff(x + ".diff", target, LoraAdapter::Kind::kDiff);
    diff(x + ".diff_b", bias, LoraAdapter::Kind::kDiff);
    diff(x + ".set_weight", target, LoraAdapter::Kind::kSet);
  }

  void log_unused() const {
    size_t n = 0;
    for (const auto& [key, t] : lora_.tensors()) {
      if (used_.count(key)) continue;
      log::warn("lora key not loaded: {}", key);
      ++n;
      if (not_loaded_) not_loaded_->push_back(key);
    }
    if (n) log::warn("{}: {} LoRA tensors matched no layer of the model", lora_.label(), n);
  }

 private:
  // "<weight key minus .weight>.bias" in the same store, like ComfyUI's to_load[x][:-7] + ".bias".
  static LoraTarget bias_of(const LoraTarget& t) {
    LoraTarget b = t;
    const std::string suffix = ".weight";
    auto strip = [&](const std::string& k) {
      return k.size() >= suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0
                 ? k.substr(0, k.size() - suffix.size()) + ".bias"
                 : k + ".bias";
    };
    b.comfy_key = strip(t.comfy_key);
    b.unused = false;
    if (t.store) {
      b.key = strip(t.key);
      const WeightBlock& block = t.store->block(t.block);
      if (!block.host.count(b.key)) b.store = nullptr;
    }
    return b;
  }

  // The shapes calculate_weight needs, so the merge can never fail halfway.
  void check_lora(const LoraAdapter& a, const LoraTarget& t, const std::string& up_key) const {
    const std::string& x = a.name;
    if (a.up.dim() < 2) fail(up_key, "must have at least 2 dimensions, got " + shape_str(a.up.sizes()));
    if (a.down.dim() < 2)
      fail(x + " (down)", "must have at least 2 dimensions, got " + shape_str(a.down.sizes()));
    const int64_t rank = a.down.size(0);
    int64_t down_cols = numel_from(a.down.sizes(), 1);
    if (a.mid.defined()) {
      if (a.mid.dim() != 4) fail(x + ".lora_mid.weight", "must be 4-D, got " + shape_str(a.mid.sizes()));
      if (a.mid.size(0) != rank || a.mid.size(1) != numel_from(a.down.sizes(), 2) * rank)
        fail(x + ".lora_mid.weight",
             "shape " + shape_str(a.mid.sizes()) + " does not fit down " + shape_str(a.down.sizes()));
      down_cols = a.down.size(1) * a.mid.size(2) * a.mid.size(3);
    }
    if (numel_from(a.up.sizes(), 1) != rank)
      fail(up_key, "rank " + std::to_string(numel_from(a.up.sizes(), 1)) + " (shape " +
                       shape_str(a.up.sizes()) + ") differs from the down factor's " + std::to_string(rank) +
                       " (shape " + shape_str(a.down.sizes()) + ")");
    if (!t.store || t.unused) return;
    const at::Tensor& w = t.store->block(t.block).host.at(t.key);
    if (a.up.size(0) * down_cols != w.numel())
      fail(up_key, "up " + shape_str(a.up.sizes()) + " × down " + shape_str(a.down.sizes()) +
                       " cannot make " + t.comfy_key + " of shape " + shape_str(w.sizes()));
    if (a.dora_scale.defined()) {
      std::vector<int64_t> norm(w.dim(), 1);
      if (a.dora_scale.dim() > 0 && a.dora_scale.size(0) == w.size(0))
        norm[0] = w.size(0);
      else
        norm[1] = w.size(1);
      if (a.dora_scale.dim() == 0 || !broadcast_into(a.dora_scale.sizes(), norm, w.sizes()))
        fail(x + ".dora_scale", "shape " + shape_str(a.dora_scale.sizes()) + " does not fit " + t.comfy_key +
                                    " " + shape_str(w.sizes()));
    }
  }

  const StateDict& lora_;
  std::vector<std::string>* not_loaded_;
  std::set<std::string> used_;
};

}  // namespace

int64_t LoraAdapter::bytes() const {
  return tensor_bytes(up) + tensor_bytes(down) + tensor_bytes(mid) + tensor_bytes(dora_scale) +
         tensor_bytes(value);
}

const std::vector<LoraEntry>* LoraAdapters::block(uint64_t store_id, const std::string& block) const {
  auto s = entries_.find(store_id);
  if (s == entries_.end()) return nullptr;
  auto b = s->second.find(block);
  return b == s->second.end() ? nullptr : &b->second;
}

std::shared_ptr<const LoraAdapters> LoraAdapters::match(const StateDict& lora, const LoraKeyMap& map,
                                                        std::vector<std::string>* not_loaded) {
  Matcher m(lora, not_loaded);
  std::map<std::string, std::pair<LoraTarget, LoraAdapter>> patches;  // ComfyUI's patch_dict
  for (const auto& [name, target] : map.entries()) m.match(name, target, patches);
  m.log_unused();

  auto out = std::make_shared<LoraAdapters>();
  out->id_ = next_adapters_id++;
  for (auto& [comfy_key, p] : patches) {
    auto& [target, adapter] = p;
    if (target.unused) {
      log::debug("{}: '{}' changes {}, which no output reads", lora.label(), adapter.name, comfy_key);
      continue;
    }
    if (!target.store) {
      log::warn("NOT LOADED {}", comfy_key);
      if (not_loaded) not_loaded->push_back(comfy_key);
      continue;
    }
    out->entries_[target.store->id()][target.block].push_back({target.key, std::move(adapter)});
    ++out->count_;
  }
  return out;
}

}  // namespace sdflow
