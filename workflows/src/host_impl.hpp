#pragma once
// WorkflowHost::Impl: the host's state and the declarations of its parts. Private to
// kbus::workflows, never installed. Where each part lives:
//   host.cpp             the public WorkflowHost methods, the spec's checks, Start/Stop,
//                        WorkflowContext's own methods
//   host_step.cpp        one message or timeout: OnMessage, Rekey, Process and its pieces,
//                        the state write (Install, Stored, RollBack)
//   host_partitions.cpp  assignment, revocation, loading a partition's states, readiness
//   host_timers.cpp      the timer thread, FireDue, and expiry of finished instances
//   host_metrics.cpp     the operations port: ReportTo, the health probe, Tallied's counts
//
// Invariants (every one under `mu` unless said otherwise):
// - A Partition is one assignment of an input partition. OnAssigned makes a new one (a new
//   epoch) even for a number already held; OnRevoked sets `revoked` and drops it from
//   `partitions`. `revoked` never goes back to false: whoever still holds the shared_ptr (a
//   loader, a step, a write-ahead verdict) checks it before changing anything.
// - `ready`: the partition's states are loaded; until then its messages wait in WaitReady and
//   FireDue skips it.
// - Busy marks: a step puts its workflow id in `busy` before it reads the instance and takes it
//   out when it returns (BusyGuard). At most one step runs per instance; key ordering on the
//   input topic already ensures that, the mark is the belt to its braces.
// - The instance in `instances` is what the store holds, or runs ahead of it only while the
//   worker holds the key: a write-ahead step installs its record before the store has
//   acknowledged it, and the worker keeps the instance's next message and the step's messages
//   back until then. A write that fails for good puts the stored version back (RollBack).
// - `timers` holds one TimerKey per timeout of every instance held; `fired` remembers when a
//   timeout's message was sent so that it is not sent again before refire_after.
// - `by_status` and `pending` count the instances held (Track, on every entry and exit);
//   `stats.instances` counts them across all partitions.

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kbus/workflows/host.hpp"
#include "record.hpp"

namespace kbus::workflows {

namespace detail {

// What became of one message or timeout: the result label of kbus_workflow_steps_total.
enum StepResult : std::size_t {
  kStepApplied,       // the handler ran and the new state was written
  kStepUnchanged,     // the handler ran and changed nothing: nothing written
  kStepDuplicate,     // processed before (or a timeout already fired or cancelled)
  kStepLate,          // for a completed or failed instance
  kStepNotFound,      // for no instance
  kStepNoId,          // no workflow id: dead-lettered
  kStepRekeyed,       // forwarded into the input topic
  kStepExpired,       // a finished instance's retention ended: removed
  kStepRetried,       // not handled now (partition not ready, state not written, ...)
  kStepDeadLettered,  // does not decode, state too large
  kStepError,         // the handler threw: retried by the bus
  kStepResultCount,
  kStepUnset = kStepResultCount,
};
inline constexpr std::array<std::string_view, kStepResultCount> kStepResultNames = {
    "applied",  "unchanged", "duplicate", "late",          "not_found", "no_id",
    "rekeyed",  "expired",   "retried",   "dead_lettered", "error"};

// Instance statuses, as the status label of kbus_workflow_instances.
inline constexpr std::array<std::string_view, 3> kStatuses = {kRunning, kCompleted, kFailed};

inline double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// One pending timeout of one instance, ordered by when it is due.
struct TimerKey {
  std::int64_t due_ms;
  std::string workflow_id;
  std::string timeout_id;
  auto operator<=>(const TimerKey&) const = default;
};

}  // namespace detail

struct WorkflowHost::Impl {
  using Record = detail::Instance;
  using StepResult = detail::StepResult;

