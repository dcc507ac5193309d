#pragma once
// Launcher::Impl: the launcher's state and the declarations of its parts. Private to
// kbus::handlers, never installed. Where each part lives:
//   launcher.cpp          the public Launcher methods, the constructor's checks of the config,
//                         ParseReplyTopics, Backend::Follow's default
//   launcher_launch.cpp   the handlers: OnLaunchPayload, OnLaunch, Report/Reject, OnCancel
//   launcher_jobs.cpp     a job's thread: RunJob and its pieces, Label, EventFor/ExitedFor
//   launcher_kept.cpp     kept jobs (backends that keep them): Adopt, AdoptOne, LetGo; Shutdown
//   launcher_metrics.cpp  the operations port: ReportTo, the health probe, the Count* helpers
//
// Invariants (every one under `mu` unless said otherwise):
// - The start handshake: OnLaunch puts the job in `running`, starts its thread and waits on `cv`
//   until the job thread sets `start_known`, and then either `start_failed` (the job never ran:
//   the handler reports `failure` with its acknowledgement) or `started_answered` (the broker
//   answered for ProcessStarted: the handler acknowledges the command). A job thread ends only
//   once `started_answered`, so that no callback into the launcher is due after Shutdown.
// - `threads` counts the job threads alive: up before a thread starts, down as it ends (with a
//   notify of `cv`). Shutdown waits for it to reach 0.
// - `running` holds every attempt whose thread is alive, by (job_id, attempt). `finished` holds
//   the attempts that ran or were reported here (a launch of one is a duplicate);
//   `early_cancels` the cancels seen, by attempt, attempt 0 for the whole job (a later launch
//   of one is reported cancelled, not run). Both forget past config.remembered_jobs.
// - Kept jobs (backends that keep them, Backend::KeepsJobs): a job carries its partition's label
//   and a kbus.launch label (Label). At a revoke (LetGo) or Shutdown its control is detached:
//   it goes on running and its thread ends without reporting (stats.detached). The next owner
//   of the partition adopts it (Adopt): a job with `kept` set, `start_known` and
//   `started_answered` from the outset, followed rather than run, its events reported here.

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "launch_checks.hpp"

namespace kbus::handlers::detail {

// What a kept job's labels carry (label kbus.launch) so that another launcher can report for it:
// the command's fields that its events need, and the envelope ids they inherit. Never its
// environment or arguments.
struct LaunchLabel {
  std::string job_id;
  int attempt = 1;
  std::string program;
  std::string reply_to;
  std::int64_t run_timeout_ms = 0;
  std::int64_t heartbeat_ms = 0;
  std::string message_id, correlation_id, workflow_id, traceparent, type, kind;
};

}  // namespace kbus::handlers::detail

template <>
struct kbus::JsonTraits<kbus::handlers::detail::LaunchLabel> {
  using T = kbus::handlers::detail::LaunchLabel;
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("job_id", &T::job_id), kbus::Field("attempt", &T::attempt), kbus::Field("program", &T::program),
      kbus::Field("reply_to", &T::reply_to), kbus::Field("run_timeout_ms", &T::run_timeout_ms),
      kbus::Field("heartbeat_ms", &T::heartbeat_ms), kbus::Field("message_id", &T::message_id),
      kbus::Field("correlation_id", &T::correlation_id), kbus::Field("workflow_id", &T::workflow_id),
      kbus::Field("traceparent", &T::traceparent, kbus::kOmitDefault), kbus::Field("type", &T::type),
      kbus::Field("kind", &T::kind));
};

namespace kbus::handlers {

namespace detail {

inline constexpr std::string_view kPartitionLabel = "kbus.partition";
inline constexpr std::string_view kLaunchLabel = "kbus.launch";

// The parts of a command's envelope its events inherit, owned (an Envelope only views).
struct Parent {
  std::string message_id, correlation_id, workflow_id, traceparent, type, kind;

