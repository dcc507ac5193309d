#include "kbus/handlers/launcher.hpp"

#include <array>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <deque>
#include <map>
#include <optional>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>

#include "kbus/codec.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/log.hpp"
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

namespace {

using detail::LaunchLabel;
using detail::Shown;

constexpr std::string_view kPartitionLabel = "kbus.partition";
constexpr std::string_view kLaunchLabel = "kbus.launch";

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

// The fields a LaunchProcess needs before any event can be sent for it: which attempt of which
// job, and where to. Decoded first, so that a command whose other fields are bad is still
// reported (launch_failed) rather than only dead-lettered.
struct LaunchIdentity {
  std::string job_id;
  int attempt = 1;
  std::string reply_to;
  std::string program;
};

// "" when the identity decodes, else why (naming the field).
std::string ReadIdentity(const JsonValue& payload, LaunchIdentity& id) {
  if (!payload.IsObject()) return "the payload is not a JSON object";
  const auto job = payload.Find("job_id");
  if (!job || !job->IsString()) return "job_id: missing or not a string";
  id.job_id = std::string(job->GetString());
  if (const auto a = payload.Find("attempt")) {
    const auto n = a->AsInt64();
    if (!n || *n < 1 || *n > std::numeric_limits<int>::max()) return "attempt: not an integer from 1 to 2147483647";
    id.attempt = static_cast<int>(*n);
  }
  if (const auto r = payload.Find("reply_to")) {
    if (!r->IsString()) return "reply_to: not a string";
    id.reply_to = std::string(r->GetString());
  }
  if (const auto p = payload.Find("program"); p && p->IsString()) id.program = std::string(p->GetString());
  return {};
}

constexpr int kDeliverTries = 10;
constexpr std::chrono::seconds kDeliverPause{1};

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
constexpr std::array<std::string_view, kRefusalCount> kRefusalNames = {
    "decode_error",          "empty_job_id",           "reply_to_not_allowed", "invalid_field",
    "bad_job_id",            "duration_out_of_bounds", "program_not_allowed",  "env_not_allowed",
    "duplicate",             "cancelled_before_start"};
// Every outcome a ProcessExited may carry: the outcome label of kbus_launcher_exits_total.
constexpr std::array<std::string_view, 7> kExitOutcomes = {"succeeded",     "failed", "timed_out",    "cancelled",
                                                          "launch_failed", "lost",   "out_of_memory"};
// A job this long past its run_timeout (beyond twice the kill grace) has a stuck supervisor.
constexpr std::chrono::seconds kStuckMargin{60};

}  // namespace

struct Launcher::Impl {
  struct Job {
    Job(const LaunchProcess& cmd, const Envelope& envelope) : command(cmd), parent(envelope) {}
    Job(const LaunchProcess& cmd, const LaunchLabel& label) : command(cmd), parent(label) {}
    LaunchProcess command;
    Parent parent;
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
  Recent finished;       // attempts that ran here
  Recent early_cancels;  // job ids cancelled while nothing of theirs ran here
  int threads = 0;       // job threads alive
  bool shut = false;
  LauncherStats stats;

  // The operations port's series (ReportTo), looked up once; null until then.
  struct Meters {
    struct Program {
      metrics::Counter* launches = nullptr;
      std::array<metrics::Counter*, kExitOutcomes.size()> exits{};
      metrics::Histogram* duration = nullptr;
    };
    std::map<std::string, Program, std::less<>> programs;  // by allow-list name
    std::array<metrics::Counter*, kRefusalCount> refused{};
    metrics::Gauge* running = nullptr;
    metrics::Counter* adopted = nullptr;
    metrics::Counter* left_running = nullptr;
    metrics::CollectorHandle collector;
    health::ProbeHandle probe;
  };
  std::atomic<Meters*> meters{nullptr};
  std::unique_ptr<Meters> meters_owner;  // last: unregisters before the rest goes

