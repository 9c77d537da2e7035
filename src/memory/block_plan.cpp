#include "memory/block_plan.h"

#include <algorithm>

namespace sdflow {

namespace {
int64_t lookahead_for(int64_t weight_budget, int64_t largest) {
  const int64_t wanted = weight_budget == kNoWeightLimit ? kMaxLookaheadBytes
                                                         : std::min(kMaxLookaheadBytes, weight_budget / 8);
  int64_t window = std::max(2 * largest, wanted);
  // Within a small budget the lookahead gives way first, down to one block.
  if (weight_budget != kNoWeightLimit) window = std::min(window, std::max(largest, weight_budget - 2 * largest));
  return window;
}
}  // namespace

BlockPlan plan_blocks(const std::vector<BlockCost>& blocks, int64_t weight_budget,
                      const std::set<std::string>& forced) {
  BlockPlan plan;
  int64_t largest = 0, largest_forced = 0, all_free = 0;
  std::vector<const BlockCost*> free;
  for (const BlockCost& b : blocks) {
    largest = std::max(largest, b.bytes);
    if (forced.count(b.name)) {
      plan.streamed.insert(b.name);
      largest_forced = std::max(largest_forced, b.bytes);
    } else {
      free.push_back(&b);
      all_free += b.bytes;
    }
  }
  const auto set_buffer = [&](int64_t biggest) {
    plan.lookahead_bytes = lookahead_for(weight_budget, biggest);
    plan.stream_buffer_bytes = 2 * biggest + plan.lookahead_bytes;
  };
  if (!plan.streamed.empty()) set_buffer(largest_forced);
  // Everything that may stay fits next to the forced blocks' buffer.
  if (weight_budget == kNoWeightLimit || all_free + plan.stream_buffer_bytes <= weight_budget) {
    plan.resident_bytes = all_free;
    return plan;
  }

  set_buffer(largest);
  const int64_t capacity = weight_budget - plan.stream_buffer_bytes;
  std::set<const BlockCost*> streamed;
  if (capacity <= 0) {
    streamed.insert(free.begin(), free.end());
  } else {
    // Spread: a running share of each block's bytes that should stream; a block streams when
    // the share owed reaches half of it.
    const double share = static_cast<double>(all_free - capacity) / static_cast<double>(all_free);
    double owed = 0;
    for (const BlockCost* b : free) {
      owed += share * static_cast<double>(b->bytes);
      if (owed >= 0.5 * static_cast<double>(b->bytes)) {
        streamed.insert(b);
        owed -= static_cast<double>(b->bytes);
      }
    }
    int64_t resident = 0;
    for (const BlockCost* b : free)
      if (!streamed.count(b)) resident += b->bytes;
    // Rounding may leave the resident set over or under the capacity: stream the largest
    // resident blocks until it fits, then keep the largest streamed ones that still fit.
    std::vector<const BlockCost*> by_size(free.begin(), free.end());
    std::stable_sort(by_size.begin(), by_size.end(),
                     [](const BlockCost* a, const BlockCost* b) { return a->bytes > b->bytes; });
    for (const BlockCost* b : by_size) {
      if (resident <= capacity) break;
      if (!streamed.count(b)) {
        streamed.insert(b);
        resident -= b->bytes;
      }
    }
    for (const BlockCost* b : by_size) {
      if (streamed.count(b) && resident + b->bytes <= capacity) {
        streamed.erase(b);
        resident += b->bytes;
      }
    }
  }
  for (const BlockCost* b : free) {
    if (streamed.count(b))
      plan.streamed.insert(b->name);
    else
      plan.resident_bytes += b->bytes;
  }
  if (plan.streamed.empty()) plan.stream_buffer_bytes = plan.lookahead_bytes = 0;
  return plan;
}

}  // namespace sdflow
