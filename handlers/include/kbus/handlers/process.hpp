#pragma once
// The local process backend of the launcher: runs one allow-listed program as a child process
// and reports what happens to it.
//
// Safety, by construction:
// - no shell: an absolute path and an argv array go to execve; user arguments reach the child
//   byte for byte, whatever they contain;
// - an explicit environment: nothing of the launcher's own environment leaks into the child;
// - the child runs in its own process group, so a timeout or a cancel signals it and every
//   descendant that stayed in the group: SIGTERM, then SIGKILL after a grace period;
// - the child is killed if the thread that started it dies (PR_SET_PDEATHSIG), so a launcher
//   killed with SIGKILL does not leave its children running;
// - stdout and stderr are read as they come, so a child writing any amount never blocks; its
//   output is read in the spec's progress format (progress.hpp) for progress reports, and the
//   last 4 KiB of stderr are kept;
// - the child is always reaped: no zombies.
//
// Thread safety: RunProcess blocks its calling thread for the life of the child (PDEATHSIG ties
// the child to that thread). Cancel() of a ProcessControl may be called from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/handlers/progress.hpp"
#include "kbus/result.hpp"

namespace kbus::handlers {

// How a program runs in a container (the Docker backend): from the allow-list only, never from
// a command. Empty `image`: the program is no container's.
struct ContainerSpec {
  std::string image;
  double cpus = 0;                 // 0: no limit
  std::int64_t memory_bytes = 0;   // 0: no limit; swap is limited to the same
  std::int64_t pids = 256;         // processes and threads at most
  std::string network = "none";    // "none", or a network the engine knows
  std::string user = "65534:65534";
  bool read_only = true;           // the root file system
  std::vector<std::string> mounts;  // "SOURCE:TARGET:ro|rw", SOURCE a host path or a volume
  std::vector<std::string> tmpfs;   // writable tmpfs mount points
};

// What to run. Built by AllowList::Resolve from a program name, never from user text directly.
struct ProcessSpec {
  std::string path;                         // absolute path of the executable
  std::vector<std::string> args;            // argv[1..]; argv[0] is the program's name
  std::string argv0;                        // default: the path
  std::map<std::string, std::string> env;   // the child's whole environment
  std::chrono::milliseconds run_timeout{0};  // 0: none
  std::chrono::milliseconds kill_grace{10000};  // between SIGTERM and SIGKILL
  ProgressFormat progress = ProgressFormat::kKbus;  // how its output reports progress
  ContainerSpec container;  // the Docker backend's; the local backend refuses an image
  // Set by the launcher for backends whose jobs outlive it: `job_key` names the attempt (a
  // second run of the same key finds the first), `labels` are kept with the job to adopt it.
  std::string job_key;
  std::map<std::string, std::string> labels;
};

// kOutOfMemory: the container backend's memory limit ended it. kDetached: the launcher let go of
// a job that keeps running (ProcessControl::Detach); never reported as an event.
enum class ProcessOutcome { kSucceeded, kFailed, kTimedOut, kCancelled, kLaunchFailed, kOutOfMemory, kDetached };
std::string_view OutcomeName(ProcessOutcome outcome);  // "succeeded", "timed_out", ...

struct ProcessResult {
  ProcessOutcome outcome = ProcessOutcome::kLaunchFailed;
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  std::chrono::milliseconds duration{0};
  std::string stderr_tail;  // the last 4 KiB of stderr
  std::string error;        // for kLaunchFailed: why
  std::uint64_t stdout_lines = 0;
  // The JSON text of the last valid "kbus-result" line (progress.hpp), "" for none. Result lines
  // that were refused (not JSON, too large) are only counted, with the last one's reason.
  std::string result;
  std::uint64_t results_refused = 0;
  std::string result_refused_why;
  std::string handle;  // the backend's name for the job (a container id), "" for a child process
};

// Observes one run; called on the thread that runs it.
struct ProcessObserver {
  // `handle`: the backend's name for the job (a container id), "" for a child process; `ran`:
  // how long it ran before it was found (an adopted job), else 0.
  std::function<void(int pid, const std::string& handle, std::chrono::milliseconds ran)> started;
  std::function<void(const Progress&)> progress;
  // Called about every `tick` while the child runs (heartbeats are sent from here).
  std::function<void()> tick;
  std::chrono::milliseconds tick_interval{0};  // 0: no ticks
};

// Lets another thread cancel a run.
class ProcessControl {
 public:
  ProcessControl();
  ~ProcessControl();
  ProcessControl(const ProcessControl&) = delete;
  ProcessControl& operator=(const ProcessControl&) = delete;
  // The run ends with kCancelled: SIGTERM to the group, grace, SIGKILL. Safe from any thread and
  // before the run starts (it then ends at once).
  void Cancel();
  // The run ends with kDetached and the job keeps running, for backends whose jobs outlive the
  // launcher (Backend::KeepsJobs); others treat it as Cancel. Safe from any thread.
  void Detach();
  bool detached() const { return detached_.load(std::memory_order_acquire); }
  int fd() const { return fd_; }  // an eventfd, readable once cancelled or detached

