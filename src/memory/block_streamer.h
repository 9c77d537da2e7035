// Note [Weight streaming]
// A streamed block is copied from the host for every use and freed after it, so a model whose
// weights do not fit runs with only part of them on the device (ComfyUI's "lowvram" partial
// load; --novram streams everything; ModelBlockSwap streams chosen blocks). Copies run on a
// copy stream ahead of compute, up to a lookahead of device bytes (BlockPlan::lookahead_bytes,
// at least one block):
//
//   compute stream:  ..wait(ready i).. block i ..record(done i).. wait(ready i+1).. block i+1 ..
//   copy stream:     ..wait(done i-1).. copy i+2 ..record(ready i+2).. wait(done i).. copy i+3 ..
//
// When the model acquires streamed block i, the compute stream waits for i's copy, and copies
// of the blocks predicted to follow are enqueued until the lookahead is full, so they run while
// i and the resident blocks between streamed ones compute. When the model drops its lease on
// i, an event marks i's last reader on the compute stream; every copy enqueued after that first
// waits for it, so a buffer is reused only after its reader ran. Nothing waits on the host:
// copies come from page-locked memory and ordering is by CUDA events (device/copy_stream.h).
//
// Memory reuse follows from the caching allocator: a streamed block's tensors are allocated on
// the copy stream, so when its lease dies the memory returns to that stream's pool, and the
// next allocation from it is enqueued after the wait for the reader's event. Models must
// therefore not keep views of lease tensors beyond the lease (none does: leases are scoped to
// the block that reads them).
//
// "Next" is the block that followed this one the last time the model ran (recorded on every
// pass), else the next block of the store (models build stores in execution order). A wrong
// guess drops the prefetched copies and copies the block asked for without overlap.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "device/copy_stream.h"
#include "memory/residency.h"

namespace sdflow {

// One streamed block to copy: host tensors (page-locked where possible) and the patch to
// apply to the device copy (nullptr: none, or one that does not affect the block).
struct StreamRequest {
  const WeightStore* store = nullptr;
  std::string block;
  const BlockTensors* host = nullptr;
  const WeightPatch* patch = nullptr;
};

// Thread-compatible; the residency calls it under its lock.
class BlockStreamer {
 public:
  // prefetch = false (--disable-async-offload): each block is copied when asked for, on the
  // compute stream.
  BlockStreamer(std::unique_ptr<CopyStream> copies, bool prefetch);
  ~BlockStreamer();
  BlockStreamer(const BlockStreamer&) = delete;
  BlockStreamer& operator=(const BlockStreamer&) = delete;

  // `now`'s device tensors, ready for the compute stream; enqueues copies of `upcoming` (the
  // blocks predicted to follow, in order, with their device bytes) while the prefetched bytes
  // stay within `lookahead_bytes` (one block at least), to overlap with compute. The tensors
  // are freed when the last holder drops them.
  std::shared_ptr<const BlockTensors> take(const StreamRequest& now,
                                           const std::vector<std::pair<StreamRequest, int64_t>>& upcoming,
                                           int64_t lookahead_bytes);
  // Frees the prefetched blocks nobody asked for yet (end of a node, eviction, a new load).
  void drop_prefetched();
  // Drops the prefetched blocks of `store_id`.
  void drop_prefetched(uint64_t store_id);

  CopyStream& copies();
  // Host bytes copied for streamed blocks since the last call.
  int64_t take_bytes_streamed();
  // Device bytes of streamed blocks alive now (prefetched or leased), and the most since the
  // last reset.
  int64_t live_bytes() const;
  int64_t peak_live_bytes() const;
  void reset_peak();

  struct Shared;

 private:
  struct InFlight;
  std::shared_ptr<InFlight> issue(const StreamRequest& request);

  std::shared_ptr<Shared> shared_;
  bool prefetch_;
  std::deque<std::shared_ptr<InFlight>> pending_;  // prefetched, in predicted order
  int64_t bytes_streamed_ = 0;
};

}  // namespace sdflow
