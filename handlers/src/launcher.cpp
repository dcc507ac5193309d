#include "kbus/handlers/launcher.hpp"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>

#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/log.hpp"

namespace kbus::handlers {

namespace {

// The parts of a command's envelope its events inherit, owned (an Envelope only views).
struct Parent {
  std::string message_id, correlation_id, workflow_id, traceparent, type, kind;

  explicit Parent(const Envelope& e)
      : message_id(e.message_id), correlation_id(e.correlation_id), workflow_id(e.workflow_id),
        traceparent(e.traceparent), type(e.type), kind(e.kind) {}

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

// Remembers the last `limit` keys.
class Recent {
 public:
  explicit Recent(std::size_t limit) : limit_(limit) {}
  bool Contains(const std::string& key) const { return set_.count(key) != 0; }
  void Add(std::string key) {
    if (!set_.insert(key).second) return;
    order_.push_back(std::move(key));
    if (order_.size() > limit_) {
      set_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  std::size_t limit_;
  std::set<std::string> set_;
  std::deque<std::string> order_;
};

std::string AttemptKey(const std::string& job_id, int attempt) {
  return job_id + '\n' + std::to_string(attempt);
}

constexpr int kDeliverTries = 10;
constexpr std::chrono::seconds kDeliverPause{1};

}  // namespace

struct Launcher::Impl {
  struct Job {
    Job(const LaunchProcess& cmd, const Envelope& envelope) : command(cmd), parent(envelope) {}
    LaunchProcess command;
    Parent parent;
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
    exited.error = std::move(error);
    return exited;
  }

  // Reports an attempt that never ran: its exit event goes out with the command's
  // acknowledgement.
  Outcome Report(const LaunchProcess& cmd, Context& ctx, ProcessExited exited) {
    Log(LogLevel::kWarn, "launch not run",
        {{"job_id", cmd.job_id}, {"attempt", cmd.attempt}, {"program", cmd.program},
         {"outcome", exited.outcome}, {"error", exited.error}});
    SendOptions options;
    options.topic = cmd.reply_to;
    ctx.Publish(exited, std::move(options));
    std::lock_guard lock(mu);
    if (exited.outcome == OutcomeName(ProcessOutcome::kLaunchFailed)) ++stats.launch_failed;
    finished.Add(AttemptKey(cmd.job_id, cmd.attempt));
    return Ack();
  }

  Outcome OnLaunch(const LaunchProcess& cmd, Context& ctx) {
    if (cmd.job_id.empty()) return DeadLetter("LaunchProcess has an empty job_id");
    if (cmd.attempt < 1) return DeadLetter("LaunchProcess attempt must be at least 1");
    auto refuse = [&](std::string error) {
      return Report(cmd, ctx, ExitedFor(cmd, ProcessOutcome::kLaunchFailed, std::move(error)));
    };
    {
      std::lock_guard lock(mu);
      if (running.count({cmd.job_id, cmd.attempt}) != 0 || finished.Contains(AttemptKey(cmd.job_id, cmd.attempt))) {
        ++stats.duplicates;
        Log(LogLevel::kInfo, "launch of an attempt that runs or ran here: not started again",
            {{"job_id", cmd.job_id}, {"attempt", cmd.attempt}});
        return Ack();
      }
    }
    if (cmd.run_timeout.count() < 0) return refuse("run_timeout must not be negative");
    if (cmd.heartbeat_interval.count() < 0) return refuse("heartbeat_interval must not be negative");
    Result<ProcessSpec> spec = allow.Resolve(cmd.program, cmd.args, cmd.env);
    if (!spec.ok()) return refuse(spec.error().message());

    auto job = std::make_shared<Job>(cmd, ctx.envelope());
    job->spec = std::move(spec.value());
    job->spec.run_timeout = cmd.run_timeout;
    job->spec.kill_grace = config.kill_grace;
    bool cancelled_early = false;
    {
      std::lock_guard lock(mu);
      if (shut) return Retry(std::chrono::seconds(1), "the launcher is shutting down");
      cancelled_early = early_cancels.Contains(cmd.job_id) ||
                        early_cancels.Contains(AttemptKey(cmd.job_id, cmd.attempt));
      if (!cancelled_early) {
        running[{cmd.job_id, cmd.attempt}] = job;
        ++threads;
      }
    }
    if (cancelled_early) {
      return Report(cmd, ctx, ExitedFor(cmd, ProcessOutcome::kCancelled, "cancelled before it started"));
    }
    job->slot = ctx.KeepSlot();  // given back when the job's thread ends
    std::thread([this, job] { RunJob(job); }).detach();

    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return job->start_known && (job->start_failed || job->started_answered); });
    if (!job->start_failed) return Ack();
    lock.unlock();
    return Report(cmd, ctx, std::move(job->failure));
  }

