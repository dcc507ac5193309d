// A job's own thread (RunJob): runs the job on the backend, or follows a kept one, posts its
// events (ProcessStarted, progress, heartbeats) as they come and delivers its ProcessExited;
// Label, the labels a kept job carries; EventFor and ExitedFor, its events. See
// launcher_impl.hpp for the invariants, the start handshake with OnLaunch first.

#include <exception>
#include <thread>

#include "kbus/log.hpp"
#include "launcher_impl.hpp"

namespace kbus::handlers {

namespace {

using detail::kLaunchLabel;
using detail::kPartitionLabel;
using detail::LaunchLabel;
using detail::Parent;
using detail::Shown;

constexpr int kDeliverTries = 10;
constexpr std::chrono::seconds kDeliverPause{1};

}  // namespace

template <class E>
OutgoingRecord Launcher::Impl::EventFor(Job& job, const E& event) {
  SendOptions options;
  options.topic = job.command.reply_to;  // empty: the event's own topic
  const Envelope parent = job.parent.View();
  return BuildRecord(event, std::move(options), &parent, job.next_index++);
}

ProcessExited Launcher::Impl::ExitedFor(const LaunchProcess& cmd, ProcessOutcome outcome, std::string error) {
  ProcessExited exited;
  exited.job_id = cmd.job_id;
  exited.attempt = cmd.attempt;
  exited.outcome = std::string(OutcomeName(outcome));
  exited.error = ToValidUtf8(error);  // may quote the system or the program: text on the wire
  return exited;
}

// The labels a kept job carries, for the launcher that adopts it.
void Launcher::Impl::Label(Job& job) {
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

void Launcher::Impl::RunJob(const JobPtr& job) {
  const LaunchProcess& cmd = job->command;
  ProcessObserver observer = Observer(job);
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
    LeaveRunning(job, result);
    return;
  }
  if (result.outcome == ProcessOutcome::kDetached) result.outcome = ProcessOutcome::kCancelled;  // before it started
  ProcessExited exited = ExitedOf(cmd, result);
  if (Settle(job, result, exited)) return;
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

// The callbacks of the job's run (not its tick_interval). They hold the job and the command.
ProcessObserver Launcher::Impl::Observer(const JobPtr& job) {
  ProcessObserver observer;
  observer.started = [this, job, &cmd = job->command](int pid, const std::string& handle, std::chrono::milliseconds ran) {
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
  observer.progress = [this, job, &cmd = job->command](const Progress& p) {
    job->last_percent = p.percent;
    events.Post(EventFor(*job, ProcessProgress{cmd.job_id, cmd.attempt, p.percent, ToValidUtf8(p.message)}), {});
  };
  observer.tick = [this, job, &cmd = job->command] {
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Job::Clock::now() - job->started_at);
    events.Post(EventFor(*job, ProcessHeartbeat{cmd.job_id, cmd.attempt, elapsed, job->last_percent}), {});
  };
  return observer;
}

void Launcher::Impl::LeaveRunning(const JobPtr& job, const ProcessResult& result) {
  const LaunchProcess& cmd = job->command;
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
}

ProcessExited Launcher::Impl::ExitedOf(const LaunchProcess& cmd, ProcessResult& result) {
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
  return exited;
}

bool Launcher::Impl::Settle(const JobPtr& job, const ProcessResult& result, ProcessExited& exited) {
  const LaunchProcess& cmd = job->command;
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
    return true;
  }
  if (result.outcome == ProcessOutcome::kCancelled) {
    if (job->stopping) {
      exited.outcome = "lost";
      exited.error = "the launcher stopped while it ran";
    } else {
      exited.error = job->cancel_reason.empty() ? "cancelled" : job->cancel_reason;
    }
  }
  return false;
}

}  // namespace kbus::handlers
