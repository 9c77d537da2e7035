#include "sampling/brownian_tree.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "core/error.h"

namespace sdflow::sampling {
namespace {

constexpr uint32_t kInitA = 0x43b0d7e5u;
constexpr uint32_t kMultA = 0x931e8875u;
constexpr uint32_t kInitB = 0x8b51f9ddu;
constexpr uint32_t kMultB = 0x58f38dedu;
constexpr uint32_t kMixMultL = 0xca01f9ddu;
constexpr uint32_t kMixMultR = 0x4973f715u;
constexpr int kXShift = 16;
constexpr size_t kCacheSize = 45;
constexpr int kPoolSize = 24;
constexpr int kRoundDigits = 6;  // -int(log10(tol)) for tol = 1e-6

uint32_t hashmix(uint32_t value, uint32_t& hash_const) {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  value ^= value >> kXShift;
  return value;
}

uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t result = kMixMultL * x - kMixMultR * y;
  result ^= result >> kXShift;
  return result;
}

// numpy's _int_to_uint32_array: little-endian 32-bit words, [0] for zero.
void append_words(uint64_t n, std::vector<uint32_t>& out) {
  if (n == 0) {
    out.push_back(0);
    return;
  }
  while (n > 0) {
    out.push_back(static_cast<uint32_t>(n & 0xffffffffu));
    n >>= 32;
  }
}

}  // namespace

std::vector<uint32_t> seed_sequence_state(uint64_t entropy, const std::vector<uint64_t>& spawn_key,
                                          int pool_size, int n_words) {
  std::vector<uint32_t> run;
  append_words(entropy, run);
  std::vector<uint32_t> spawn;
  for (uint64_t k : spawn_key) append_words(k, spawn);
  // numpy >= 1.19 pads small entropy to the pool size when a spawn key is present.
  if (!spawn.empty() && run.size() < static_cast<size_t>(pool_size))
    run.resize(static_cast<size_t>(pool_size), 0);
  std::vector<uint32_t> assembled = run;
  assembled.insert(assembled.end(), spawn.begin(), spawn.end());

  std::vector<uint32_t> pool(static_cast<size_t>(pool_size), 0);
  uint32_t hash_const = kInitA;
  for (size_t i = 0; i < pool.size(); ++i) {
    pool[i] = hashmix(i < assembled.size() ? assembled[i] : 0u, hash_const);
  }
  for (size_t src = 0; src < pool.size(); ++src) {
    for (size_t dst = 0; dst < pool.size(); ++dst) {
      if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src], hash_const));
    }
  }
  for (size_t src = pool.size(); src < assembled.size(); ++src) {
    for (size_t dst = 0; dst < pool.size(); ++dst)
      pool[dst] = mix(pool[dst], hashmix(assembled[src], hash_const));
  }

  std::vector<uint32_t> state(static_cast<size_t>(n_words));
  uint32_t hc = kInitB;
  for (size_t i = 0; i < state.size(); ++i) {
    uint32_t v = pool[i % pool.size()];
    v ^= hc;
    hc *= kMultB;
    v *= hc;
    v ^= v >> kXShift;
    state[i] = v;
  }
  return state;
}

double python_round(double x, int ndigits) {
  if (!std::isfinite(x)) return x;
  // glibc prints the exact binary value rounded half-to-even, as CPython's dtoa mode 3 does.
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%.*f", ndigits, x);
  return std::strtod(buf, nullptr);
}

struct BrownianTree::Node {
  double start = 0;
  double end = 0;
  Node* parent = nullptr;
  bool is_left = false;
  bool has_midway = false;
  double midway = 0;
  uint64_t spawn_key = 0;
  uint64_t depth = 0;
  uint32_t w_seed = 0;
  std::unique_ptr<Node> left;
  std::unique_ptr<Node> right;
};

BrownianTree::BrownianTree(double t0, double t1, uint64_t entropy, std::vector<int64_t> shape,
                           at::TensorOptions options)
    : shape_(std::move(shape)), options_(options), entropy_(entropy), root_(std::make_unique<Node>()) {
  if (t0 > t1) throw Error(ErrorKind::kRuntime, "[BrownianTree] t0 must be <= t1");
  root_->start = python_round(t0, kRoundDigits);
  root_->end = python_round(t1, kRoundDigits);
  const std::vector<uint32_t> seeds = seed_sequence_state(entropy, {}, kPoolSize, 3);
  // The root increment uses the unrounded endpoints.
  root_w_ = randn_seeded(seeds[0]) * std::sqrt(t1 - t0);
}

BrownianTree::~BrownianTree() = default;

at::Tensor BrownianTree::randn_seeded(uint32_t seed) const {
  return at::randn(shape_, make_seeded_generator(options_.device(), seed), options_);
}