  void CountRefusal(Refusal why) {
    if (Meters* m = meters.load(std::memory_order_acquire)) m->refused[why]->Inc();
  }
  void CountLaunch(std::string_view program) {
    Meters* m = meters.load(std::memory_order_acquire);
    if (m == nullptr) return;
    if (auto it = m->programs.find(program); it != m->programs.end()) it->second.launches->Inc();
  }
  void CountExit(std::string_view program, std::string_view outcome, const ProcessResult* ran) {
    Meters* m = meters.load(std::memory_order_acquire);
    if (m == nullptr) return;
    auto it = m->programs.find(program);
    if (it == m->programs.end()) return;
    for (std::size_t i = 0; i < kExitOutcomes.size(); ++i) {
      if (kExitOutcomes[i] == outcome) it->second.exits[i]->Inc();
    }
    if (ran != nullptr) it->second.duration->Observe(std::chrono::duration<double>(ran->duration).count());
  }

  health::Report Probe() const {
    health::Report r;
    const auto now = Job::Clock::now();
    std::lock_guard lock(mu);
    for (const auto& [key, job] : running) {
      const auto limit = job->command.run_timeout;
      if (limit.count() <= 0) continue;
      if (now - job->accepted_at > limit + 2 * config.kill_grace + kStuckMargin) {
        r.live = false;
        r.reason = "job '" + Shown(key.first) + "' attempt " + std::to_string(key.second) +
                   " has run past its run_timeout by more than twice the kill grace and a minute: "
                   "its supervision is stuck";
        break;
      }
    }
    if (shut) {
      r.ready = false;
      if (r.reason.empty()) r.reason = "the launcher is shutting down";
    }
    r.active_work = stats.running;
    r.details = {{"running", std::int64_t{stats.running}},
                 {"max_processes", std::int64_t{config.max_processes}},
                 {"host", config.host}};
    return r;
  }

  void ReportTo(metrics::Registry& registry, health::Board& board) {
    if (meters_owner) throw std::logic_error("Launcher::ReportTo called twice");
    auto m = std::make_unique<Meters>();
    auto& launches = registry.AddCounter("kbus_launcher_launches_total",
                                         "Processes the launcher began to start, by allow-list program.", {"program"});
    auto& exits = registry.AddCounter(
        "kbus_launcher_exits_total",
        "Launched processes that ended, by allow-list program and the outcome their ProcessExited reported.",
        {"program", "outcome"});
    auto& duration = registry.AddHistogram("kbus_launcher_process_duration_seconds",
                                           "How long launched processes ran, from start to exit, by program.",
                                           {"program"}, metrics::LongDurationBuckets());
    for (const auto& [name, program] : allow.programs()) {
      Meters::Program& p = m->programs[name];
      p.launches = &launches.With({name});
      for (std::size_t i = 0; i < kExitOutcomes.size(); ++i) p.exits[i] = &exits.With({name, kExitOutcomes[i]});
      p.duration = &duration.With({name});
    }
    auto& refused = registry.AddCounter(
        "kbus_launcher_refused_total",
        "LaunchProcess commands that started nothing, by reason (dead-lettered, reported launch_failed, "
        "duplicates, cancelled before they started).",
        {"reason"});
    for (std::size_t i = 0; i < kRefusalCount; ++i) m->refused[i] = &refused.With({kRefusalNames[i]});
    m->running = &registry.AddGauge("kbus_launcher_processes_running", "Processes running now.").With({});
    m->adopted = &registry
                      .AddCounter("kbus_launcher_adopted_total",
                                  "Kept jobs (containers) this launcher followed after a restart or a rebalance.")
                      .With({});
    m->left_running = &registry
                           .AddCounter("kbus_launcher_left_running_total",
                                       "Kept jobs this launcher let go of, still running, at a revoke or its shutdown.")
                           .With({});
    registry.AddGauge("kbus_launcher_max_processes", "Processes the launcher runs at once at most (--max-processes).")
        .With({})
        .Set(config.max_processes);
    m->collector = registry.OnCollect([this, g = m->running] {
      std::lock_guard lock(mu);
      g->Set(stats.running);
    });
    m->probe = board.Add("launcher", [this] { return Probe(); });
    meters.store(m.get(), std::memory_order_release);
    meters_owner = std::move(m);
  }