  // One assignment of an input partition and the instances of its state partition.
  struct Partition {
    std::int32_t number = -1;
    std::uint64_t epoch = 0;
    bool ready = false;
    bool revoked = false;
    std::unordered_map<std::string, Record> instances;
    std::set<std::string> busy;  // ids a handler is working on
    // Ids whose last state record the worker has not reported on yet (its verdict): their
    // instance in memory may be ahead of the store, so nothing may act on it. The worker holds
    // their next message meanwhile anyway; this covers a delivery abandoned after it wrote.
    std::set<std::string> unconfirmed;
    std::set<detail::TimerKey> timers;
    std::map<std::pair<std::string, std::string>, std::int64_t> fired;  // (id, timeout) -> when
    // For the operations port: instances by status (kStatuses), their pending timeouts (not the
    // internal expiry), and why the load has not succeeded yet.
    std::array<std::int64_t, detail::kStatuses.size()> by_status{};
    std::int64_t pending = 0;
    int load_attempts = 0;
    std::string load_error;
  };
  using PartitionPtr = std::shared_ptr<Partition>;

  // Throws std::invalid_argument for an unusable spec or config (host.cpp).
  Impl(const detail::Spec& s, HostConfig c, StateStore& st);

  const detail::Spec spec;  // a copy: the Workflow need not outlive the host
  HostConfig config;
  StateStore& store;
  std::string timeout_type;

  mutable std::mutex mu;
  std::condition_variable cv;  // a partition became ready, was revoked, or the host stops
  std::map<std::int32_t, PartitionPtr> partitions;
  std::uint64_t next_epoch = 1;
  // A thread per assigned partition, loading its states; joined by the next OnAssigned once
  // done, or by Stop.
  struct Loader {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
  };
  std::vector<Loader> loaders;
  HostStats stats;
  bool stopping = false;
  std::thread timer;
  std::condition_variable timer_cv;        // timers changed, or the host stops
  bool timer_started = false;              // under mu
  std::atomic<bool> timer_running{false};  // the timer thread is in its loop

  // The operations port's series (ReportTo), looked up once; null until then.
  struct Meters {
    // Per route: spec.steps in order, then the timeout messages.
    std::vector<std::array<metrics::Counter*, detail::kStepResultCount>> steps;
    metrics::Histogram* write_seconds = nullptr;
    metrics::Counter* write_errors = nullptr;
    metrics::Histogram* load_seconds = nullptr;
    metrics::Counter* load_errors = nullptr;
    metrics::Counter* fired = nullptr;
    std::array<metrics::Counter*, 3> runs{};  // started, completed, failed
    std::array<metrics::Gauge*, detail::kStatuses.size()> instances{};
    metrics::Gauge* pending = nullptr;
    metrics::Gauge* loading = nullptr;
    metrics::Gauge* ready = nullptr;
    metrics::CollectorHandle collector;
    health::ProbeHandle probe;
  };
  std::atomic<Meters*> meters{nullptr};
  std::unique_ptr<Meters> meters_owner;  // last: unregisters before the rest goes

  Meters* M() const { return meters.load(std::memory_order_acquire); }

  template <class F>
  void Count(F f) {
    std::lock_guard lock(mu);
    f(stats);
  }

  // Runs one route's handling and counts what became of it: the result `handle` sets, or one
  // read from its outcome; a handler's exception counts as an error and propagates.
  template <class F>
  Outcome Tallied(std::size_t route, F&& handle) {
    StepResult result = detail::kStepUnset;
    try {
      Outcome outcome = handle(result);
      if (result == detail::kStepUnset) {
        result = outcome.kind() == Outcome::Kind::kRetry        ? detail::kStepRetried
                 : outcome.kind() == Outcome::Kind::kDeadLetter ? detail::kStepDeadLettered
                                                               : detail::kStepApplied;
      }
      if (Meters* m = M()) m->steps[route][result]->Inc();
      return outcome;
    } catch (...) {
      if (Meters* m = M()) m->steps[route][detail::kStepError]->Inc();
      throw;
    }
  }

  // ---- host_metrics.cpp ----
  void ReportTo(metrics::Registry& registry, health::Board& board);
  void Collect(Meters& m) const;
  health::Report Probe() const;
  // An instance record entering (+1) or leaving (-1) a partition's counts. Under mu.
  static void Track(Partition& p, const Record& in, int sign);