void BrownianTree::split_exact(Node* node, double midway) {
  node->midway = python_round(midway, kRoundDigits);
  node->has_midway = true;
  if (node->parent != nullptr) {
    if (node->parent->depth >= 62) throw Error(ErrorKind::kRuntime, "[BrownianTree] tree too deep");
    node->spawn_key = 2 * node->parent->spawn_key + (node->is_left ? 0 : 1);
    node->depth = node->parent->depth + 1;
  }
  node->w_seed = seed_sequence_state(entropy_, {node->spawn_key, node->depth}, kPoolSize, 4)[0];
  node->left = std::make_unique<Node>();
  node->left->start = node->start;
  node->left->end = python_round(midway, kRoundDigits);
  node->left->parent = node;
  node->left->is_left = true;
  node->right = std::make_unique<Node>();
  node->right->start = python_round(midway, kRoundDigits);
  node->right->end = node->end;
  node->right->parent = node;
  node->right->is_left = false;
}

void BrownianTree::split(Node* node, double target) {
  // halfway_tree: always split at the (rounded) midpoint, then keep splitting towards target.
  for (;;) {
    split_exact(node, 0.5 * (node->end + node->start));
    if (target > node->midway) {
      node = node->right.get();
    } else if (target < node->midway) {
      node = node->left.get();
    } else {
      return;
    }
  }
}

void BrownianTree::locate(Node* node, double ta, double tb, std::vector<Node*>& out) {
  for (;;) {
    if (ta == node->start && tb == node->end) {
      out.push_back(node);
      return;
    }
    if (!node->has_midway) {
      // torchsde splits, then asks a child that may hand the query back up to this node;
      // asking this node again is the same walk.
      split(node, ta == node->start ? tb : ta);
      continue;
    }
    if (tb <= node->midway) {
      node = node->left.get();
    } else if (ta >= node->midway) {
      node = node->right.get();
    } else {
      locate(node->left.get(), ta, node->midway, out);
      node = node->right.get();
      ta = node->start;
    }
  }
}

at::Tensor BrownianTree::node_w(Node* node) {
  if (node == root_.get()) return root_w_;
  auto it = cache_.find(node);
  if (it != cache_.end()) {
    lru_.splice(lru_.end(), lru_, it->second.second);
    return it->second.first;
  }
  Node* parent = node->parent;
  const at::Tensor w = node_w(parent);
  const double h_reciprocal = 1 / (parent->end - parent->start);
  const double left_diff = parent->midway - parent->start;
  const double right_diff = parent->end - parent->midway;
  const at::Tensor mean = w * left_diff * h_reciprocal;
  const double var = left_diff * right_diff * h_reciprocal;
  const at::Tensor left_w = mean + randn_seeded(parent->w_seed) * std::sqrt(var);
  at::Tensor out = node->is_left ? left_w : w - left_w;

  if (cache_.size() >= kCacheSize) {
    cache_.erase(lru_.front());
    lru_.pop_front();
  }
  lru_.push_back(node);
  cache_.emplace(node, std::make_pair(out, std::prev(lru_.end())));
  return out;
}

at::Tensor BrownianTree::increment(double ta, double tb) {
  ta = std::max(ta, root_->start);
  tb = std::max(tb, root_->start);
  ta = std::min(ta, root_->end);
  tb = std::min(tb, root_->end);
  if (ta > tb) throw Error(ErrorKind::kRuntime, "[BrownianTree] query times must satisfy ta <= tb");
  if (ta == tb) return at::zeros(shape_, options_);
  std::vector<Node*> intervals;
  locate(root_.get(), python_round(ta, kRoundDigits), python_round(tb, kRoundDigits), intervals);
  at::Tensor w = node_w(intervals[0]);
  for (size_t i = 1; i < intervals.size(); ++i) w = w + node_w(intervals[i]);
  return w;
}

NoiseSampler brownian_tree_noise_sampler(const at::Tensor& x, const at::Tensor& sigma_min,
                                         const at::Tensor& sigma_max, uint64_t seed, bool cpu) {
  // BatchedBrownianTree sorts its endpoints; the sign stays +1 for sigma_min < sigma_max.
  const bool ordered = sigma_min.lt(sigma_max).item<bool>();
  const at::Tensor lo = ordered ? sigma_min : sigma_max;
  const at::Tensor hi = ordered ? sigma_max : sigma_min;
  const int64_t tree_sign = ordered ? 1 : -1;
  at::TensorOptions options = x.options();
  if (cpu) options = options.device(at::kCPU);
  auto tree =
      std::make_shared<BrownianTree>(lo.item<double>(), hi.item<double>(), seed, x.sizes().vec(), options);
  return [tree, tree_sign, cpu](const at::Tensor& sigma, const at::Tensor& sigma_next) {
    const bool asc = sigma.lt(sigma_next).item<bool>();
    const at::Tensor a = asc ? sigma : sigma_next;
    const at::Tensor b = asc ? sigma_next : sigma;
    const int64_t sign = asc ? 1 : -1;
    double ta;
    double tb;
    if (cpu) {
      ta = a.cpu().to(at::kFloat).item<double>();
      tb = b.cpu().to(at::kFloat).item<double>();
    } else {
      ta = a.item<double>();
      tb = b.item<double>();
    }
    at::Tensor w = tree->increment(ta, tb).unsqueeze(0).to(a.device(), a.scalar_type()) * (tree_sign * sign);
    return w[0] / (sigma_next - sigma).abs().sqrt();
  };
}

}  // namespace sdflow::sampling
