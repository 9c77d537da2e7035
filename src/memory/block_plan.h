// Which of a model's blocks stay on the device and which stream, for a weight budget: ComfyUI's
// partial ("lowvram") load (model_patcher.py _load_list / load, COMFY_COMPAT 2.4) at block
// granularity, with room kept for the two streamed blocks in flight (Note [Weight streaming]
// in memory/block_streamer.h).
#pragma once

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace sdflow {

// A block's device bytes while it is in use (weights at the compute dtype, plus transient
// copies: the stored dtype before conversion, a patch's output).
struct BlockCost {
  std::string name;
  int64_t bytes = 0;
};

struct BlockPlan {
  std::set<std::string> streamed;
  int64_t resident_bytes = 0;       // blocks kept on the device
  int64_t stream_buffer_bytes = 0;  // room for the streamed block in use and the one prefetched
  // The most weight bytes the plan ever has on the device.
  int64_t peak_bytes() const { return resident_bytes + stream_buffer_bytes; }
  bool operator==(const BlockPlan& o) const { return streamed == o.streamed; }
  bool operator!=(const BlockPlan& o) const { return !(*this == o); }
};

constexpr int64_t kNoWeightLimit = std::numeric_limits<int64_t>::max();

// `forced` blocks always stream (block swap); the others are kept resident largest first while
// resident + buffer fits `weight_budget` (kNoWeightLimit: all of them). Like ComfyUI's walk over
// modules sorted by size: a block stays when what is already resident, the block and the
// buffer its streaming neighbours would need still fit; otherwise it streams and the buffer
// grows to it and the next block in size. The result never exceeds the budget unless the
// budget is below two blocks (then everything streams and peak_bytes() says what it needs).
BlockPlan plan_blocks(const std::vector<BlockCost>& blocks, int64_t weight_budget,
                      const std::set<std::string>& forced = {});

}  // namespace sdflow
