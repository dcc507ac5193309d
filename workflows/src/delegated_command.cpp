#include "kbus/workflows/delegated_command.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kbus/log.hpp"

namespace kbus::workflows {

using handlers::ProcessExited;

// A program's result passes the launcher's bound and then must fit the workflow's.
static_assert(handlers::kMaxProcessResultBytes <= kMaxResultBytes);

void Validate(const RetryPolicy& p) {
  if (p.initial_interval.count() < 0) throw std::invalid_argument("retry policy: initial_interval must not be negative");
  if (p.maximum_interval < p.initial_interval) {
    throw std::invalid_argument("retry policy: maximum_interval must be >= initial_interval");
  }
  if (!(p.backoff_coefficient >= 1.0)) throw std::invalid_argument("retry policy: backoff_coefficient must be >= 1");
  if (!(p.jitter >= 0.0 && p.jitter < 1.0)) throw std::invalid_argument("retry policy: jitter must be in [0, 1)");
  if (p.maximum_attempts < 0) {
    throw std::invalid_argument("retry policy: maximum_attempts must be >= 0 (0 means unlimited)");
  }
}

namespace {

// FNV-1a: a stable spread of (seed, attempt) into [0, 1).
double Unit(std::string_view seed, int attempt) {
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&](unsigned char c) {
    h ^= c;
    h *= 1099511628211ULL;
  };
  for (char c : seed) mix(static_cast<unsigned char>(c));
  for (int i = 0; i < 4; ++i) mix(static_cast<unsigned char>(attempt >> (8 * i)));
  return static_cast<double>(h >> 11) / static_cast<double>(1ULL << 53);
}

// The last kMaxError bytes of an attempt's error or stderr, beginning at a character: what the
// launcher sends is UTF-8, and the state and the events must stay so.
constexpr std::size_t kMaxError = 1024;
std::string Tail(const std::string& text) {
  if (text.size() <= kMaxError) return text;
  std::size_t from = text.size() - kMaxError;
  while (from < text.size() && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80) ++from;
  return text.substr(from);
}

std::string Describe(const ProcessExited& e) {
  std::string d = std::to_string(e.attempt) + ":" + e.outcome;
  if (e.outcome == "failed" && e.signal != 0) d += " signal " + std::to_string(e.signal);
  else if (e.outcome == "failed") d += " exit " + std::to_string(e.exit_code);
  return d;
}

}  // namespace

std::chrono::milliseconds RetryDelay(const RetryPolicy& p, int failed_attempt, std::string_view seed) {
  const double base = static_cast<double>(p.initial_interval.count()) *
                      std::pow(p.backoff_coefficient, std::max(0, failed_attempt - 1));
  const double capped = std::min(base, static_cast<double>(p.maximum_interval.count()));
  const double moved = capped * (1.0 + p.jitter * (2.0 * Unit(seed, failed_attempt) - 1.0));
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(std::max(0.0, moved))));
}

Decision Decide(const RetryPolicy& p, const ProcessExited& last, int attempt, std::string_view seed) {
  Decision d;
  if (last.outcome == "succeeded") {
    d.next = Decision::Next::kSucceed;
    return d;
  }
  if (last.outcome == "cancelled") {
    d.reason = "cancelled";
    return d;
  }
  if (last.outcome == "launch_failed") {
    d.reason = "launch-failed";  // a refused program or a missing binary: a retry fails the same way
    return d;
  }
  if (last.outcome == "failed" && last.signal == 0 &&
      std::find(p.non_retryable_exit_codes.begin(), p.non_retryable_exit_codes.end(), last.exit_code) !=
          p.non_retryable_exit_codes.end()) {
    d.reason = "non-retryable-exit-code";
    return d;
  }
  // failed, timed_out, lost, and anything newer launchers may report.
  if (p.maximum_attempts != 0 && attempt >= p.maximum_attempts) {
    d.reason = "attempts-exhausted";
    return d;
  }
  d.next = Decision::Next::kRetry;
  d.delay = RetryDelay(p, attempt, seed);
  return d;
}

