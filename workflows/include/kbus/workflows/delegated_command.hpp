#pragma once
// DelegatedCommand<Cmd>: a ready workflow that turns one long command into launcher attempts
// (docs/workflows.md, "Delegated commands").
//
//   attempt 1 at once ─▶ LaunchProcess ─▶ Started, Heartbeat, Progress ... Exited
//     succeeded                       ─▶ on_succeeded, the run completes with the attempt's
//                                        result (ProcessExited.result) as the run's result
//     failed | timed_out | lost       ─▶ wait (backoff), attempt n + 1 ... up to maximum_attempts
//     cancelled | launch_failed |
//     a non-retryable exit code |
//     the last attempt failed         ─▶ the command to "<group>.dlq" with the last outcome in
//                                        kbus-dlq-* headers, DelegatedCommandFailed published,
//                                        on_failed, the run fails
//   or, before attempt 1, `check` refuses the command ─▶ the same, reason "rejected"
//
// Silence counts as `lost`: no event of the current attempt for heartbeat_timeout after it
// started (schedule_to_start_timeout before), and the attempt is cancelled and retried. Events of
// older attempts are ignored. The job id is the workflow id ("<id>/run-N" for a later run of
// the same id, e.g. after a redrive, so the launcher does not take its attempts for ones it
// ran); (job id, attempt) names one launch.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/message.hpp"
#include "kbus/workflows/workflow.hpp"

namespace kbus::workflows {

// Named as Temporal names its activity retry policy; defaults suit expensive launches.
struct RetryPolicy {
  std::chrono::milliseconds initial_interval{std::chrono::seconds(30)};
  double backoff_coefficient = 2.0;
  std::chrono::milliseconds maximum_interval{std::chrono::minutes(10)};
  int maximum_attempts = 5;  // attempts in all, the first included; 0 = unlimited (say so)
  double jitter = 0.1;       // each wait is moved by up to ±10 %
  std::vector<int> non_retryable_exit_codes;  // e.g. 2 for "bad usage"
};

// Throws std::invalid_argument naming the field: a negative interval, a coefficient below 1,
// jitter outside [0, 1), maximum_attempts < 0.
void Validate(const RetryPolicy& policy);

// The wait before attempt `failed_attempt + 1`: initial_interval × coefficient^(failed_attempt − 1),
// capped at maximum_interval, then moved by the jitter. The jitter is drawn from `seed` and the
// attempt, so a handler that runs twice waits the same.
std::chrono::milliseconds RetryDelay(const RetryPolicy& policy, int failed_attempt, std::string_view seed);

// What to do after an attempt ended.
struct Decision {
  enum class Next { kSucceed, kRetry, kFail };
  Next next = Next::kFail;
  std::string reason;  // for kFail: attempts-exhausted, non-retryable-exit-code, launch-failed, cancelled
  std::chrono::milliseconds delay{0};  // for kRetry
};
Decision Decide(const RetryPolicy& policy, const handlers::ProcessExited& last, int attempt,
                std::string_view seed);

// Published when a delegated command failed for good (its command went to the DLQ).
struct DelegatedCommandFailed {
  std::string workflow;     // the workflow's name
  std::string workflow_id;  // and job id
  std::string command_type;
  int attempts = 0;
  std::string reason;   // as in kbus-dlq-reason
  std::string outcome;  // the last attempt's
  int exit_code = -1;
  int signal = 0;
  std::string error;
};

// The program one attempt runs (a name in the launcher's allow-list, and its arguments).
struct LaunchSpec {
  std::string program;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
};

// The workflow's state: the command, and where its attempts stand.
struct DelegatedState {
  std::string command;  // the command's JSON
  std::string job_id;   // the workflow id; "<id>/run-N" from the second run on
  int attempt = 0;      // the current (or last) attempt
  std::string phase;    // launching | running | waiting | succeeded | failed
  std::string silence_timer;
  std::int64_t silence_due_ms = 0;
  std::string last_outcome;
  int last_exit_code = -1;
  int last_signal = 0;
  std::string last_error;
  std::vector<std::string> history;  // "1:failed exit 3", one per attempt (the last 20)
};

}  // namespace kbus::workflows

