// The two handlers: a LaunchProcess (OnLaunchPayload, OnLaunch) starts a job's thread and waits
// for the start handshake, or reports the attempt that never ran (Report) or dead-letters the
// command (Reject); a CancelProcess (OnCancel) cancels the attempts running here and remembers
// the cancel for launches still to come. See launcher_impl.hpp for the invariants.

#include <limits>
#include <thread>

#include "kbus/log.hpp"
#include "launcher_impl.hpp"

namespace kbus::handlers {

namespace {

using detail::Refusal;
using detail::Shown;
using enum detail::Refusal;

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

}  // namespace

// Reports an attempt that never ran: its exit event goes out with the command's
// acknowledgement.
Outcome Launcher::Impl::Report(const LaunchProcess& cmd, Context& ctx, ProcessExited exited) {
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

Outcome Launcher::Impl::Reject(std::string why) {
  Log(LogLevel::kWarn, "launch dead-lettered", {{"error", Shown(why, 512)}});
  return DeadLetter("LaunchProcess " + std::move(why));
}

// The launch handler, on the raw payload: whatever a command holds, either an event reports it
// or (when no event could say which attempt it was, or go anywhere allowed) a dead letter.
Outcome Launcher::Impl::OnLaunchPayload(const JsonValue& payload, Context& ctx) {
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
Outcome Launcher::Impl::OnLaunch(const LaunchProcess& cmd, Context& ctx, std::string invalid) {
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

Outcome Launcher::Impl::OnCancel(const CancelProcess& cmd, Context&) {
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

}  // namespace kbus::handlers
