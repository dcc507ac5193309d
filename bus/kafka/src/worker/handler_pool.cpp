#include "handler_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <exception>
#include <iterator>
#include <string>

#include "kbus/envelope.hpp"

namespace kbus::kafka::worker {

HandlerPool::HandlerPool(int threads, std::vector<int> lane_weights, const Dispatcher& dispatcher, Series& series,
                         std::function<void()> wake)
    : thread_count_(threads),
      dispatcher_(dispatcher),
      series_(series),
      wake_(std::move(wake)),
      slots_(std::make_unique<Slot[]>(static_cast<std::size_t>(threads))),
      queue_(std::move(lane_weights)),
      lane_queued_(std::make_unique<std::atomic<std::size_t>[]>(queue_.lanes())) {}

void HandlerPool::Recount() {
  for (std::size_t lane = 0; lane < queue_.lanes(); ++lane) {
    lane_queued_[lane].store(queue_.size(lane), std::memory_order_relaxed);
  }
  queued_runs_.store(queue_.size(), std::memory_order_relaxed);
}

HandlerPool::~HandlerPool() { Stop(); }

void HandlerPool::Start() {
  for (int i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this, i] { Loop(slots_[static_cast<std::size_t>(i)]); });
  }
}

// A thread takes a few queued runs at a time (a share of the queue, at most kMaxChunk) into its
// slot, so that the queue's lock is taken once per chunk. Runs of the chunk that have not
// started when one of them turns out slow are taken back by the poll thread (ReclaimSlow), so a
// slow or stuck handler holds back nothing but itself.
std::size_t HandlerPool::ChunkSize(std::size_t queued) const {
  return std::clamp<std::size_t>(queued / (2 * static_cast<std::size_t>(thread_count_)), 1, kMaxChunk);
}

void HandlerPool::Loop(Slot& slot) {
  pthread_setname_np(pthread_self(), "kbus-handler");  // at most 15 characters
  std::vector<HeaderView> headers;
  TypeSeries* last_type = nullptr;
  std::vector<AttemptPtr> chunk;
  std::vector<MessagePtr> graves;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !graves_.empty(); });
      graves.swap(graves_);
      if (queue_.empty()) {
        if (!graves.empty()) {
          lock.unlock();
          graves.clear();
          continue;
        }
        return;  // stopping, and nothing left
      }
      const std::size_t n = ChunkSize(queue_.size());
      for (std::size_t i = 0; i < n; ++i) chunk.push_back(queue_.Take());
      Recount();
    }
    graves.clear();  // outside the lock: destroying records is the costly part
    {
      std::lock_guard lock(slot.mu);
      slot.pending.swap(chunk);
      slot.next = 0;
    }
    for (;;) {
      AttemptPtr a;
      {
        std::lock_guard lock(slot.mu);
        if (slot.next >= slot.pending.size()) {
          slot.pending.clear();
          slot.next = 0;
          chunk.swap(slot.finished);  // posted below, outside the slot's lock
          break;
        }
        a = std::move(slot.pending[slot.next++]);
        if (a->revoked->load(std::memory_order_acquire)) {  // not run: the partition is going
          a->slot.Release();
          slot.finished.push_back(std::move(a));
          continue;
        }
        a->started = Clock::now();
        a->visibility.Extend(a->timeout);
        slot.current = std::move(a);  // moved, not copied: no reference count per run
      }
      RunOne(*slot.current, headers, last_type);  // only this thread replaces slot.current
      Finished(*slot.current);
      std::lock_guard lock(slot.mu);
      slot.finished.push_back(std::move(slot.current));
    }
    Post(chunk);
  }
}

void HandlerPool::RunOne(Attempt& a, std::vector<HeaderView>& headers, TypeSeries*& last_type) {
  try {
    const InboundRecord record = ViewRecord(a.msg.get(), headers);
    a.series.store(&series_.TypeFor(record.FindHeader(header::kType), last_type), std::memory_order_release);
    a.result = dispatcher_.Dispatch(record, a.delivery, &a.visibility, &a.slot);
  } catch (const std::exception& e) {  // e.g. bad_alloc outside the handler
    a.result = DispatchResult{};
    a.result.kind = DispatchResult::Kind::kRetry;
    a.result.error = std::string("dispatch failed: ") + e.what();
  }
  a.slot.Release();  // unless the handler kept it
  a.seconds = std::chrono::duration<double>(Clock::now() - a.started).count();
  a.ran = true;
}

// The handler returned: unless the poll thread abandoned the run first, its result stands,
// however late the poll thread gets to it.
// After a run that succeeded nothing reads the record's parsed headers (librdkafka parses them
// on first use); a record sent on later (a retry, a dead letter) has them parsed again. Freed
// here, by the thread that parsed them, their memory serves the next record's parse. Not when the
// poll thread abandoned this run (it reads them to decide what follows), nor when another run of
// the record may still read them (an abandoned one holds a reference too).
void HandlerPool::Finished(Attempt& a) {
  int expected = Attempt::kRunning;
  if (!a.claim.compare_exchange_strong(expected, Attempt::kFinished)) return;
  if (a.result.kind != DispatchResult::Kind::kAck && a.result.kind != DispatchResult::Kind::kSkip) return;
  if (a.msg.use_count() != 2) return;  // the entry's reference and this run's
  rd_kafka_message_set_headers(a.msg.get(), nullptr);
}