  // An event of `job`'s run, a child of its command. Job thread only (next_index).
  template <class E>
  static OutgoingRecord EventFor(Job& job, const E& event) {
    SendOptions options;
    options.topic = job.command.reply_to;  // empty: the event's own topic
    const Envelope parent = job.parent.View();
    return BuildRecord(event, std::move(options), &parent, job.next_index++);
  }

  static ProcessExited ExitedFor(const LaunchProcess& cmd, ProcessOutcome outcome, std::string error) {
    ProcessExited exited;
    exited.job_id = cmd.job_id;
    exited.attempt = cmd.attempt;
    exited.outcome = std::string(OutcomeName(outcome));
    exited.error = ToValidUtf8(error);  // may quote the system or the program: text on the wire
    return exited;
  }

  // Reports an attempt that never ran: its exit event goes out with the command's
  // acknowledgement.
  Outcome Report(const LaunchProcess& cmd, Context& ctx, ProcessExited exited) {
    Log(LogLevel::kWarn, "launch not run",
        {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"program", Shown(cmd.program)},
         {"outcome", exited.outcome}, {"error", Shown(exited.error, 512)}});
    SendOptions options;
    options.topic = cmd.reply_to;
    ctx.Publish(exited, std::move(options));
    std::lock_guard lock(mu);
    if (exited.outcome == OutcomeName(ProcessOutcome::kLaunchFailed)) ++stats.launch_failed;
    finished.Add({cmd.job_id, cmd.attempt});
    return Ack();
  }

  static Outcome Reject(std::string why) {
    Log(LogLevel::kWarn, "launch dead-lettered", {{"error", Shown(why, 512)}});
    return DeadLetter("LaunchProcess " + std::move(why));
  }

  // The launch handler, on the raw payload: whatever a command holds, either an event reports it
  // or (when no event could say which attempt it was, or go anywhere allowed) a dead letter.
  Outcome OnLaunchPayload(const JsonValue& payload, Context& ctx) {
    LaunchIdentity id;
    if (std::string why = ReadIdentity(payload, id); !why.empty()) {
      CountRefusal(kRefusedDecodeError);
      return Outcome::DeadLetterFor("decode-error", "LaunchProcess " + why);
    }
    if (id.job_id.empty()) {
      CountRefusal(kRefusedEmptyJobId);
      return Reject("has an empty job_id");
    }
    if (std::string why = detail::CheckReplyTo(id.reply_to, config.reply_topics); !why.empty()) {
      CountRefusal(kRefusedReplyTo);
      return Reject(std::move(why));
    }
    Result<LaunchProcess> decoded = FromJsonValue<LaunchProcess>(payload);
    if (!decoded.ok()) {
      LaunchProcess partial;
      partial.job_id = std::move(id.job_id);
      partial.attempt = id.attempt;
      partial.reply_to = std::move(id.reply_to);
      partial.program = std::move(id.program);
      return OnLaunch(partial, ctx, "the command does not decode: " + decoded.error().message());
    }
    return OnLaunch(decoded.value(), ctx, {});
  }

