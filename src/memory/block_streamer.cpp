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
  f->tensors = copies.copy_block(r.block, *r.host, r.store->device_dtype(),
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

namespace {
bool same(const StreamRequest& r, uint64_t store_id, const std::string& block, uint64_t patch) {
  return r.store->id() == store_id && r.block == block && patch_id(r.patch) == patch;
}
}  // namespace

std::shared_ptr<const BlockTensors> BlockStreamer::take(const StreamRequest& now,
                                                        const std::vector<std::pair<StreamRequest, int64_t>>& upcoming,
                                                        int64_t lookahead_bytes) {
  std::shared_ptr<InFlight> current;
  if (!pending_.empty() && same(now, pending_.front()->store_id, pending_.front()->block, pending_.front()->patch_id)) {
    current = std::move(pending_.front());
    pending_.pop_front();
  } else {
    pending_.clear();  // a wrong guess: free them before copying what is needed
    current = issue(now);
  }
  CopyStream& copies = *shared_->copies;
  copies.compute_waits(*current->ready);
  if (prefetch_) {
    // What is prefetched must be a prefix of the prediction; keep it, drop the rest, top up.
    size_t k = 0;
    while (k < pending_.size() && k < upcoming.size() &&
           same(upcoming[k].first, pending_[k]->store_id, pending_[k]->block, pending_[k]->patch_id))
      ++k;
    pending_.resize(k);
    int64_t ahead = 0;
    for (const auto& f : pending_) ahead += f->bytes;
    for (size_t i = k; i < upcoming.size(); ++i) {
      const StreamRequest& r = upcoming[i].first;
      if (r.store == now.store && r.block == now.block) break;  // the prediction came round
      if (!pending_.empty() && ahead + upcoming[i].second > lookahead_bytes) break;
      pending_.push_back(issue(r));
      ahead += pending_.back()->bytes;
    }
  }

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

void BlockStreamer::drop_prefetched() { pending_.clear(); }

void BlockStreamer::drop_prefetched(uint64_t store_id) {
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                [&](const std::shared_ptr<InFlight>& f) { return f->store_id == store_id; }),
                 pending_.end());
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