namespace detail {

void DelegatedCore::Start(std::string command_json, DelegatedState& s, WorkflowContext& ctx) const {
  if (s.attempt > 0) return;  // the instance runs already: a second start changes nothing
  s.command = std::move(command_json);
  s.job_id = ctx.run() == 1 ? ctx.workflow_id() : ctx.workflow_id() + "/run-" + std::to_string(ctx.run());
  Launch(1, s, ctx);
}

void DelegatedCore::SetSilence(std::chrono::milliseconds after, DelegatedState& s, WorkflowContext& ctx) const {
  if (!s.silence_timer.empty()) ctx.CancelTimeout(s.silence_timer);
  s.silence_timer = ctx.RequestTimeout("silence", after, std::to_string(s.attempt));
  s.silence_due_ms = ctx.NowMs() + after.count();
}

void DelegatedCore::Launch(int attempt, DelegatedState& s, WorkflowContext& ctx) const {
  const LaunchSpec spec = launch(s.command, attempt);
  handlers::LaunchProcess cmd;
  cmd.job_id = s.job_id;
  cmd.attempt = attempt;
  cmd.program = spec.program;
  cmd.args = spec.args;
  cmd.env = spec.env;
  cmd.run_timeout = run_timeout;
  cmd.heartbeat_interval = heartbeat_interval;
  cmd.reply_to = reply_to;
  SendOptions options;
  options.topic = launcher_topic;
  options.key = ctx.workflow_id();
  ctx.Send(cmd, std::move(options));
  s.attempt = attempt;
  s.phase = "launching";
  SetSilence(schedule_to_start, s, ctx);
}

void DelegatedCore::Alive(const std::string& job_id, int attempt, bool started, DelegatedState& s,
                          WorkflowContext& ctx) const {
  if (job_id != s.job_id || attempt != s.attempt || (s.phase != "launching" && s.phase != "running")) return;  // stale
  if (started || s.phase == "launching") {
    s.phase = "running";
    SetSilence(heartbeat_timeout, s, ctx);
    return;
  }
  // Push the silence deadline back only once half of it is used up: a state write per
  // heartbeat would be wasted, and unchanged state writes nothing.
  if (s.silence_due_ms - ctx.NowMs() < heartbeat_timeout.count() / 2) SetSilence(heartbeat_timeout, s, ctx);
}

void DelegatedCore::Exited(const ProcessExited& e, DelegatedState& s, WorkflowContext& ctx) const {
  if (e.job_id != s.job_id || e.attempt != s.attempt || (s.phase != "launching" && s.phase != "running")) {
    return;  // stale (an older attempt or run) or repeated
  }
  if (!s.silence_timer.empty()) ctx.CancelTimeout(s.silence_timer);
  s.silence_timer.clear();
  s.silence_due_ms = 0;
  s.last_outcome = e.outcome;
  s.last_exit_code = e.exit_code;
  s.last_signal = e.signal;
  s.last_error = Tail(!e.error.empty() ? e.error : e.stderr_tail);
  s.history.push_back(Describe(e));
  if (s.history.size() > 20) s.history.erase(s.history.begin());

  const Decision d = Decide(retry, e, s.attempt, ctx.workflow_id());
  switch (d.next) {
    case Decision::Next::kSucceed:
      s.phase = "succeeded";
      if (!e.result.empty()) {
        // The launcher checked it; checked again, since an exit may come from any sender, so that
        // a bad one costs the result, never the run (the host dead-letters a bad result).
        Result<std::string> result = CompactResult(e.result);
        if (result.ok()) {
          ctx.CompleteWithJson(std::move(result).value());
        } else {
          Log(LogLevel::kWarn, "result of a delegated command not recorded",
              {{"workflow_id", ctx.workflow_id()}, {"attempt", e.attempt}, {"error", result.error().message()}});
        }
      }
      succeeded(s.command, e, ctx);
      ctx.Complete();
      return;
    case Decision::Next::kRetry:
      s.phase = "waiting";
      ctx.RequestTimeout("retry", d.delay);
      return;
    case Decision::Next::kFail:
      break;
  }
  Fail(d.reason, e, s, ctx);
}

void DelegatedCore::Reject(std::string command_json, std::string why, DelegatedState& s, WorkflowContext& ctx) const {
  if (s.attempt > 0 || !s.phase.empty()) return;  // the instance runs already
  s.command = std::move(command_json);
  s.job_id = ctx.run() == 1 ? ctx.workflow_id() : ctx.workflow_id() + "/run-" + std::to_string(ctx.run());
  handlers::ProcessExited none;  // no attempt ran: what on_failed and the dead letter report
  none.job_id = s.job_id;
  none.attempt = 0;
  none.outcome = "rejected";
  none.error = std::move(why);
  s.last_outcome = none.outcome;
  s.last_error = Tail(none.error);
  Fail("rejected", none, s, ctx);
}

void DelegatedCore::Fail(const std::string& reason, const ProcessExited& e, DelegatedState& s,
                         WorkflowContext& ctx) const {
  s.phase = "failed";
  DelegatedCommandFailed failed_event{name,        ctx.workflow_id(), command_type, s.attempt, reason,
                                      e.outcome,   e.exit_code,       e.signal,     s.last_error};
  SendOptions options;
  options.topic = failed_topic;
  ctx.Publish(failed_event, std::move(options));
  failed(s.command, e, ctx);
  std::vector<Header> headers{{"kbus-dlq-outcome", e.outcome},
                              {"kbus-dlq-exit-code", std::to_string(e.exit_code)},
                              {"kbus-dlq-signal", std::to_string(e.signal)},
                              {"kbus-dlq-job-id", s.job_id}};
  const std::string what = s.attempt == 0 ? "rejected before any attempt"
                                          : "attempt " + std::to_string(s.attempt) + " ended " + e.outcome;
  ctx.DeadLetter(reason, what + (s.last_error.empty() ? std::string() : ": " + s.last_error), s.attempt,
                 std::move(headers));
}

void DelegatedCore::Silence(const Timeout& t, DelegatedState& s, WorkflowContext& ctx) const {
  if (t.id != s.silence_timer) return;
  s.silence_timer.clear();
  // Stop the silent attempt if it still runs somewhere, then decide as for any lost attempt.
  handlers::CancelProcess cancel{s.job_id, "no heartbeat from the workflow's view", s.attempt};
  SendOptions options;
  options.topic = control_topic;
  options.key = ctx.workflow_id();
  ctx.Send(cancel, std::move(options));
  ProcessExited lost;
  lost.job_id = s.job_id;
  lost.attempt = s.attempt;
  lost.outcome = "lost";
  lost.error = s.phase == "launching" ? "not started within schedule_to_start_timeout"
                                      : "no heartbeat within heartbeat_timeout";
  Exited(lost, s, ctx);
}

void DelegatedCore::RetryDue(DelegatedState& s, WorkflowContext& ctx) const {
  if (s.phase != "waiting") return;
  Launch(s.attempt + 1, s, ctx);
}

}  // namespace detail
}  // namespace kbus::workflows