 private:
  int fd_ = -1;
  std::atomic<bool> detached_{false};
};

// Runs the child to its end. Never throws for anything the child does.
ProcessResult RunProcess(const ProcessSpec& spec, const ProcessObserver& observer = {},
                         ProcessControl* control = nullptr);

// Which programs may run. Text format, one entry per line, '#' starts a comment:
//   encode-video = /usr/bin/ffmpeg -hide_banner -nostdin -y -nostats -progress pipe:1
//   encode-video.env = LANG TMPDIR
//   encode-video.progress = ffmpeg
// The first form names a program (an absolute path) and its fixed leading arguments; the second
// lists the environment variables a command may set for it (anything else is refused); the
// third names the format its progress comes in (kbus, the default, or ffmpeg: progress.hpp).
// `.env` and `.progress` lines follow their program's line. Arguments are separated by spaces;
// there is no quoting, so a fixed argument cannot contain a space.
// For the Docker backend, a program runs in a container: its path is the path inside the image,
// and these lines (each once, but .mount and .tmpfs as often as needed) set the container:
//   encode-video.image = kbus-encoder:1        the image (required with the Docker backend)
//   encode-video.cpus = 1.5                    CPUs at most (default: no limit)
//   encode-video.memory = 512m                 memory at most, swap included (k, m, g; >= 6m)
//   encode-video.pids = 256                    processes and threads at most (default 256)
//   encode-video.network = none                none (the default) or a network's name
//   encode-video.user = 65534:65534            never root (default 65534:65534)
//   encode-video.read_only = true              read-only root file system (the default)
//   encode-video.mount = media:/media:rw       SOURCE:TARGET[:ro|rw], ro by default
//   encode-video.tmpfs = /tmp                  a writable, empty tmpfs
class AllowList {
 public:
  struct Program {
    std::string path;
    std::vector<std::string> fixed_args;
    std::vector<std::string> allowed_env;
    ProgressFormat progress = ProgressFormat::kKbus;
    ContainerSpec container;  // the .image, .cpus, ... lines
  };

  // Errors name the line and what is wrong with it.
  static Result<AllowList> Parse(std::string_view text);

  // The spec for program `name` with `args` appended after the fixed ones, `env` as its
  // environment and the program's progress format. Refused: a name not in the list, an environment variable not allowed for it.
  Result<ProcessSpec> Resolve(std::string_view name, const std::vector<std::string>& args,
                              const std::map<std::string, std::string>& env) const;

  const std::map<std::string, Program, std::less<>>& programs() const { return programs_; }

 private:
  std::map<std::string, Program, std::less<>> programs_;
};

}  // namespace kbus::handlers