// Hands finished runs to the poll thread, and wakes it only if it is blocked waiting.
void HandlerPool::Post(std::vector<AttemptPtr>& finished) {
  if (finished.empty()) return;
  bool was_empty = false;
  {
    std::lock_guard lock(done_mu_);
    was_empty = done_.empty();
    for (auto& a : finished) done_.push_back(std::move(a));
  }
  finished.clear();
  results_ready_.store(true);  // seq_cst, paired with poll_idle_ (SetPollIdle)
  if (was_empty) done_cv_.notify_one();
  if (poll_idle_.load()) wake_();
}

bool HandlerPool::TakeResults(std::vector<AttemptPtr>& out) {
  out.clear();
  std::lock_guard lock(done_mu_);
  results_ready_.store(false, std::memory_order_relaxed);
  if (done_.empty()) return false;
  out.swap(done_);  // both keep their capacity
  return true;
}

void HandlerPool::WaitForResults(std::chrono::milliseconds timeout) {
  std::unique_lock lock(done_mu_);
  done_cv_.wait_for(lock, timeout, [&] { return !done_.empty(); });
}

void HandlerPool::ReclaimSlow(Clock::time_point now, std::vector<AttemptPtr>& finished) {
  for (int i = 0; i < thread_count_; ++i) {
    Slot& slot = slots_[static_cast<std::size_t>(i)];
    std::vector<AttemptPtr> back;
    {
      std::lock_guard lock(slot.mu);
      if (!slot.current || now - slot.current->started < kReclaimAfter) continue;
      for (std::size_t j = slot.next; j < slot.pending.size(); ++j) back.push_back(std::move(slot.pending[j]));
      slot.pending.resize(slot.next);
      for (auto& a : slot.finished) finished.push_back(std::move(a));
      slot.finished.clear();
    }
    if (!back.empty()) {
      {
        std::lock_guard lock(mu_);
        for (auto it = back.rbegin(); it != back.rend(); ++it) {
          const std::size_t lane = (*it)->lane;
          queue_.PushFront(lane, std::move(*it));
        }
        Recount();
      }
      cv_.notify_all();
    }
  }
}

AttemptPtr HandlerPool::Current(int i) const {
  Slot& slot = slots_[static_cast<std::size_t>(i)];
  std::lock_guard lock(slot.mu);
  return slot.current;
}

void HandlerPool::Submit(std::vector<AttemptPtr>& batch) {
  if (batch.empty()) return;
  std::size_t queued = 0;
  {
    std::lock_guard lock(mu_);
    HandOverGraves();
    for (auto& a : batch) {
      const std::size_t lane = a->lane;
      queue_.Push(lane, std::move(a));
    }
    Recount();
    queued = queued_runs_.load(std::memory_order_relaxed);
  }
  // Wake as many threads as there are chunks to take (ChunkSize), no more: a thread that takes
  // one run may be stuck in it, so every run needs a thread of its own to be awake.
  const std::size_t chunk = ChunkSize(queued);
  const std::size_t wake = std::min<std::size_t>(static_cast<std::size_t>(thread_count_), (queued + chunk - 1) / chunk);
  if (wake >= static_cast<std::size_t>(thread_count_)) {
    cv_.notify_all();
  } else {
    for (std::size_t i = 0; i < std::max<std::size_t>(wake, 1); ++i) cv_.notify_one();
  }
  batch.clear();
}

// A record the poll thread is done with. Its header list was allocated by the handler thread
// that parsed it (librdkafka parses headers on first use), so a handler thread releases it too:
// freed by the poll thread, every record's allocations crossed threads, which glibc's per-thread
// caches cannot absorb, and the poll thread spent a third of its time in free() (measured with
// the throughput benchmark). They go over in batches, with the next runs or on their own
// (FlushGraves); a record can pin a whole fetch response, so none lingers.
void HandlerPool::Bury(MessagePtr record) {
  if (!record) return;
  graveyard_.push_back(std::move(record));
  if (graveyard_.size() >= kGraveBatch) FlushGraves();
}

void HandlerPool::Bury(std::vector<MessagePtr>& records) {
  for (auto& m : records) Bury(std::move(m));
  records.clear();
}

void HandlerPool::FlushGraves() {
  if (graveyard_.empty()) return;
  bool idle = false;
  {
    std::lock_guard lock(mu_);
    HandOverGraves();
    idle = queue_.empty();
  }
  if (idle) cv_.notify_one();  // no thread is about to take a chunk, and them with it
}

void HandlerPool::HandOverGraves() {
  graves_.insert(graves_.end(), std::make_move_iterator(graveyard_.begin()), std::make_move_iterator(graveyard_.end()));
  graveyard_.clear();
}

std::int64_t HandlerPool::Running() const {
  std::int64_t n = 0;
  for (int i = 0; i < thread_count_; ++i) {
    Slot& slot = slots_[static_cast<std::size_t>(i)];
    std::lock_guard lock(slot.mu);
    n += slot.current ? 1 : 0;
  }
  return n;
}

Clock::duration HandlerPool::StuckFor(Clock::time_point now, int factor) const {
  Clock::duration worst{0};
  for (int i = 0; i < thread_count_; ++i) {
    Slot& slot = slots_[static_cast<std::size_t>(i)];
    std::lock_guard lock(slot.mu);
    if (!slot.current) continue;
    const auto deadline = slot.current->visibility.deadline();
    if (deadline == Clock::time_point::max()) continue;
    const auto limit = slot.current->started + (deadline - slot.current->started) * factor;
    if (now > limit) worst = std::max(worst, now - limit);
  }
  return worst;
}

void HandlerPool::BeginStop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void HandlerPool::Stop() {
  BeginStop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

}  // namespace kbus::kafka::worker