  // `invalid`: why the command cannot run although it names its attempt (a field that did not
  // decode), or empty.
  Outcome OnLaunch(const LaunchProcess& cmd, Context& ctx, std::string invalid) {
    auto refuse = [&](std::string error, Refusal why) {
      CountRefusal(why);
      return Report(cmd, ctx, ExitedFor(cmd, ProcessOutcome::kLaunchFailed, std::move(error)));
    };
    {
      std::lock_guard lock(mu);
      if (running.count({cmd.job_id, cmd.attempt}) != 0 || finished.Contains({cmd.job_id, cmd.attempt})) {
        ++stats.duplicates;
        CountRefusal(kRefusedDuplicate);
        Log(LogLevel::kInfo, "launch of an attempt that runs or ran here: not started again",
            {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}});
        return Ack();
      }
    }
    if (!invalid.empty()) return refuse(std::move(invalid), kRefusedInvalidField);
    if (std::string why = detail::CheckJobId(cmd.job_id); !why.empty()) return refuse(std::move(why), kRefusedBadJobId);
    if (std::string why = detail::CheckDurations(cmd); !why.empty()) return refuse(std::move(why), kRefusedDuration);
    Result<ProcessSpec> spec = allow.Resolve(cmd.program, cmd.args, cmd.env);
    if (!spec.ok()) {
      const bool listed = allow.programs().find(cmd.program) != allow.programs().end();
      return refuse(spec.error().message(), listed ? kRefusedEnvironment : kRefusedProgram);
    }

