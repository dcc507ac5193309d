#pragma once
// The handler pool: threads that run handlers on the records the worker hands them (Submit),
// and hand the finished runs back (TakeResults) rather than calling into the worker. It also
// releases the records the poll thread is done with (Bury), on its own threads. Runs wait in one
// queue per priority lane (worker/lanes.hpp); a free thread takes the next by the lanes' weights.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kbus/context.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/slots.hpp"
#include "lanes.hpp"
#include "record_view.hpp"
#include "series.hpp"

namespace kbus::kafka::worker {

// One delivery handed to the pool. The handler thread writes `result` and `ran`, then posts the
// attempt back; the poll thread reads them only after that.
struct Attempt {
  explicit Attempt(const std::atomic<bool>* revoked_flag) : revoked(revoked_flag) {}
  Visibility visibility;  // deadline set when the handler starts
  MessagePtr msg;         // keeps the record alive while it runs, even past a revocation
  // The partition was given away: do not start. Flags live as long as the worker.
  const std::atomic<bool>* revoked;
  std::uint64_t epoch = 0;
  std::int64_t offset = 0;
  std::size_t lane = 0;  // its partition's priority lane
  // Valid while the partition of `epoch` is assigned and the run is not abandoned: only a
  // finished entry leaves its partition, and a running one finishes only through its result or
  // its abandonment.
  void* entry = nullptr;
  std::uint64_t run = 0;
  int delivery = 0;
  std::chrono::milliseconds timeout{0};
  Clock::time_point started{};  // written by the handler thread under its slot's lock
  bool ran = false;
  DispatchResult result;
  // Who ends the run first: the handler thread, by finishing (kFinished), or the poll thread, by
  // abandoning it (kAbandoned). The winner alone may touch the record's parsed headers.
  enum : int { kRunning, kFinished, kAbandoned };
  std::atomic<int> claim{kRunning};
  SlotHold slot;  // taken for this run (DeliveryPolicy::slots); the handler may keep it
  // The record's type, set by the handler thread before the handler starts (so that a run
  // abandoned while it runs is counted under its type), and how long the handler took.
  std::atomic<TypeSeries*> series{nullptr};
  double seconds = 0;
  // Poll thread only:
  bool abandoned = false;
  Clock::time_point stuck_at = Clock::time_point::max();
};
using AttemptPtr = std::shared_ptr<Attempt>;

class HandlerPool {
 public:
  // A thread takes at most this many queued runs at a time.
  static constexpr std::size_t kMaxChunk = 16;
  // Runs of a chunk not started while one of them has run this long go back to the queue.
  static constexpr std::chrono::milliseconds kReclaimAfter{2};

  // `wake` is called (from a handler thread) when results are posted while the poll thread
  // said it is idle (SetPollIdle). `lane_weights`: one per priority lane (LaneTable::weights).
  HandlerPool(int threads, std::vector<int> lane_weights, const Dispatcher& dispatcher, Series& series,
              std::function<void()> wake);
  ~HandlerPool();
  HandlerPool(const HandlerPool&) = delete;
  HandlerPool& operator=(const HandlerPool&) = delete;

  void Start();
  // Hands runs to the threads (`batch` is emptied).
  void Submit(std::vector<AttemptPtr>& batch);
  // Swaps the runs finished so far into `out` (emptied first); false when there were none.
  bool TakeResults(std::vector<AttemptPtr>& out);
  // Waits up to `timeout` for results to be posted.
  void WaitForResults(std::chrono::milliseconds timeout);
  // Runs of slow slots' chunks that have not started go back to the head of the queue, for the
  // other threads; the runs of those chunks that finished are returned.
  void ReclaimSlow(Clock::time_point now, std::vector<AttemptPtr>& finished);
  // The run thread `i` is in now, if any; the copy keeps it alive.
  AttemptPtr Current(int i) const;
  int threads() const { return thread_count_; }
  // Runs queued and not taken by a thread yet, in all and of one lane.
  std::size_t queued() const { return queued_runs_.load(std::memory_order_relaxed); }
  std::size_t queued(std::size_t lane) const { return lane_queued_[lane].load(std::memory_order_relaxed); }
  std::size_t lanes() const { return queue_.lanes(); }

  // Around the poll thread's blocking wait: set idle before it, and check ResultsReady after
  // setting it, so that a result posted meanwhile is not missed.
  void SetPollIdle(bool idle) { poll_idle_.store(idle, idle ? std::memory_order_seq_cst : std::memory_order_relaxed); }
  bool ResultsReady() const { return results_ready_.load(); }

  // Records the poll thread is done with, released by a handler thread (see the .cpp).
  void Bury(MessagePtr record);
  void Bury(std::vector<MessagePtr>& records);  // emptied
  void FlushGraves();

  // Handler runs executing now (abandoned ones that still run included). Any thread.
  std::int64_t Running() const;
  // How far the worst run is past `factor` visibility timeouts; zero when none. Any thread.
  Clock::duration StuckFor(Clock::time_point now, int factor) const;

  // Lets the threads finish what is queued, then end (Stop joins them).
  void BeginStop();
  void Stop();

 private:
  // What one thread is running, for the visibility and stuck checks.
  struct Slot {
    std::mutex mu;
    AttemptPtr current;
    std::vector<AttemptPtr> pending;  // the chunk it took; [next, end) not started yet
    std::size_t next = 0;
    std::vector<AttemptPtr> finished;  // runs of the chunk done, not posted yet
  };
  std::size_t ChunkSize(std::size_t queued) const;
  void Loop(Slot& slot);
  void RunOne(Attempt& a, std::vector<HeaderView>& headers, TypeSeries*& last_type);
  static void Finished(Attempt& a);
  void Post(std::vector<AttemptPtr>& finished);
  void HandOverGraves();  // under mu_
  // Under mu_: sets the counters after the queue changed.
  void Recount();

  static constexpr std::size_t kGraveBatch = 256;

  const int thread_count_;
  const Dispatcher& dispatcher_;
  Series& series_;
  std::function<void()> wake_;
  std::vector<std::thread> threads_;
  std::unique_ptr<Slot[]> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  LaneQueues<AttemptPtr> queue_;  // runs are taken one by one, by the lanes' weights
  std::vector<MessagePtr> graves_;  // for a handler thread to release
  // The queues' sizes, in all and per lane, readable without the lock.
  std::atomic<std::size_t> queued_runs_{0};
  std::unique_ptr<std::atomic<std::size_t>[]> lane_queued_;
  bool stop_ = false;
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  std::vector<AttemptPtr> done_;
  std::atomic<bool> results_ready_{false};  // `done_` may be non-empty
  std::atomic<bool> poll_idle_{false};      // the poll thread is (about to be) blocked
  std::vector<MessagePtr> graveyard_;       // poll thread only
};

}  // namespace kbus::kafka::worker
