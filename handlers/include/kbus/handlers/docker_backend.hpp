#pragma once
// The Docker backend of the launcher: each job runs in a container of its own, made from the
// program's allow-list entry (image, limits, mounts: process.hpp), through the Docker Engine API
// on its unix socket (docs/launcher.md, "The Docker backend").
//
// Guarantees:
// - nothing from a command chooses the image, the limits or the mounts: user arguments are
//   appended to the entry's as argv (the image's program is the entrypoint; no shell);
// - one container per attempt on one engine: its name is a hash of the scope and the attempt,
//   so a second start of the same attempt finds the first container and follows it;
// - jobs outlive the launcher: containers carry labels (scope, job, attempt, partition, what a
//   launcher needs to report for them), and ListKept/Follow let another launcher adopt them;
// - every container runs with an init as PID 1, all capabilities dropped, no new privileges,
//   a non-root user, network none and a read-only root file system unless its entry says
//   otherwise; a timeout or cancel sends SIGTERM, the grace, then SIGKILL; a container is
//   removed once the launcher reported its end (Forget).
//
// Thread safety: Run, Follow, ListKept and Forget may be called from many threads at once.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/handlers/launcher.hpp"
#include "kbus/result.hpp"

namespace kbus::handlers {

struct DockerConfig {
  std::string socket = "/var/run/docker.sock";  // the engine's API socket
  // The containers this launcher starts carry kbus.group=<scope>, and it adopts no others: the
  // launcher's consumer group, whose members share the work.
  std::string scope = "kbus-launcher";
};

class DockerBackend final : public Backend {
 public:
  explicit DockerBackend(DockerConfig config);
  ~DockerBackend() override;

  // The engine answers at the socket; else why, naming the socket.
  Status Ping() const;
  // Every program of `allow` names an image (`NAME.image`); else names the first that does not.
  static Status Check(const AllowList& allow);
  // The name of the container of `job_key` in `scope`: "kbus-" and 16 hex digits.
  static std::string ContainerName(std::string_view scope, std::string_view job_key);

  std::string_view name() const override { return "docker"; }
  ProcessResult Run(const ProcessSpec& spec, const ProcessObserver& observer, ProcessControl& control) override;
  bool KeepsJobs() const override { return true; }
  Result<std::vector<KeptJob>> ListKept() override;
  ProcessResult Follow(const KeptJob& job, const ProcessSpec& spec, const ProcessObserver& observer,
                       ProcessControl& control) override;
  void Forget(const std::string& handle) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::handlers