    auto job = std::make_shared<Job>(cmd, ctx.envelope());
    job->spec = std::move(spec.value());
    job->spec.run_timeout = cmd.run_timeout;
    job->spec.kill_grace = config.kill_grace;
    job->partition = Launcher::PartitionLabel(ctx.record().topic, ctx.record().partition);
    if (backend.KeepsJobs()) Label(*job);
    bool cancelled_early = false;
    {
      std::lock_guard lock(mu);
      if (shut) return Retry(std::chrono::seconds(1), "the launcher is shutting down");
      cancelled_early = early_cancels.Contains({cmd.job_id, 0}) || early_cancels.Contains({cmd.job_id, cmd.attempt});
      if (!cancelled_early) {
        running[{cmd.job_id, cmd.attempt}] = job;
        ++threads;
      }
    }
    if (cancelled_early) {
      CountRefusal(kRefusedCancelledEarly);
      return Report(cmd, ctx, ExitedFor(cmd, ProcessOutcome::kCancelled, "cancelled before it started"));
    }
    job->slot = ctx.KeepSlot();  // given back when the job's thread ends
    CountLaunch(cmd.program);
    std::thread([this, job] { RunJob(job); }).detach();

    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return job->start_known && (job->start_failed || job->started_answered); });
    if (!job->start_failed) return Ack();
    lock.unlock();
    return Report(cmd, ctx, std::move(job->failure));
  }

  // The labels a kept job carries, for the launcher that adopts it.
  static void Label(Job& job) {
    const LaunchProcess& cmd = job.command;
    const Parent& p = job.parent;
    job.spec.job_key = std::to_string(cmd.attempt) + ":" + cmd.job_id;
    const LaunchLabel label{cmd.job_id,       cmd.attempt,        cmd.program,   cmd.reply_to,
                            cmd.run_timeout.count(), cmd.heartbeat_interval.count(), p.message_id,
                            p.correlation_id, p.workflow_id,      p.traceparent, p.type,
                            p.kind};
    job.spec.labels = {{"kbus.job_id", cmd.job_id},
                       {"kbus.attempt", std::to_string(cmd.attempt)},
                       {"kbus.program", cmd.program},
                       {"kbus.reply_to", cmd.reply_to},
                       {std::string(kPartitionLabel), job.partition},
                       {std::string(kLaunchLabel), ToJson(label)}};
  }

  void RunJob(const JobPtr& job) {
    const LaunchProcess& cmd = job->command;
    ProcessObserver observer;
    observer.started = [&](int pid, const std::string& handle, std::chrono::milliseconds ran) {
      job->started_at = Job::Clock::now() - ran;
      if (job->kept) {
        // Its ProcessStarted went out from the launcher that started it.
        Log(LogLevel::kInfo, "job adopted",
            {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"program", Shown(cmd.program)},
             {"container", handle.substr(0, 12)}});
        return;
      }
      ProcessStarted started{cmd.job_id, cmd.attempt, cmd.program, pid, config.host, handle};
      // Posted before any progress, so a run's events are in order on their partition; the
      // handler acknowledges the command once the broker has it. The job thread does not wait:
      // the child's output and heartbeats go on meanwhile (a first send to a topic can take a
      // second on Kafka).
      events.Post(EventFor(*job, started), [this, job](const Status& s) {
        if (!s.ok()) {
          Log(LogLevel::kError, "ProcessStarted not delivered",
              {{"job_id", Shown(job->command.job_id)}, {"attempt", job->command.attempt}, {"error", Shown(s.error().message(), 512)}});
        }
        std::lock_guard lock(mu);
        job->started_answered = true;
        cv.notify_all();
      });
      Log(LogLevel::kInfo, "process started",
          {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"program", Shown(cmd.program)}, {"pid", pid}});
      std::lock_guard lock(mu);
      ++stats.started;
      ++stats.running;
      job->start_known = true;
      cv.notify_all();
    };
    observer.progress = [&](const Progress& p) {
      job->last_percent = p.percent;
      events.Post(EventFor(*job, ProcessProgress{cmd.job_id, cmd.attempt, p.percent, ToValidUtf8(p.message)}), {});
    };
    observer.tick = [&] {
      const auto elapsed =
          std::chrono::duration_cast<std::chrono::milliseconds>(Job::Clock::now() - job->started_at);
      events.Post(EventFor(*job, ProcessHeartbeat{cmd.job_id, cmd.attempt, elapsed, job->last_percent}), {});
    };
    observer.tick_interval =
        cmd.heartbeat_interval.count() > 0 ? cmd.heartbeat_interval : config.default_heartbeat;

    ProcessResult result;
    try {
      result = job->kept ? backend.Follow(*job->kept, job->spec, observer, job->control)
                         : backend.Run(job->spec, observer, job->control);
    } catch (const std::exception& e) {
      result = ProcessResult{};
      result.error = std::string("the ") + std::string(backend.name()) + " backend failed: " + e.what();
    }

    if (result.outcome == ProcessOutcome::kDetached && job->start_known) {
      // Left running for the next owner of its partition, who adopts it.
      Log(LogLevel::kInfo, "job left running for another launcher",
          {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"container", result.handle.substr(0, 12)}});
      job->slot.Release();
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return job->started_answered; });
      running.erase({cmd.job_id, cmd.attempt});
      ++stats.detached;
      if (Meters* m = meters.load(std::memory_order_acquire)) m->left_running->Inc();
      --stats.running;
      --threads;
      cv.notify_all();
      return;
    }
    if (result.outcome == ProcessOutcome::kDetached) result.outcome = ProcessOutcome::kCancelled;  // before it started
    ProcessExited exited = ExitedFor(cmd, result.outcome, std::move(result.error));
    exited.exit_code = result.exit_code;
    exited.signal = result.signal;
    exited.duration = result.duration;
    // The program's bytes, cut to a tail that may split a character: events carry UTF-8 only
    // (docs/delivery.md), so what is not becomes U+FFFD rather than failing the event.
    exited.stderr_tail = ToValidUtf8(result.stderr_tail);
    // Valid JSON (so valid UTF-8) of a bounded size: RunProcess kept only such a result line.
    exited.result = std::move(result.result);
    if (result.results_refused > 0) {
      // One line per run, however many bad lines the program printed.
      Log(LogLevel::kWarn, "result lines of a process ignored",
          {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"ignored", result.results_refused},
           {"last_error", Shown(result.result_refused_why, 512)},
           {"result_kept", exited.result.empty() ? "none" : "an earlier valid one"}});
    }
    {
      std::lock_guard lock(mu);
      if (!job->start_known) {
        // It never started: the handler is waiting, and reports it with its acknowledgement.
        job->failure = std::move(exited);
        job->start_known = job->start_failed = true;
        job->slot.Release();
        running.erase({cmd.job_id, cmd.attempt});
        CountExit(cmd.program, job->failure.outcome, nullptr);
        --threads;
        cv.notify_all();
        return;
      }
      if (result.outcome == ProcessOutcome::kCancelled) {
        if (job->stopping) {
          exited.outcome = "lost";
          exited.error = "the launcher stopped while it ran";
        } else {
          exited.error = job->cancel_reason.empty() ? "cancelled" : job->cancel_reason;
        }
      }
    }
    Log(LogLevel::kInfo, "process exited",
        {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"outcome", exited.outcome},
         {"exit_code", exited.exit_code}, {"signal", exited.signal}});
    const OutgoingRecord record = EventFor(*job, exited);
    for (int i = 1;; ++i) {
      Status s = events.Deliver(record);
      if (s.ok()) {
        // Reported: the backend may let the job go. Unreported, a kept job stays for the next
        // launcher to report.
        if (!result.handle.empty()) backend.Forget(result.handle);
        break;
      }
      Log(LogLevel::kError, "ProcessExited not delivered",
          {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"try", i}, {"error", Shown(s.error().message(), 512)}});
      if (i == kDeliverTries) break;
      std::this_thread::sleep_for(kDeliverPause);
    }
    job->slot.Release();
    std::unique_lock lock(mu);
    // The answer for ProcessStarted came before Exited's on an ordered sink; this wait keeps
    // Shutdown from returning while a callback into this launcher is still due.
    cv.wait(lock, [&] { return job->started_answered; });
    running.erase({cmd.job_id, cmd.attempt});
    finished.Add({cmd.job_id, cmd.attempt});
    CountExit(cmd.program, exited.outcome, &result);
    ++stats.exited;
    --stats.running;
    --threads;
    cv.notify_all();
  }

  Outcome OnCancel(const CancelProcess& cmd, Context&) {
    // No event answers a cancel, so a bad one can only be dead-lettered.
    if (std::string why = detail::CheckJobId(cmd.job_id); !why.empty()) {
      Log(LogLevel::kWarn, "cancel dead-lettered", {{"job_id", Shown(cmd.job_id)}, {"error", why}});
      return DeadLetter("CancelProcess " + why);
    }
    if (cmd.attempt < 0) return DeadLetter("CancelProcess attempt must not be negative (0: every attempt)");
    std::lock_guard lock(mu);
    int found = 0;
    for (auto it = running.lower_bound({cmd.job_id, 0}); it != running.end() && it->first.first == cmd.job_id; ++it) {
      if (cmd.attempt > 0 && it->first.second != cmd.attempt) continue;
      it->second->cancel_reason = cmd.reason.empty() ? "cancelled" : "cancelled: " + cmd.reason;
      it->second->control.Cancel();
      ++found;
    }
    ++stats.cancels;
    stats.cancelled += static_cast<std::uint64_t>(found);
    // A later launch of the job, or of that attempt (it may still wait in the backlog), does
    // not run.
    early_cancels.Add({cmd.job_id, cmd.attempt});
    Log(LogLevel::kInfo, "cancel",
        {{"job_id", Shown(cmd.job_id)}, {"attempt", cmd.attempt}, {"reason", Shown(cmd.reason)}, {"running_attempts", found}});
    return Ack();
  }

  void Shutdown() {
    std::unique_lock lock(mu);
    shut = true;
    for (auto& [key, job] : running) {
      job->stopping = true;
      if (backend.KeepsJobs()) {
        job->control.Detach();
      } else {
        job->control.Cancel();
      }
    }
    cv.wait(lock, [&] { return threads == 0; });
  }

  void LetGo(const std::vector<std::string>& partitions) {
    if (!backend.KeepsJobs()) return;
    std::unique_lock lock(mu);
    std::vector<JobPtr> going;
    for (auto& [key, job] : running) {
      if (std::find(partitions.begin(), partitions.end(), job->partition) == partitions.end()) continue;
      job->control.Detach();
      going.push_back(job);
    }
    cv.wait(lock, [&] {
      return std::none_of(going.begin(), going.end(), [&](const JobPtr& j) {
        auto it = running.find({j->command.job_id, j->command.attempt});
        return it != running.end() && it->second == j;
      });
    });
  }

  void Adopt(const std::vector<std::string>& partitions) {
    if (!backend.KeepsJobs() || partitions.empty()) return;
    auto kept = backend.ListKept();
    if (!kept.ok()) {
      Log(LogLevel::kError, "kept jobs not listed: the running jobs of these partitions go unwatched",
          {{"backend", std::string(backend.name())}, {"error", kept.error().message()}});
      return;
    }
    for (KeptJob& k : kept.value()) {
      const auto part = k.labels.find(std::string(kPartitionLabel));
      if (part == k.labels.end() || std::find(partitions.begin(), partitions.end(), part->second) == partitions.end()) {
        continue;
      }
      if (!k.started) {
        // Created by a launcher that died before starting it: its command was not acknowledged
        // and comes again.
        backend.Forget(k.handle);
        continue;
      }
      const auto text = k.labels.find(std::string(kLaunchLabel));
      Result<LaunchLabel> label = text == k.labels.end()
                                      ? Result<LaunchLabel>(Error(ErrorCode::kDecode, "no kbus.launch label"))
                                      : FromJson<LaunchLabel>(text->second);
      if (!label.ok()) {
        Log(LogLevel::kError, "kept job not adopted: its labels do not say what it is",
            {{"handle", k.handle.substr(0, 12)}, {"error", label.error().message()}});
        continue;
      }
      AdoptOne(std::move(k), label.value(), part->second);
    }
  }

  void AdoptOne(KeptJob kept, const LaunchLabel& label, const std::string& partition) {
    LaunchProcess cmd;
    cmd.job_id = label.job_id;
    cmd.attempt = label.attempt;
    cmd.program = label.program;
    cmd.reply_to = label.reply_to;
    cmd.run_timeout = std::chrono::milliseconds(label.run_timeout_ms);
    cmd.heartbeat_interval = std::chrono::milliseconds(label.heartbeat_ms);
    auto job = std::make_shared<Job>(cmd, label);
    job->partition = partition;
    if (auto spec = allow.Resolve(cmd.program, {}, {}); spec.ok()) job->spec = std::move(spec.value());
    job->spec.run_timeout = cmd.run_timeout;
    job->spec.kill_grace = config.kill_grace;
    // Event ids derive from the command's id and an index: an adopter's start far past the
    // indexes of the launchers before it, so that no event of it repeats an earlier id.
    job->next_index = static_cast<std::size_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count()) * 1000;
    job->start_known = job->started_answered = true;
    job->kept = std::move(kept);
    bool reported = false;
    {
      std::lock_guard lock(mu);
      const AttemptKey key{cmd.job_id, cmd.attempt};
      if (shut || running.count({cmd.job_id, cmd.attempt}) != 0) return;  // followed here already
      reported = finished.Contains(key);
    }
    if (reported) {
      backend.Forget(job->kept->handle);  // reported here; its removal failed then
      return;
    }
    {
      std::lock_guard lock(mu);
      const AttemptKey key{cmd.job_id, cmd.attempt};
      if (shut || running.count({cmd.job_id, cmd.attempt}) != 0) return;
      if (early_cancels.Contains({cmd.job_id, 0}) || early_cancels.Contains(key)) {
        job->cancel_reason = "cancelled while no launcher watched it";
        job->control.Cancel();
      }
      if (slots->TryTake()) job->slot = SlotHold(slots);  // a kept job runs even past the limit
      running[{cmd.job_id, cmd.attempt}] = job;
      ++threads;
      ++stats.adopted;
      ++stats.running;
    }
    if (Meters* m = meters.load(std::memory_order_acquire)) m->adopted->Inc();
    std::thread([this, job] { RunJob(job); }).detach();
  }
};