template <>
struct kbus::JsonTraits<kbus::workflows::DelegatedState> {
  using T = kbus::workflows::DelegatedState;
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("command", &T::command), kbus::Field("job_id", &T::job_id), kbus::Field("attempt", &T::attempt),
      kbus::Field("phase", &T::phase),
      kbus::Field("silence_timer", &T::silence_timer, kbus::kOptional),
      kbus::Field("silence_due_ms", &T::silence_due_ms, kbus::kOptional),
      kbus::Field("last_outcome", &T::last_outcome, kbus::kOptional),
      kbus::Field("last_exit_code", &T::last_exit_code, kbus::kOptional),
      kbus::Field("last_signal", &T::last_signal, kbus::kOptional),
      kbus::Field("last_error", &T::last_error, kbus::kOptional),
      kbus::Field("history", &T::history, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<kbus::workflows::DelegatedCommandFailed> {
  using T = kbus::workflows::DelegatedCommandFailed;
  static constexpr std::string_view kType = "kbus.DelegatedCommandFailed";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "kbus.workflows.events";
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("workflow", &T::workflow), kbus::Field("workflow_id", &T::workflow_id),
      kbus::Field("command_type", &T::command_type), kbus::Field("attempts", &T::attempts),
      kbus::Field("reason", &T::reason), kbus::Field("outcome", &T::outcome),
      kbus::Field("exit_code", &T::exit_code), kbus::Field("signal", &T::signal),
      kbus::Field("error", &T::error, kbus::kOptional));
};

namespace kbus::workflows {

template <Command Cmd>
struct DelegatedOptions {
  std::function<std::string(const Cmd&)> id;  // the workflow id, also the job id; required
  std::function<LaunchSpec(const Cmd&, int attempt)> launch;  // required
  // Optional: why a command can never run (a field launch() could not make safe arguments
  // of), or "" when it can. A refused command launches nothing: it fails at once with reason
  // `rejected` (DelegatedCommandFailed, on_failed with an exit of attempt 0 and outcome
  // "rejected" whose error is the reason, the command dead-lettered).
  std::function<std::string(const Cmd&)> check;
  RetryPolicy retry;
  std::chrono::milliseconds run_timeout{0};  // required: the launcher kills a run after it
  std::chrono::milliseconds heartbeat_interval{std::chrono::seconds(10)};  // asked of the launcher
  // Silence after which an attempt counts as lost. 0: 3 × heartbeat_interval.
  std::chrono::milliseconds heartbeat_timeout{0};
  // How long a launch may wait for its ProcessStarted (a full launcher's backlog).
  std::chrono::milliseconds schedule_to_start_timeout{std::chrono::minutes(10)};
  std::string command_topic;  // where Cmd arrives; default its kTopic
  std::string launcher_topic{handlers::kLauncherTopic};
  std::string control_topic{handlers::kLauncherControlTopic};
  std::string failed_topic;  // DelegatedCommandFailed's topic; default its kTopic
  // Called when an attempt succeeded (publish the typed result here) and when the command
  // failed for good (after it was dead-lettered). The succeeding attempt's result, if the
  // program printed one, is the run's result already when on_succeeded runs; a
  // ctx.Complete(result) there records another in its place.
  std::function<void(const Cmd&, const handlers::ProcessExited&, WorkflowContext&)> on_succeeded;
  std::function<void(const Cmd&, const handlers::ProcessExited&, WorkflowContext&)> on_failed;
  WorkflowOptions workflow;
};

namespace detail {

// The non-template part: what each event does to the state.
struct DelegatedCore {
  std::string name;
  std::string command_type;
  RetryPolicy retry;
  std::chrono::milliseconds run_timeout, heartbeat_interval, heartbeat_timeout, schedule_to_start;
  std::string launcher_topic, control_topic, reply_to, failed_topic;
  std::function<LaunchSpec(std::string_view command_json, int attempt)> launch;
  std::function<void(std::string_view command_json, const handlers::ProcessExited&, WorkflowContext&)> succeeded,
      failed;

