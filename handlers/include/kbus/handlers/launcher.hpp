#pragma once
// Launcher: the handlers of the launcher service. LaunchProcess starts an allow-listed program
// through a Backend and acknowledges the command once the process runs; its lifecycle is
// reported as ProcessStarted, ProcessProgress, ProcessHeartbeat and ProcessExited events
// (launcher_messages.hpp, docs/launcher.md). CancelProcess stops a job.
//
// Guarantees:
// - at most one process per attempt: a LaunchProcess whose (job_id, attempt) runs or ran here
//   is acknowledged without starting anything (remembered for the last `remembered_jobs`);
// - at most `max_processes` processes: the launch handler's DeliveryPolicy names the
//   launcher's Slots, so a full launcher takes no more commands until a process ends;
// - a refused launch (program not allowed, variable not allowed, missing binary, a bad job id,
//   a duration out of the bounds of launcher_messages.hpp, any field that does not decode) is
//   reported as a ProcessExited with outcome launch_failed and an error naming the field;
// - a command is dead-lettered only when no event could be sent for it: no usable job_id or
//   attempt, or a reply_to that is not a topic name or not in `reply_topics`;
// - with a backend that keeps jobs (Docker), jobs outlive the launcher: Adopt follows those of
//   the partitions given to it, LetGo and Shutdown leave them running (docs/launcher.md).
//
// Thread safety: the handlers run on a worker's threads; Shutdown and Stats from any thread.
// Jobs run on threads of their own (the local backend ties a child's life to its thread).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/handlers/process.hpp"
#include "kbus/health.hpp"
#include "kbus/metrics.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"
#include "kbus/slots.hpp"

namespace kbus::handlers {

// A job a backend keeps while no launcher watches it (Backend::KeepsJobs): a container whose
// launcher stopped, died or gave its partition away.
struct KeptJob {
  std::string handle;                         // the backend's name for it (a container id)
  std::map<std::string, std::string> labels;  // as ProcessSpec::labels gave them
  bool running = false;                       // false: it ended, or never started
  bool started = true;                        // false: created, never started
};

// How a job runs: a child process (LocalProcessBackend) or a container (DockerBackend,
// docker_backend.hpp); Kubernetes Jobs can follow behind the same interface
// (docs/launcher-kubernetes.md).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // Runs the job to its end on the calling thread and reports through `observer`; a cancelled
  // `control` ends it (SIGTERM, spec.kill_grace, SIGKILL, or the backend's equivalent), a
  // detached one lets go of it (kDetached) when the backend keeps jobs.
  virtual ProcessResult Run(const ProcessSpec& spec, const ProcessObserver& observer,
                            ProcessControl& control) = 0;

  // Backends whose jobs outlive the launcher: a launcher that starts, or takes over a partition,
  // lists the kept jobs and follows those of its partitions (Launcher::Adopt).
  virtual bool KeepsJobs() const { return false; }
  virtual Result<std::vector<KeptJob>> ListKept() { return std::vector<KeptJob>{}; }
  // Follows a kept job to its end as Run does; `spec` gives its progress format, run timeout
  // and kill grace. `observer.started` is called once it is found.
  virtual ProcessResult Follow(const KeptJob& job, const ProcessSpec& spec, const ProcessObserver& observer,
                               ProcessControl& control);
  // The launcher reported the job's end (ProcessResult::handle): the backend may let it go
  // (a container is removed). Never throws.
  virtual void Forget(const std::string& handle) { (void)handle; }
};

// Children of the launcher process (RunProcess).
class LocalProcessBackend final : public Backend {
 public:
  std::string_view name() const override { return "local"; }
  ProcessResult Run(const ProcessSpec& spec, const ProcessObserver& observer,
                    ProcessControl& control) override {
    return RunProcess(spec, observer, &control);
  }
};

// Where the events go (a Kafka producer in kbus-launcher).
class EventSink {
 public:
  virtual ~EventSink() = default;
  using Delivered = std::function<void(const Status&)>;
  // Queues an event without waiting. `done`, if set, is called once with the broker's answer
  // (or the reason it could not be queued), on any thread. A run's events must keep the order
  // in which they were posted.
  virtual void Post(OutgoingRecord record, Delivered done) = 0;
  // Sends an event and waits for the broker's acknowledgement: exits.
  virtual Status Deliver(const OutgoingRecord& record) = 0;
};

