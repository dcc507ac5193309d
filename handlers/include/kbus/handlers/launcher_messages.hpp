#pragma once
// The launcher's protocol (docs/launcher.md): two commands a launcher consumes and four events
// it publishes about each run.
//
// A job is identified by `job_id`, one try of it by `(job_id, attempt)`: a launcher starts at
// most one process per attempt, however often the LaunchProcess is delivered. Events go to the
// command's `reply_to` topic (default kTopic of the event), keyed by the workflow id of the
// command (else its correlation id), and inherit its correlation and workflow ids; their
// causation id is the command's message id.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kbus/message.hpp"

namespace kbus::handlers {

// The topic LaunchProcess goes to by default, and the control topic of CancelProcess. A
// launcher group reads both; they need the same number of partitions, so a job's launch and its
// cancel (both keyed by job id) reach the same launcher.
inline constexpr std::string_view kLauncherTopic = "kbus.launcher";
inline constexpr std::string_view kLauncherControlTopic = "kbus.launcher.control";
inline constexpr std::string_view kLauncherEventsTopic = "kbus.launcher.events";

// What a launcher accepts in a LaunchProcess (docs/launcher.md, "What is refused"). A value out
// of these bounds is reported as ProcessExited {launch_failed} with an error naming the field.
// A heartbeat more often than kMinHeartbeatInterval would let a command flood its reply topic;
// run_timeout has a maximum so that "forever" is spelled 0, not a number that overflows.
inline constexpr std::size_t kMaxJobIdBytes = 256;  // and no control characters
inline constexpr std::chrono::milliseconds kMaxRunTimeout = std::chrono::hours(24 * 30);
inline constexpr std::chrono::milliseconds kMinHeartbeatInterval{100};
inline constexpr std::chrono::milliseconds kMaxHeartbeatInterval = std::chrono::hours(1);
// The longest Kafka topic name (reply_to is checked against it and the allowed characters).
inline constexpr std::size_t kMaxTopicNameBytes = 249;
// The largest result a program may report (a "kbus-result {json}" line, docs/launcher.md): bytes
// of the JSON text. A workflow keeps results of the same bound (kbus::workflows::kMaxResultBytes).
inline constexpr std::size_t kMaxProcessResultBytes = 16 * 1024;

struct LaunchProcess {
  std::string job_id;
  int attempt = 1;
  std::string program;                     // a name in the launcher's allow-list
  std::vector<std::string> args;           // appended to the program's fixed arguments
  std::map<std::string, std::string> env;  // only variables the allow-list lets through
  std::chrono::milliseconds run_timeout{0};         // 0: no limit; at most kMaxRunTimeout
  // 0: the launcher's default; else from kMinHeartbeatInterval to kMaxHeartbeatInterval
  std::chrono::milliseconds heartbeat_interval{0};
  // The events' topic; empty: kLauncherEventsTopic. It must be one the launcher allows
  // (LauncherConfig::reply_topics, kbus-launcher --reply-topics), else the command is
  // dead-lettered: its events could go nowhere legitimate.
  std::string reply_to;
};

struct CancelProcess {
  std::string job_id;
  std::string reason;  // for the log and the cancelled event's error text
  int attempt = 0;     // 0: every attempt of the job; else only that one
};

struct ProcessStarted {
  std::string job_id;
  int attempt = 0;
  std::string program;
  std::int64_t pid = 0;  // the container's main process, as the host sees it, for the Docker backend
  std::string host;  // the launcher's host
  std::string container_id;  // the Docker backend's container; "" (omitted) for a child process
};

struct ProcessHeartbeat {
  std::string job_id;
  int attempt = 0;
  std::chrono::milliseconds elapsed{0};  // since the process started
  int percent = -1;                      // the last progress reported, -1 for none
};

struct ProcessProgress {
  std::string job_id;
  int attempt = 0;
  int percent = 0;
  std::string message;
};

struct ProcessExited {
  std::string job_id;
  int attempt = 0;
  // succeeded | failed | timed_out | cancelled | launch_failed | out_of_memory (the Docker
  // backend's memory limit killed it) | lost (the launcher stopped
  // while it ran)
  std::string outcome;
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  std::chrono::milliseconds duration{0};
  std::string stderr_tail;  // the last 4 KiB of stderr
  std::string error;        // why, for launch_failed, cancelled and lost
  // The JSON text of the last valid "kbus-result {json}" line of the program's stdout (at most
  // kMaxProcessResultBytes), "" when it printed none. Carried whatever the outcome; optional on
  // the wire, so exits of launchers that predate it still decode.
  std::string result;
};

}  // namespace kbus::handlers

