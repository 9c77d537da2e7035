#include "memory/block_plan.h"

#include <algorithm>
#include <numeric>

namespace sdflow {

namespace {
int64_t two_largest(std::vector<int64_t> sizes) {
  std::sort(sizes.begin(), sizes.end(), std::greater<>());
  int64_t sum = 0;
  for (size_t i = 0; i < sizes.size() && i < 2; ++i) sum += sizes[i];
  return sum;
}
}  // namespace

BlockPlan plan_blocks(const std::vector<BlockCost>& blocks, int64_t weight_budget,
                      const std::set<std::string>& forced) {
  BlockPlan plan;
  std::vector<int64_t> forced_sizes;
  std::vector<const BlockCost*> free;
  for (const BlockCost& b : blocks) {
    if (forced.count(b.name)) {
      plan.streamed.insert(b.name);
      forced_sizes.push_back(b.bytes);
    } else {
      free.push_back(&b);
    }
  }
  plan.stream_buffer_bytes = two_largest(forced_sizes);
  const int64_t largest_forced = forced_sizes.empty() ? 0 : *std::max_element(forced_sizes.begin(), forced_sizes.end());

  int64_t all_free = 0;
  for (const BlockCost* b : free) all_free += b->bytes;
  // Everything that may stay fits: no buffer for streaming neighbours is needed.
  if (weight_budget == kNoWeightLimit || all_free + plan.stream_buffer_bytes <= weight_budget) {
    plan.resident_bytes = all_free;
    return plan;
  }
  // Largest first; ties keep execution order.
  std::stable_sort(free.begin(), free.end(), [](const BlockCost* a, const BlockCost* b) { return a->bytes > b->bytes; });
  for (size_t k = 0; k < free.size(); ++k) {
    const int64_t bytes = free[k]->bytes;
    const int64_t partner = std::max(largest_forced, k + 1 < free.size() ? free[k + 1]->bytes : 0);
    const int64_t potential = std::max(plan.stream_buffer_bytes, bytes + partner);
    if (plan.resident_bytes + bytes + potential <= weight_budget) {
      plan.resident_bytes += bytes;
    } else {
      plan.streamed.insert(free[k]->name);
      plan.stream_buffer_bytes = potential;
    }
  }
  // Fully resident after all: nothing streams, so no buffer is needed.
  if (plan.streamed.empty()) plan.stream_buffer_bytes = 0;
  return plan;
}

}  // namespace sdflow