  // ---- host_partitions.cpp ----
  void OnAssigned(const std::vector<std::int32_t>& numbers);
  void OnRevoked(const std::vector<std::int32_t>& numbers);
  // On a loader thread: reads the partition's states until it succeeds, is revoked or stops.
  void Load(const PartitionPtr& p);
  // The partition, once loaded; nullptr when it is not (or no longer) ours.
  PartitionPtr WaitReady(std::int32_t number, Context& ctx);

  // ---- host_step.cpp ----
  // Everything one handling of a message or timeout carries from one piece of Process to the
  // next. Lives on the handler thread's stack for the length of Process.
  struct Turn {
    Turn(PartitionPtr partition, std::int32_t n, const std::string& workflow_id, Context& c,
         const detail::Step* s, const JsonValue* message, const std::string* timeout)
        : p(std::move(partition)), number(n), id(workflow_id), ctx(c), step(s), payload(message),
          timeout_id(timeout) {}
    PartitionPtr p;
    std::int32_t number;
    const std::string& id;
    Context& ctx;
    const detail::Step* step;        // the message's route; null for a timeout
    const JsonValue* payload;        // null for a timeout
    const std::string* timeout_id;   // null for a message
    std::string message_id;          // DedupeId: what the instance remembers
    std::int64_t now = 0;
    std::optional<Record> current;   // the instance as it was, if there was one
    Record next;                     // what it becomes
    bool fresh = false;              // a new run starts
    bool upgraded = false;           // the state was upgraded to this program's schema
    const detail::StepFn* run = nullptr;  // the handler; null: none runs (dropped timeouts)
    std::optional<Timeout> fired;    // the timeout being handled
  };
  // Releases an instance's busy mark when a handling ends, however it ends.
  struct BusyGuard {
    Impl* impl;
    PartitionPtr p;
    std::string id;
    ~BusyGuard();
  };
  // What a step wrote, counted once the store has it.
  struct Written {
    std::uint64_t started = 0, completed = 0, failed = 0;
    std::size_t bytes = 0;
    std::chrono::steady_clock::time_point began;
  };

  Outcome OnMessage(const detail::Step& step, const JsonValue& payload, Context& ctx, StepResult& result);
  Outcome OnTimeoutMessage(const JsonValue& payload, Context& ctx, StepResult& result);
  Outcome Rekey(const InboundRecord& record, const std::string& id, Context& ctx);
  Outcome NotFoundOutcome(const detail::Step& step, const std::string& id, Context& ctx, std::string_view why);
  Outcome Process(std::int32_t number, const std::string& id, Context& ctx, const detail::Step* step,
                  const JsonValue* payload, const std::string* timeout_id, StepResult& result);
  // The pieces of Process, in order. Those returning an optional end the handling with that
  // outcome when they return one.
  std::optional<Outcome> Claim(Turn& t);
  std::optional<Outcome> Dedupe(Turn& t, StepResult& result);
  std::optional<Outcome> ChooseTimeout(Turn& t, StepResult& result);
  std::optional<Outcome> ChooseMessage(Turn& t, StepResult& result);
  void BeginRun(Turn& t);
  Outcome RunStep(Turn& t, StepResult& result);
  std::optional<Outcome> Finish(Turn& t, WorkflowContext& wctx, Written& written);
  std::optional<Outcome> End(Turn& t, WorkflowContext& wctx, Written& written);
  Outcome Write(Turn& t, Written written);
  Status UpgradeState(Record& in) const;
  OutgoingRecord DeadLetterOf(const Record& in, const WorkflowContext::DeadLetterRequest& req) const;
  // Makes `next` the instance in memory, in place of `current`, with its timers.
  void Install(Partition& p, const std::string& id, const std::optional<Record>& current, Record next);
  void Stored(const Written& w);
  void RollBack(const PartitionPtr& p, const std::string& id, std::uint64_t version,
                const std::optional<Record>& previous, const Status& why);

  // ---- host_timers.cpp ----
  int FireDue();
  void TimerLoop();
  // The instance's retention timeout fired: removes it from the store and from memory.
  Outcome Expire(const PartitionPtr& p, const Record& current, Context& ctx);

  // ---- host.cpp ----
  void Stop();
  static InstanceInfo Info(const Record& in);
};

}  // namespace kbus::workflows