  explicit Parent(const Envelope& e)
      : message_id(e.message_id), correlation_id(e.correlation_id), workflow_id(e.workflow_id),
        traceparent(e.traceparent), type(e.type), kind(e.kind) {}
  explicit Parent(const LaunchLabel& l)
      : message_id(l.message_id), correlation_id(l.correlation_id), workflow_id(l.workflow_id),
        traceparent(l.traceparent), type(l.type), kind(l.kind) {}

  Envelope View() const {
    Envelope e;
    e.message_id = message_id;
    e.correlation_id = correlation_id;
    e.workflow_id = workflow_id;
    e.traceparent = traceparent;
    e.type = type;
    e.kind = kind;
    return e;
  }
};

// One attempt of a job; attempt 0 stands for every attempt (a job-wide cancel). A struct, not a
// joined string: no job id, whatever bytes it holds, can name another job's attempt.
struct AttemptKey {
  std::string job_id;
  int attempt = 0;
  auto operator<=>(const AttemptKey&) const = default;
};

// Remembers the last `limit` keys.
class Recent {
 public:
  explicit Recent(std::size_t limit) : limit_(limit) {}
  bool Contains(const AttemptKey& key) const { return set_.count(key) != 0; }
  void Add(AttemptKey key) {
    if (!set_.insert(key).second) return;
    order_.push_back(std::move(key));
    if (order_.size() > limit_) {
      set_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  std::size_t limit_;
  std::set<AttemptKey> set_;
  std::deque<AttemptKey> order_;
};

// Why a launch started nothing: the reason label of kbus_launcher_refused_total.
enum Refusal : std::size_t {
  kRefusedDecodeError,     // no job_id or attempt to report to: dead-lettered
  kRefusedEmptyJobId,      // dead-lettered
  kRefusedReplyTo,         // reply_to not allowed: dead-lettered
  kRefusedInvalidField,    // another field does not decode: launch_failed
  kRefusedBadJobId,        // too long, control characters: launch_failed
  kRefusedDuration,        // run_timeout or heartbeat_interval out of bounds: launch_failed
  kRefusedProgram,         // not in the allow-list: launch_failed
  kRefusedEnvironment,     // a variable the allow-list does not allow: launch_failed
  kRefusedDuplicate,       // the attempt runs or ran here: acknowledged, nothing started
  kRefusedCancelledEarly,  // cancelled before it started: reported as cancelled
  kRefusalCount
};
inline constexpr std::array<std::string_view, kRefusalCount> kRefusalNames = {
    "decode_error",          "empty_job_id",           "reply_to_not_allowed", "invalid_field",
    "bad_job_id",            "duration_out_of_bounds", "program_not_allowed",  "env_not_allowed",
    "duplicate",             "cancelled_before_start"};
// Every outcome a ProcessExited may carry: the outcome label of kbus_launcher_exits_total.
inline constexpr std::array<std::string_view, 7> kExitOutcomes = {"succeeded",     "failed", "timed_out",    "cancelled",
                                                                 "launch_failed", "lost",   "out_of_memory"};
}  // namespace detail

struct Launcher::Impl {
  struct Job {
    Job(const LaunchProcess& cmd, const Envelope& envelope) : command(cmd), parent(envelope) {}
    Job(const LaunchProcess& cmd, const detail::LaunchLabel& label) : command(cmd), parent(label) {}
    LaunchProcess command;
    detail::Parent parent;
    std::string partition;        // PartitionLabel of its command
    std::optional<KeptJob> kept;  // adopted: the backend's job it follows
    ProcessSpec spec;
    ProcessControl control;
    SlotHold slot;
    std::size_t next_index = 0;  // event ids derive from the command's id and this
    std::string cancel_reason;   // set under mu before control.Cancel()
    bool stopping = false;       // the launcher is shutting down
    // The start handshake with the handler: set by the job thread, under `mu`.
    bool start_known = false;
    bool start_failed = false;
    bool started_answered = false;  // the broker answered for ProcessStarted
    ProcessExited failure;       // when start_failed: what the handler reports
    using Clock = std::chrono::steady_clock;
    int last_percent = -1;       // job thread only
    Clock::time_point started_at{};
    const Clock::time_point accepted_at = Clock::now();  // for the liveness probe
  };
  using JobPtr = std::shared_ptr<Job>;