  void Start(std::string command_json, DelegatedState& s, WorkflowContext& ctx) const;
  void Launch(int attempt, DelegatedState& s, WorkflowContext& ctx) const;
  void Alive(const std::string& job_id, int attempt, bool started, DelegatedState& s, WorkflowContext& ctx) const;
  void Exited(const handlers::ProcessExited& e, DelegatedState& s, WorkflowContext& ctx) const;
  // A new command that `check` refused: fails at once, with reason "rejected", nothing launched.
  void Reject(std::string command_json, std::string why, DelegatedState& s, WorkflowContext& ctx) const;
  void Fail(const std::string& reason, const handlers::ProcessExited& e, DelegatedState& s, WorkflowContext& ctx) const;
  void Silence(const Timeout& t, DelegatedState& s, WorkflowContext& ctx) const;
  void RetryDue(DelegatedState& s, WorkflowContext& ctx) const;
  void SetSilence(std::chrono::milliseconds after, DelegatedState& s, WorkflowContext& ctx) const;
};

}  // namespace detail

// Builds the workflow. Throws std::invalid_argument for a missing id, launch or run_timeout, a
// duration outside the launcher's bounds, or an invalid retry policy.
template <Command Cmd>
Workflow<DelegatedState> DelegatedCommand(std::string name, DelegatedOptions<Cmd> o) {
  if (!o.id) throw std::invalid_argument("DelegatedCommand " + name + ": `id` is required");
  if (!o.launch) throw std::invalid_argument("DelegatedCommand " + name + ": `launch` is required");
  // The launcher's bounds (launcher_messages.hpp): beyond them every attempt would end as
  // launch_failed, so they are refused here, where the mistake is made.
  if (o.run_timeout.count() <= 0 || o.run_timeout > handlers::kMaxRunTimeout) {
    throw std::invalid_argument("DelegatedCommand " + name + ": `run_timeout` is required, > 0 and at most " +
                                std::to_string(handlers::kMaxRunTimeout.count()) + " ms (30 days)");
  }
  Validate(o.retry);
  if (o.heartbeat_interval < handlers::kMinHeartbeatInterval || o.heartbeat_interval > handlers::kMaxHeartbeatInterval) {
    throw std::invalid_argument("DelegatedCommand " + name + ": `heartbeat_interval` must be from " +
                                std::to_string(handlers::kMinHeartbeatInterval.count()) + " ms to " +
                                std::to_string(handlers::kMaxHeartbeatInterval.count()) + " ms");
  }
  if (o.heartbeat_timeout.count() < 0 || o.heartbeat_timeout > handlers::kMaxRunTimeout) {
    throw std::invalid_argument("DelegatedCommand " + name + ": `heartbeat_timeout` must be from 0 to " +
                                std::to_string(handlers::kMaxRunTimeout.count()) + " ms");
  }
  if (o.heartbeat_timeout.count() != 0 && o.heartbeat_timeout < 2 * o.heartbeat_interval) {
    // The silence deadline moves once half of it is used: a shorter window could close
    // between two heartbeats of an attempt that runs fine.
    throw std::invalid_argument("DelegatedCommand " + name +
                                ": `heartbeat_timeout` must be at least twice `heartbeat_interval`");
  }
  Workflow<DelegatedState> wf(name, o.workflow);
  auto core = std::make_shared<detail::DelegatedCore>();
  core->name = name;
  core->command_type = std::string(MessageTraits<Cmd>::kType);
  core->retry = o.retry;
  core->run_timeout = o.run_timeout;
  core->heartbeat_interval = o.heartbeat_interval;
  core->heartbeat_timeout = o.heartbeat_timeout.count() > 0 ? o.heartbeat_timeout : 3 * o.heartbeat_interval;
  core->schedule_to_start = o.schedule_to_start_timeout;
  core->launcher_topic = o.launcher_topic;
  core->control_topic = o.control_topic;
  core->reply_to = wf.options().input_topic;
  core->failed_topic = o.failed_topic;
  core->launch = [launch = o.launch](std::string_view json, int attempt) {
    Result<Cmd> cmd = FromJson<Cmd>(json);
    if (!cmd.ok()) throw std::runtime_error("the stored command does not decode: " + cmd.error().message());
    return launch(*cmd, attempt);
  };
  auto typed = [](auto fn) {
    return [fn](std::string_view json, const handlers::ProcessExited& e, WorkflowContext& ctx) {
      if (!fn) return;
      Result<Cmd> cmd = FromJson<Cmd>(json);
      if (cmd.ok()) fn(*cmd, e, ctx);
    };
  };
  core->succeeded = typed(o.on_succeeded);
  core->failed = typed(o.on_failed);

  const std::string input = wf.options().input_topic;
  wf.template StartedBy<Cmd>(o.id, [core, check = o.check](const Cmd& c, DelegatedState& s, WorkflowContext& ctx) {
    if (std::string why = check ? check(c) : std::string(); !why.empty()) {
      core->Reject(ToJson(c), std::move(why), s, ctx);
    } else {
      core->Start(ToJson(c), s, ctx);
    }
  }, o.command_topic);
  wf.template Handles<handlers::ProcessStarted>(
      [core](const handlers::ProcessStarted& e, DelegatedState& s, WorkflowContext& ctx) {
        core->Alive(e.job_id, e.attempt, true, s, ctx);
      },
      On<handlers::ProcessStarted>{{}, NotFound::kLog, input});
  wf.template Handles<handlers::ProcessHeartbeat>(
      [core](const handlers::ProcessHeartbeat& e, DelegatedState& s, WorkflowContext& ctx) {
        core->Alive(e.job_id, e.attempt, false, s, ctx);
      },
      On<handlers::ProcessHeartbeat>{{}, NotFound::kLog, input});
  wf.template Handles<handlers::ProcessProgress>(
      [core](const handlers::ProcessProgress& e, DelegatedState& s, WorkflowContext& ctx) {
        core->Alive(e.job_id, e.attempt, false, s, ctx);
      },
      On<handlers::ProcessProgress>{{}, NotFound::kLog, input});
  wf.template Handles<handlers::ProcessExited>(
      [core](const handlers::ProcessExited& e, DelegatedState& s, WorkflowContext& ctx) { core->Exited(e, s, ctx); },
      On<handlers::ProcessExited>{{}, NotFound::kLog, input});
  wf.OnTimeout("silence", [core](const Timeout& t, DelegatedState& s, WorkflowContext& ctx) { core->Silence(t, s, ctx); });
  wf.OnTimeout("retry", [core](const Timeout&, DelegatedState& s, WorkflowContext& ctx) { core->RetryDue(s, ctx); });
  return wf;
}

}  // namespace kbus::workflows
