// Brownian-tree noise for the SDE samplers: a port of what ComfyUI's BrownianTreeNoiseSampler
// gets from torchsde.BrownianTree (BrownianInterval with halfway_tree=True, tol=1e-6,
// pool_size=24, no Levy area) and numpy.random.SeedSequence. See COMFY_COMPAT 4.4.
//
// Note [Brownian tree parity]
// The tree is the dyadic split of [t0, t1] (times rounded to 6 decimals as Python's round()
// does). A node's increment is the Brownian bridge of its parent's increment with one randn
// draw from a CPU (or device) generator seeded by SeedSequence(entropy=seed,
// spawn_key=(key, depth)).generate_state(4)[0]. Values depend only on the seed and the split
// points, not on query order or caching, so an exact port reproduces torchsde bit for bit when
// the float32 ops (randn, mul, add) match. torchsde's LRU cache only changes speed.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/torch_compat.h"
#include "sampling/noise.h"

namespace sdflow::sampling {

// numpy.random.SeedSequence(entropy, spawn_key=spawn_key, pool_size).generate_state(n_words).
std::vector<uint32_t> seed_sequence_state(uint64_t entropy, const std::vector<uint64_t>& spawn_key,
                                          int pool_size, int n_words);

// Python's round(x, ndigits) for a double (correctly rounded through decimal, ties to even).
double python_round(double x, int ndigits);

// One torchsde BrownianTree with w0 = 0. Not thread-safe (queries grow the tree).
class BrownianTree {
 public:
  // t0 < t1 are the doubles torchsde gets from float(tensor); `options` gives dtype and device
  // of every draw (ComfyUI: float32 CPU, or x's device for the _gpu samplers).
  BrownianTree(double t0, double t1, uint64_t entropy, std::vector<int64_t> shape, at::TensorOptions options);
  ~BrownianTree();
  BrownianTree(const BrownianTree&) = delete;
  BrownianTree& operator=(const BrownianTree&) = delete;

  // W(tb) - W(ta) for ta <= tb (clamped into [t0, t1] like torchsde).
  at::Tensor increment(double ta, double tb);

 private:
  struct Node;
  at::Tensor node_w(Node* node);
  void split(Node* node, double target);
  void split_exact(Node* node, double midway);
  void locate(Node* node, double ta, double tb, std::vector<Node*>& out);
  at::Tensor randn_seeded(uint32_t seed) const;

  std::vector<int64_t> shape_;
  at::TensorOptions options_;
  uint64_t entropy_;
  std::unique_ptr<Node> root_;
  at::Tensor root_w_;
  // LRU of node increments (torchsde keeps 45); only affects speed.
  std::list<Node*> lru_;
  std::unordered_map<Node*, std::pair<at::Tensor, std::list<Node*>::iterator>> cache_;
};

// BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed, cpu): noise(sigma, sigma_next) is
// (W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|) on x's device and dtype. With cpu the
// tree lives on the CPU in x's dtype (the non-_gpu samplers), else on x's device.
NoiseSampler brownian_tree_noise_sampler(const at::Tensor& x, const at::Tensor& sigma_min,
                                         const at::Tensor& sigma_max, uint64_t seed, bool cpu);

}  // namespace sdflow::sampling