Launcher::Launcher(LauncherConfig config, AllowList allow, Backend& backend, EventSink& events) {
  if (config.max_processes < 1) {
    throw std::invalid_argument("launcher: max_processes must be at least 1, got " +
                                std::to_string(config.max_processes));
  }
  if (config.default_heartbeat < kMinHeartbeatInterval || config.default_heartbeat > kMaxHeartbeatInterval) {
    throw std::invalid_argument("launcher: the default heartbeat must be from " +
                                std::to_string(kMinHeartbeatInterval.count()) + " to " +
                                std::to_string(kMaxHeartbeatInterval.count()) + " ms");
  }
  if (config.kill_grace.count() < 0 || config.kill_grace > kMaxKillGrace) {
    throw std::invalid_argument("launcher: kill_grace must be from 0 to " + std::to_string(kMaxKillGrace.count()) + " ms");
  }
  if (config.remembered_jobs == 0) throw std::invalid_argument("launcher: remembered_jobs must be at least 1");
  if (config.reply_topics.empty()) throw std::invalid_argument("launcher: reply_topics must name at least one topic");
  for (const auto& pattern : config.reply_topics) {
    if (!detail::IsTopicPattern(pattern)) {
      throw std::invalid_argument("launcher: reply topic '" + Shown(pattern) +
                                  "' is not a topic name or pattern ([a-zA-Z0-9._-] and '*')");
    }
  }
  impl_ = std::make_unique<Impl>(std::move(config), std::move(allow), backend, events);
}