  void RunJob(const JobPtr& job) {
    const LaunchProcess& cmd = job->command;
    ProcessObserver observer;
    observer.started = [&](int pid) {
      job->started_at = Job::Clock::now();
      ProcessStarted started{cmd.job_id, cmd.attempt, cmd.program, pid, config.host};
      // Posted before any progress, so a run's events are in order on their partition; the
      // handler acknowledges the command once the broker has it. The job thread does not wait:
      // the child's output and heartbeats go on meanwhile (a first send to a topic can take a
      // second on Kafka).
      events.Post(EventFor(*job, started), [this, job](const Status& s) {
        if (!s.ok()) {
          Log(LogLevel::kError, "ProcessStarted not delivered",
              {{"job_id", job->command.job_id}, {"attempt", job->command.attempt}, {"error", s.error().message()}});
        }
        std::lock_guard lock(mu);
        job->started_answered = true;
        cv.notify_all();
      });
      Log(LogLevel::kInfo, "process started",
          {{"job_id", cmd.job_id}, {"attempt", cmd.attempt}, {"program", cmd.program}, {"pid", pid}});
      std::lock_guard lock(mu);
      ++stats.started;
      ++stats.running;
      job->start_known = true;
      cv.notify_all();
    };
    observer.progress = [&](const Progress& p) {
      job->last_percent = p.percent;
      events.Post(EventFor(*job, ProcessProgress{cmd.job_id, cmd.attempt, p.percent, p.message}), {});
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
      result = backend.Run(job->spec, observer, job->control);
    } catch (const std::exception& e) {
      result = ProcessResult{};
      result.error = std::string("the ") + std::string(backend.name()) + " backend failed: " + e.what();
    }

    ProcessExited exited = ExitedFor(cmd, result.outcome, std::move(result.error));
    exited.exit_code = result.exit_code;
    exited.signal = result.signal;
    exited.duration = result.duration;
    exited.stderr_tail = std::move(result.stderr_tail);
    {
      std::lock_guard lock(mu);
      if (!job->start_known) {
        // It never started: the handler is waiting, and reports it with its acknowledgement.
        job->failure = std::move(exited);
        job->start_known = job->start_failed = true;
        job->slot.Release();
        running.erase({cmd.job_id, cmd.attempt});
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
        {{"job_id", cmd.job_id}, {"attempt", cmd.attempt}, {"outcome", exited.outcome},
         {"exit_code", exited.exit_code}, {"signal", exited.signal}});
    const OutgoingRecord record = EventFor(*job, exited);
    for (int i = 1;; ++i) {
      Status s = events.Deliver(record);
      if (s.ok()) break;
      Log(LogLevel::kError, "ProcessExited not delivered",
          {{"job_id", cmd.job_id}, {"attempt", cmd.attempt}, {"try", i}, {"error", s.error().message()}});
      if (i == kDeliverTries) break;
      std::this_thread::sleep_for(kDeliverPause);
    }
    job->slot.Release();
    std::unique_lock lock(mu);
    // The answer for ProcessStarted came before Exited's on an ordered sink; this wait keeps
    // Shutdown from returning while a callback into this launcher is still due.
    cv.wait(lock, [&] { return job->started_answered; });
    running.erase({cmd.job_id, cmd.attempt});
    finished.Add(AttemptKey(cmd.job_id, cmd.attempt));
    ++stats.exited;
    --stats.running;
    --threads;
    cv.notify_all();
  }

  Outcome OnCancel(const CancelProcess& cmd, Context&) {
    if (cmd.job_id.empty()) return DeadLetter("CancelProcess has an empty job_id");
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
    early_cancels.Add(cmd.attempt > 0 ? AttemptKey(cmd.job_id, cmd.attempt) : cmd.job_id);
    Log(LogLevel::kInfo, "cancel", {{"job_id", cmd.job_id}, {"attempt", cmd.attempt}, {"running_attempts", found}});
    return Ack();
  }

  void Shutdown() {
    std::unique_lock lock(mu);
    shut = true;
    for (auto& [key, job] : running) {
      job->stopping = true;
      job->control.Cancel();
    }
    cv.wait(lock, [&] { return threads == 0; });
  }
};

Launcher::Launcher(LauncherConfig config, AllowList allow, Backend& backend, EventSink& events) {
  if (config.max_processes < 1) {
    throw std::invalid_argument("launcher: max_processes must be at least 1, got " +
                                std::to_string(config.max_processes));
  }
  if (config.default_heartbeat.count() <= 0) throw std::invalid_argument("launcher: the default heartbeat must be positive");
  if (config.kill_grace.count() < 0) throw std::invalid_argument("launcher: kill_grace must not be negative");
  if (config.remembered_jobs == 0) throw std::invalid_argument("launcher: remembered_jobs must be at least 1");
  impl_ = std::make_unique<Impl>(std::move(config), std::move(allow), backend, events);
}

Launcher::~Launcher() { impl_->Shutdown(); }

void Launcher::Register(HandlerRegistry& handlers, HandlerOptions launch, HandlerOptions cancel) {
  launch.policy.slots = impl_->slots;
  Impl* impl = impl_.get();
  handlers.Handle<LaunchProcess>(
      [impl](const LaunchProcess& cmd, Context& ctx) { return impl->OnLaunch(cmd, ctx); }, std::move(launch));
  handlers.Handle<CancelProcess>(
      [impl](const CancelProcess& cmd, Context& ctx) { return impl->OnCancel(cmd, ctx); }, std::move(cancel));
}

void Launcher::Shutdown() { impl_->Shutdown(); }

LauncherStats Launcher::Stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

const std::shared_ptr<Slots>& Launcher::slots() const { return impl_->slots; }

}  // namespace kbus::handlers
