// Which of a model's blocks stay on the device and which stream, for a weight budget: ComfyUI's
// partial ("lowvram") load (model_patcher.py _load_list / load, COMFY_COMPAT 2.4) at block
// granularity, with room kept for the streamed blocks in flight (Note [Weight streaming] in
// memory/block_streamer.h).
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
  int64_t resident_bytes = 0;  // blocks kept on the device
  // How far copies may run ahead of compute: device bytes of streamed blocks copied but not yet
  // used (at least one block is always prefetched, whatever its size).
  int64_t lookahead_bytes = 0;
  // Room for streamed blocks: two in use at once (a transformer's head and one of its blocks)
  // plus the lookahead.
  int64_t stream_buffer_bytes = 0;
  // The most weight bytes the plan ever has on the device.
  int64_t peak_bytes() const { return resident_bytes + stream_buffer_bytes; }
  bool operator==(const BlockPlan& o) const { return streamed == o.streamed && lookahead_bytes == o.lookahead_bytes; }
  bool operator!=(const BlockPlan& o) const { return !(*this == o); }
};

constexpr int64_t kNoWeightLimit = std::numeric_limits<int64_t>::max();
// The most a lookahead grows to: enough to keep the copy engine busy through the stretches of
// a step that stream nothing (SDXL's high-resolution levels, ~20 ms at ~45 GB/s ≈ 0.9 GB, of
// which half pays for itself), small enough to leave the budget to resident weights.
constexpr int64_t kMaxLookaheadBytes = int64_t{512} << 20;

// `blocks` in execution order. `forced` blocks always stream (block swap). The others stay
// resident while they fit `weight_budget` (kNoWeightLimit: all of them) next to the stream
// buffer; those that do not fit are chosen spread evenly over the execution order, in
// proportion to their bytes, so that every stretch of compute has copies to hide (streaming
// the last N blocks in a row would leave the copy engine idle for most of a step and then
// stall compute). The lookahead is an eighth of the budget, between two blocks and
// kMaxLookaheadBytes. The plan never exceeds the budget unless the budget is below three
// blocks (then everything streams and peak_bytes() says what it needs).
BlockPlan plan_blocks(const std::vector<BlockCost>& blocks, int64_t weight_budget,
                      const std::set<std::string>& forced = {});

}  // namespace sdflow