Launcher::~Launcher() { impl_->Shutdown(); }

void Launcher::Register(HandlerRegistry& handlers, HandlerOptions launch, HandlerOptions cancel) {
  launch.policy.slots = impl_->slots;
  Impl* impl = impl_.get();
  // The launch route decodes the payload itself (Impl::OnLaunchPayload): a field that does not
  // decode is reported to reply_to, not only dead-lettered.
  using Traits = MessageTraits<LaunchProcess>;
  handlers.AddRoute({std::string(Traits::kType), Traits::kKind,
                     launch.topic.empty() ? std::string(Traits::kTopic) : std::move(launch.topic),
                     [impl](const JsonValue& payload, Context& ctx) { return impl->OnLaunchPayload(payload, ctx); },
                     std::move(launch.policy)});
  handlers.Handle<CancelProcess>(
      [impl](const CancelProcess& cmd, Context& ctx) { return impl->OnCancel(cmd, ctx); }, std::move(cancel));
}

void Launcher::Shutdown() { impl_->Shutdown(); }

void Launcher::Adopt(const std::vector<std::string>& partitions) { impl_->Adopt(partitions); }

void Launcher::LetGo(const std::vector<std::string>& partitions) { impl_->LetGo(partitions); }

std::string Launcher::PartitionLabel(std::string_view topic, std::int32_t partition) {
  return std::string(topic) + ":" + std::to_string(partition);
}

ProcessResult Backend::Follow(const KeptJob&, const ProcessSpec&, const ProcessObserver&, ProcessControl&) {
  ProcessResult r;
  r.error = std::string("the ") + std::string(name()) + " backend keeps no jobs";
  return r;
}

void Launcher::ReportTo(metrics::Registry& metrics, health::Board& health) { impl_->ReportTo(metrics, health); }

LauncherStats Launcher::Stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

const std::shared_ptr<Slots>& Launcher::slots() const { return impl_->slots; }

Result<std::vector<std::string>> ParseReplyTopics(std::string_view list) {
  std::vector<std::string> out;
  while (true) {
    const auto comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    if (!detail::IsTopicPattern(entry)) {
      return Error(ErrorCode::kInvalidArgument,
                   "'" + Shown(entry) + "' is not a topic name or pattern: 1 to 249 of [a-zA-Z0-9._-], '*' "
                   "matching any run of them, entries separated by commas");
    }
    out.emplace_back(entry);
    if (comma == std::string_view::npos) return out;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace kbus::handlers
