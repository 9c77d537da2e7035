#include "memory/block_streamer.h"

#include <algorithm>
#include <mutex>
#include <utility>

namespace sdflow {

// What lease deleters touch: they run wherever the model drops its last lease, so this is all
// they see, under its own small lock.
struct BlockStreamer::Shared {
  std::unique_ptr<CopyStream> copies;
  std::mutex mu;
  std::shared_ptr<StreamEvent> last_release;  // the compute stream's latest "block done"
  int64_t live = 0;
  int64_t peak = 0;

  void add_live(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu);
    live += bytes;
    peak = std::max(peak, live);
  }
};

struct BlockStreamer::InFlight {
  uint64_t store_id = 0;
  std::string block;
  uint64_t patch_id = 0;
  BlockTensors tensors;
  std::shared_ptr<StreamEvent> ready;
  int64_t bytes = 0;
  std::shared_ptr<Shared> shared;
  bool handed_out = false;

  // A prefetched block nobody used: its copy kernels are ordered on the copy stream, so the
  // memory may go back at once.
  ~InFlight() {
    if (!handed_out && shared) {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->live -= bytes;
    }
  }
};

namespace {
uint64_t patch_id(const WeightPatch* patch) { return patch ? patch->id() : 0; }

int64_t device_bytes(const BlockTensors& tensors) {
  int64_t sum = 0;
  for (const auto& [key, t] : tensors) sum += static_cast<int64_t>(t.numel() * t.element_size());
  return sum;
}
}  // namespace

BlockStreamer::BlockStreamer(std::unique_ptr<CopyStream> copies, bool prefetch)
    : shared_(std::make_shared<Shared>()), prefetch_(prefetch) {
  shared_->copies = std::move(copies);
}

BlockStreamer::~BlockStreamer() = default;

std::shared_ptr<BlockStreamer::InFlight> BlockStreamer::issue(const StreamRequest& r) {
  CopyStream& copies = *shared_->copies;
  std::shared_ptr<StreamEvent> after;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    after = shared_->last_release;
  }
  // The buffer this copy may land in was last read before `after`.
  if (after) copies.copy_waits(*after);
  auto f = std::make_shared<InFlight>();
  f->store_id = r.store->id();
  f->block = r.block;
  f->patch_id = patch_id(r.patch);
  f->tensors = copies.copy_block(r.block, *r.host, r.store->compute_dtype(),
                                 prefetch_ ? CopyLane::kCopy : CopyLane::kCompute);
  if (r.patch) {
    if (prefetch_)
      copies.on_copy_stream([&] { r.patch->apply(*r.store, r.block, f->tensors); });
    else
      r.patch->apply(*r.store, r.block, f->tensors);
  }
  f->ready = copies.record_copy(r.block);
  f->bytes = device_bytes(f->tensors);
  f->shared = shared_;
  shared_->add_live(f->bytes);
  bytes_streamed_ += r.store->block(r.block).bytes;
  return f;
}

std::shared_ptr<const BlockTensors> BlockStreamer::take(const StreamRequest& now, const StreamRequest* next) {
  std::shared_ptr<InFlight> current;
  if (pending_ && pending_->store_id == now.store->id() && pending_->block == now.block &&
      pending_->patch_id == patch_id(now.patch)) {
    current = std::move(pending_);
  } else {
    pending_.reset();  // a wrong guess: free it before copying what is needed
    current = issue(now);
  }
  pending_.reset();
  CopyStream& copies = *shared_->copies;
  copies.compute_waits(*current->ready);
  if (prefetch_ && next && !(next->store == now.store && next->block == now.block)) pending_ = issue(*next);

  current->handed_out = true;
  auto tensors = new BlockTensors(std::move(current->tensors));
  const int64_t bytes = current->bytes;
  std::shared_ptr<Shared> shared = shared_;
  std::string label = now.block;
  return std::shared_ptr<const BlockTensors>(tensors, [shared, bytes, label](const BlockTensors* t) {
    // Mark the last reader before the memory goes back (Note [Weight streaming]).
    std::shared_ptr<StreamEvent> done = shared->copies->record_compute(label);
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->last_release = std::move(done);
    }
    delete t;
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->live -= bytes;
  });
}

CopyStream& BlockStreamer::copies() { return *shared_->copies; }

void BlockStreamer::drop_prefetched() { pending_.reset(); }

void BlockStreamer::drop_prefetched(uint64_t store_id) {
  if (pending_ && pending_->store_id == store_id) pending_.reset();
}

int64_t BlockStreamer::take_bytes_streamed() { return std::exchange(bytes_streamed_, 0); }

int64_t BlockStreamer::live_bytes() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->live;
}
int64_t BlockStreamer::peak_live_bytes() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->peak;
}
void BlockStreamer::reset_peak() {
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->peak = shared_->live;
}

}  // namespace sdflow