// The longest kill grace a launcher accepts (kill_grace, --kill-grace-ms).
inline constexpr std::chrono::milliseconds kMaxKillGrace = std::chrono::hours(1);

struct LauncherConfig {
  int max_processes = 8;
  std::chrono::milliseconds default_heartbeat{10000};  // when a command gives none
  std::chrono::milliseconds kill_grace{10000};         // SIGTERM to SIGKILL
  std::string host;                                    // in ProcessStarted
  std::size_t remembered_jobs = 100000;  // finished attempts and early cancels remembered
  // The topics a command's reply_to may name: names, or patterns where '*' matches any run of
  // characters. A command replying elsewhere is dead-lettered before anything starts.
  std::vector<std::string> reply_topics = DefaultReplyTopics();

  static std::vector<std::string> DefaultReplyTopics() {
    return {std::string(kLauncherEventsTopic), "*.launcher-events"};
  }
};

// Parses a comma-separated reply-topics list ("kbus.launcher.events,video.*"). Refused: an empty
// list or entry, a character Kafka does not allow in a topic name (other than '*').
Result<std::vector<std::string>> ParseReplyTopics(std::string_view list);

struct LauncherStats {
  std::uint64_t started = 0;
  std::uint64_t exited = 0;         // started and ended, whatever the outcome
  std::uint64_t launch_failed = 0;  // refused or could not start
  std::uint64_t duplicates = 0;     // a launch of an attempt that runs or ran here
  std::uint64_t cancels = 0;        // CancelProcess commands handled
  std::uint64_t cancelled = 0;      // running jobs they stopped
  std::uint64_t adopted = 0;        // kept jobs followed after a restart or a rebalance
  std::uint64_t detached = 0;       // jobs left running for another launcher (revoke, shutdown)
  int running = 0;
};

class Launcher {
 public:
  // Throws std::invalid_argument for max_processes < 1, a default heartbeat out of
  // [kMinHeartbeatInterval, kMaxHeartbeatInterval], a kill_grace out of [0, kMaxKillGrace], or a
  // bad reply_topics entry.
  Launcher(LauncherConfig config, AllowList allow, Backend& backend, EventSink& events);
  ~Launcher();  // Shutdown(kill_grace) if not done yet
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  // Registers LaunchProcess and CancelProcess. `launch` and `cancel` may set topics and
  // policies; the launch policy's slots are set to the launcher's.
  void Register(HandlerRegistry& handlers, HandlerOptions launch = {}, HandlerOptions cancel = {});

  // Stops every running job (SIGTERM, then SIGKILL after kill_grace), reports each as
  // `lost`, and waits for them; with a backend that keeps jobs it lets go of them instead, still
  // running, for the next launcher to adopt. Later launches are refused. Call it after the
  // worker stopped, so that no slot freed here takes a new command.
  void Shutdown();

  // For backends that keep jobs (Backend::KeepsJobs), from the worker's rebalance hooks;
  // `partitions` are labels "<launch topic>:<partition>" (PartitionLabel).
  // Adopt: follows the kept jobs of these partitions that no one here follows: heartbeats,
  // progress and the exit go on as if this launcher had started them, and a job cancelled
  // meanwhile (a CancelProcess this launcher read) is stopped. A job that ended meanwhile is
  // reported; one created but never started is removed (its command was never acknowledged,
  // so it comes again). LetGo: stops following the jobs of these partitions, leaving them
  // running for their next owner, and returns once their threads ended.
  void Adopt(const std::vector<std::string>& partitions);
  void LetGo(const std::vector<std::string>& partitions);
  static std::string PartitionLabel(std::string_view topic, std::int32_t partition);

  LauncherStats Stats() const;
  const std::shared_ptr<Slots>& slots() const;

  // Reports to the operations port (docs/operations.md): the kbus_launcher_* metrics in
  // `metrics` (the program label is the allow-list name, so its values are bounded) and the
  // probe "launcher" on `health`: live unless a job has run past its run_timeout by more than
  // twice kill_grace and a minute (its supervision is stuck), ready until Shutdown, its active
  // work the processes running. Call once, before the worker runs; both must outlive the
  // launcher.
  void ReportTo(metrics::Registry& metrics, health::Board& health);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::handlers