template <>
struct kbus::MessageTraits<kbus::handlers::LaunchProcess> {
  using T = kbus::handlers::LaunchProcess;
  static constexpr std::string_view kType = "kbus.LaunchProcess";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = kbus::handlers::kLauncherTopic;
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("job_id", &T::job_id), kbus::Field("attempt", &T::attempt, kbus::kOptional),
      kbus::Field("program", &T::program), kbus::Field("args", &T::args, kbus::kOptional),
      kbus::Field("env", &T::env, kbus::kOptional),
      kbus::Field("run_timeout", &T::run_timeout, kbus::kOptional),
      kbus::Field("heartbeat_interval", &T::heartbeat_interval, kbus::kOptional),
      kbus::Field("reply_to", &T::reply_to, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<kbus::handlers::CancelProcess> {
  using T = kbus::handlers::CancelProcess;
  static constexpr std::string_view kType = "kbus.CancelProcess";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = kbus::handlers::kLauncherControlTopic;
  static constexpr auto kFields = kbus::Fields(kbus::Field("job_id", &T::job_id),
                                               kbus::Field("reason", &T::reason, kbus::kOptional),
                                               kbus::Field("attempt", &T::attempt, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<kbus::handlers::ProcessStarted> {
  using T = kbus::handlers::ProcessStarted;
  static constexpr std::string_view kType = "kbus.ProcessStarted";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = kbus::handlers::kLauncherEventsTopic;
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("job_id", &T::job_id), kbus::Field("attempt", &T::attempt),
                   kbus::Field("program", &T::program), kbus::Field("pid", &T::pid),
                   kbus::Field("host", &T::host, kbus::kOptional),
                   kbus::Field("container_id", &T::container_id, kbus::kOmitDefault));
};

template <>
struct kbus::MessageTraits<kbus::handlers::ProcessHeartbeat> {
  using T = kbus::handlers::ProcessHeartbeat;
  static constexpr std::string_view kType = "kbus.ProcessHeartbeat";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = kbus::handlers::kLauncherEventsTopic;
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("job_id", &T::job_id), kbus::Field("attempt", &T::attempt),
                   kbus::Field("elapsed", &T::elapsed),
                   kbus::Field("percent", &T::percent, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<kbus::handlers::ProcessProgress> {
  using T = kbus::handlers::ProcessProgress;
  static constexpr std::string_view kType = "kbus.ProcessProgress";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = kbus::handlers::kLauncherEventsTopic;
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("job_id", &T::job_id), kbus::Field("attempt", &T::attempt),
                   kbus::Field("percent", &T::percent),
                   kbus::Field("message", &T::message, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<kbus::handlers::ProcessExited> {
  using T = kbus::handlers::ProcessExited;
  static constexpr std::string_view kType = "kbus.ProcessExited";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = kbus::handlers::kLauncherEventsTopic;
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("job_id", &T::job_id), kbus::Field("attempt", &T::attempt),
      kbus::Field("outcome", &T::outcome), kbus::Field("exit_code", &T::exit_code, kbus::kOptional),
      kbus::Field("signal", &T::signal, kbus::kOptional),
      kbus::Field("duration", &T::duration, kbus::kOptional),
      kbus::Field("stderr_tail", &T::stderr_tail, kbus::kOptional),
      kbus::Field("error", &T::error, kbus::kOptional),
      kbus::Field("result", &T::result, kbus::kOptional));
};