  Impl(LauncherConfig c, AllowList a, Backend& b, EventSink& e)
      : config(std::move(c)), allow(std::move(a)), backend(b), events(e),
        slots(std::make_shared<Slots>(config.max_processes)), finished(config.remembered_jobs),
        early_cancels(config.remembered_jobs) {}

  LauncherConfig config;
  AllowList allow;
  Backend& backend;
  EventSink& events;
  std::shared_ptr<Slots> slots;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::pair<std::string, int>, JobPtr> running;  // by (job_id, attempt)
  detail::Recent finished;       // attempts that ran here
  detail::Recent early_cancels;  // job ids cancelled while nothing of theirs ran here
  int threads = 0;               // job threads alive
  bool shut = false;
  LauncherStats stats;

  // The operations port's series (ReportTo), looked up once; null until then.
  struct Meters {
    struct Program {
      metrics::Counter* launches = nullptr;
      std::array<metrics::Counter*, detail::kExitOutcomes.size()> exits{};
      metrics::Histogram* duration = nullptr;
    };
    std::map<std::string, Program, std::less<>> programs;  // by allow-list name
    std::array<metrics::Counter*, detail::kRefusalCount> refused{};
    metrics::Gauge* running = nullptr;
    metrics::Counter* adopted = nullptr;
    metrics::Counter* left_running = nullptr;
    metrics::CollectorHandle collector;
    health::ProbeHandle probe;
  };
  std::atomic<Meters*> meters{nullptr};
  std::unique_ptr<Meters> meters_owner;  // last: unregisters before the rest goes

  // ---- launcher_launch.cpp ----
  Outcome OnLaunchPayload(const JsonValue& payload, Context& ctx);
  Outcome OnLaunch(const LaunchProcess& cmd, Context& ctx, std::string invalid);
  Outcome Report(const LaunchProcess& cmd, Context& ctx, ProcessExited exited);
  static Outcome Reject(std::string why);
  Outcome OnCancel(const CancelProcess& cmd, Context&);

  // ---- launcher_jobs.cpp ----
  // An event of `job`'s run, a child of its command. Job thread only (next_index).
  template <class E>
  static OutgoingRecord EventFor(Job& job, const E& event);
  static ProcessExited ExitedFor(const LaunchProcess& cmd, ProcessOutcome outcome, std::string error);
  static void Label(Job& job);
  // On the job's own thread, from OnLaunch or AdoptOne: runs or follows the job to its end and
  // reports it. The pieces of RunJob, in order:
  void RunJob(const JobPtr& job);
  ProcessObserver Observer(const JobPtr& job);
  // Leaves a detached job running for the next owner of its partition: its thread ends, nothing
  // reported.
  void LeaveRunning(const JobPtr& job, const ProcessResult& result);
  // The ProcessExited of a run; takes its error and result line out of `result`.
  static ProcessExited ExitedOf(const LaunchProcess& cmd, ProcessResult& result);
  // Under mu. A job that never started goes back to the handler waiting in OnLaunch, which
  // reports it (true: the thread ends here); a cancelled one's error says why.
  bool Settle(const JobPtr& job, const ProcessResult& result, ProcessExited& exited);

  // ---- launcher_kept.cpp ----
  void Adopt(const std::vector<std::string>& partitions);
  void AdoptOne(KeptJob kept, const detail::LaunchLabel& label, const std::string& partition);
  void LetGo(const std::vector<std::string>& partitions);
  void Shutdown();

  // ---- launcher_metrics.cpp ----
  void ReportTo(metrics::Registry& registry, health::Board& board);
  health::Report Probe() const;
  void CountRefusal(detail::Refusal why);
  void CountLaunch(std::string_view program);
  void CountExit(std::string_view program, std::string_view outcome, const ProcessResult* ran);
};

}  // namespace kbus::handlers
