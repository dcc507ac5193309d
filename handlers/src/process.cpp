#include "kbus/handlers/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <cstring>
#include <set>

#include "kbus/handlers/launcher_messages.hpp"
#include "process_output.hpp"

namespace kbus::handlers {

using Clock = std::chrono::steady_clock;

namespace {

// An fd closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  void Reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
};

// What the supervisor tells RunProcess, one write each (below PIPE_BUF, so never torn).
struct Report {
  std::int32_t kind;
  std::int32_t value;
};
enum : std::int32_t {
  kReportStarted = 1,      // value: the job's pid
  kReportExecFailed = 2,   // value: execve's errno
  kReportSetupFailed = 3,  // value: errno of a failed vfork
  kReportExited = 4,       // value: the job's wait status
};

// t + d, saturating at the end of time: a duration from a message cannot wrap a deadline into
// the past.
Clock::time_point After(Clock::time_point t, std::chrono::milliseconds d) {
  if (d.count() <= 0) return t;
  const auto room = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - t);
  return d >= room ? Clock::time_point::max() : t + std::chrono::duration_cast<Clock::duration>(d);
}

// The job's side, between vfork and execve: only system calls, no allocation. Shares memory with
// the (suspended) supervisor, so it reports an exec failure through `*error`. Its stdin, stdout
// and stderr are in place already.
[[noreturn]] void ExecJob(const char* path, char* const* argv, char* const* envp, pid_t supervisor,
                          volatile int* error) {
  ::setpgid(0, 0);                     // its own group: signals reach its descendants too
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with its supervisor, however that dies
  if (::getppid() != supervisor) ::_exit(127);
  // Default dispositions and an empty mask, as a fresh program expects.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::syscall(SYS_close_range, 3U, ~0U, 0U);  // nothing else of the launcher's leaks in
  ::execve(path, argv, envp);
  *error = errno;
  ::_exit(127);
}

void Tell(std::int32_t kind, std::int32_t value) {
  const Report r{kind, value};
  (void)!::write(3, &r, sizeof r);
}

std::int64_t MonotonicMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Waits up to `ms` for a signal of `set`; returns it, or 0.
int WaitSignal(const sigset_t& set, std::int64_t ms) {
  if (ms < 0) ms = 0;
  timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>((ms % 1000) * 1000000)};
  const int sig = ::sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

// Reaps every exited child, noting the job's status. True once the job was reaped.
bool ReapChildren(pid_t job, int& job_status, bool& job_reaped) {
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(-1, &status, WNOHANG);
    if (r <= 0) return job_reaped;
    if (r == job) {
      job_status = status;
      job_reaped = true;
    }
  }
}

// Kills what is left of the job's group and reaps it (the supervisor is their subreaper), for up
// to a second.
void ClearGroup(pid_t job, const sigset_t& chld, int& job_status, bool& job_reaped) {
  ::kill(-job, SIGKILL);
  const std::int64_t until = MonotonicMs() + 1000;
  while (::kill(-job, 0) == 0 && MonotonicMs() < until) {
    ReapChildren(job, job_status, job_reaped);
    WaitSignal(chld, 10);
  }
  ReapChildren(job, job_status, job_reaped);
}

// The job's supervisor: a forked copy of the job's thread that execs nothing, so it makes only
// system calls and never allocates (the launcher has other threads). It starts the job, reports
// the job's pid and its end on fd 3, and is the job's subreaper: what the job leaves in its
// group goes when the job ends. When the launcher dies, however it dies (PR_SET_PDEATHSIG), it
// stops the job's whole group: SIGTERM, `grace_ms`, SIGKILL. Every signal is blocked on entry
// and taken with sigtimedwait. Fds: 0 /dev/null, 1 and 2 the job's output pipes, 3 the report.
[[noreturn]] void Supervise(const char* path, char* const* argv, char* const* envp, pid_t launcher,
                            std::int64_t grace_ms) {
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != launcher) ::_exit(0);  // the launcher's thread is gone already: run nothing
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, &dfl, nullptr);  // not SIG_IGN, or children would not wait to be reaped
  sigset_t chld;
  ::sigemptyset(&chld);
  ::sigaddset(&chld, SIGCHLD);
  sigset_t stop_or_chld = chld;
  ::sigaddset(&stop_or_chld, SIGTERM);
  ::sigaddset(&stop_or_chld, SIGHUP);

  volatile int exec_errno = 0;
  const pid_t self = ::getpid();
  const pid_t job = ::vfork();
  if (job == 0) ExecJob(path, argv, envp, self, &exec_errno);
  const int vfork_errno = errno;
  ::dup2(0, 1);  // only the job holds the write ends of its pipes
  ::dup2(0, 2);
  if (job < 0) {
    Tell(kReportSetupFailed, vfork_errno);
    ::_exit(0);
  }
  if (exec_errno != 0) {
    int status = 0;
    ::waitpid(job, &status, 0);
    Tell(kReportExecFailed, exec_errno);
    ::_exit(0);
  }
  ::setpgid(job, job);  // also from here, so the group exists whichever side runs first
  Tell(kReportStarted, job);

  int job_status = 0;
  bool job_reaped = false;
  for (;;) {
    const int sig = WaitSignal(stop_or_chld, 1000);
    if (sig == SIGTERM || sig == SIGHUP || ::getppid() != launcher) break;  // the launcher went
    if (ReapChildren(job, job_status, job_reaped)) {
      ClearGroup(job, chld, job_status, job_reaped);
      Tell(kReportExited, job_status);
      ::_exit(0);
    }
  }
  // The launcher is gone (or we were told to stop): the whole group goes, gently first.
  ::kill(-job, SIGTERM);
  ::kill(-job, SIGCONT);
  const std::int64_t kill_at = MonotonicMs() + grace_ms;
  while (::kill(-job, 0) == 0 && MonotonicMs() < kill_at) {
    ReapChildren(job, job_status, job_reaped);
    WaitSignal(chld, std::min<std::int64_t>(kill_at - MonotonicMs(), 100));
  }
  ClearGroup(job, chld, job_status, job_reaped);
  Tell(kReportExited, job_status);
  ::_exit(0);
}

void SignalGroup(pid_t pgid, int sig) { ::kill(-pgid, sig); }

}  // namespace

std::string_view OutcomeName(ProcessOutcome outcome) {
  switch (outcome) {
    case ProcessOutcome::kSucceeded: return "succeeded";
    case ProcessOutcome::kFailed: return "failed";
    case ProcessOutcome::kTimedOut: return "timed_out";
    case ProcessOutcome::kCancelled: return "cancelled";
    case ProcessOutcome::kLaunchFailed: return "launch_failed";
    case ProcessOutcome::kOutOfMemory: return "out_of_memory";
    case ProcessOutcome::kDetached: return "detached";
  }
  return "failed";
}

ProcessControl::ProcessControl() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
ProcessControl::~ProcessControl() {
  if (fd_ >= 0) ::close(fd_);
}
void ProcessControl::Detach() {
  detached_.store(true, std::memory_order_release);
  Cancel();
}
void ProcessControl::Cancel() {
  const std::uint64_t one = 1;
  if (fd_ >= 0) (void)!::write(fd_, &one, sizeof one);
}

ProcessResult RunProcess(const ProcessSpec& spec, const ProcessObserver& observer, ProcessControl* control) {
  ProcessResult result;
  const auto started = Clock::now();
  auto launch_failed = [&](std::string why) {
    result.outcome = ProcessOutcome::kLaunchFailed;
    result.error = std::move(why);
    return result;
  };
  if (spec.path.empty() || spec.path.front() != '/') {
    return launch_failed("the program path '" + spec.path + "' is not absolute");
  }
  // Everything the child needs is prepared here: between vfork and execve it may not allocate.
  std::vector<std::string> env_entries;
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return launch_failed("environment variable '" + k + "' has an invalid name or value");
    }
    env_entries.push_back(k + "=" + v);
  }
  for (const auto& a : spec.args) {
    if (a.find('\0') != std::string::npos) return launch_failed("an argument contains a NUL byte");
  }
  const std::string argv0 = spec.argv0.empty() ? spec.path : spec.argv0;
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(argv0.c_str()));
  for (const auto& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_entries) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return launch_failed(std::string("pipe: ") + std::strerror(errno));
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return launch_failed(std::string("pipe: ") + std::strerror(errno));
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);
  // Our ends never block (the child's stay blocking: it must not see EAGAIN on a full pipe).
  ::fcntl(out_r.fd, F_SETFL, O_NONBLOCK);
  ::fcntl(err_r.fd, F_SETFL, O_NONBLOCK);
  Fd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_fd.fd < 0) return launch_failed(std::string("/dev/null: ") + std::strerror(errno));

  int report_pipe[2];
  if (::pipe2(report_pipe, O_CLOEXEC) != 0) return launch_failed(std::string("pipe: ") + std::strerror(errno));
  Fd report_r(report_pipe[0]), report_w(report_pipe[1]);

  // The supervisor runs with every signal blocked (it takes them with sigtimedwait), and no
  // signal handler of ours may run in it.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t parent = ::getpid();
  const std::int64_t grace_ms = std::clamp<std::int64_t>(spec.kill_grace.count(), 0, 24 * 3600 * 1000);
  const pid_t supervisor = ::fork();
  if (supervisor == 0) {
    // Its fds: 0 /dev/null, 1 and 2 the output pipes, 3 the report pipe; nothing else of the
    // launcher's (another job's pipe held here would never reach end of file). Copied above 9
    // first, so that no dup2 overwrites a source.
    const int fds[4] = {::fcntl(null_fd.fd, F_DUPFD, 10), ::fcntl(out_w.fd, F_DUPFD, 10),
                        ::fcntl(err_w.fd, F_DUPFD, 10), ::fcntl(report_w.fd, F_DUPFD, 10)};
    for (int i = 0; i < 4; ++i) {
      if (fds[i] < 0 || ::dup2(fds[i], i) < 0) ::_exit(127);
    }
    ::syscall(SYS_close_range, 4U, ~0U, 0U);
    Supervise(spec.path.c_str(), argv.data(), envp.data(), parent, grace_ms);
  }
  const int spawn_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (supervisor < 0) return launch_failed(std::string("cannot start a process: ") + std::strerror(spawn_errno));
  out_w.Reset();
  err_w.Reset();
  null_fd.Reset();
  report_w.Reset();
  // Reads one whole report; false at end of file (the supervisor died).
  auto read_report = [&](Report& r) {
    std::size_t got = 0;
    auto* bytes = reinterpret_cast<char*>(&r);
    while (got < sizeof r) {
      const ssize_t n = ::read(report_r.fd, bytes + got, sizeof r - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      got += static_cast<std::size_t>(n);
    }
    return true;
  };
  auto reap_supervisor = [&] {
    int st = 0;
    while (::waitpid(supervisor, &st, 0) < 0 && errno == EINTR) {
    }
  };
  Report first{};
  if (!read_report(first) || first.kind != kReportStarted) {
    reap_supervisor();
    if (first.kind == kReportExecFailed) {
      return launch_failed("cannot execute " + spec.path + ": " + std::strerror(first.value));
    }
    if (first.kind == kReportSetupFailed) {
      return launch_failed(std::string("cannot start a process: ") + std::strerror(first.value));
    }
    return launch_failed("the job's supervisor ended before the job started");
  }
  const pid_t pid = first.value;
  if (observer.started) observer.started(pid, {}, std::chrono::milliseconds(0));

  auto run_deadline = spec.run_timeout.count() > 0 ? After(started, spec.run_timeout) : Clock::time_point::max();
  auto kill_at = Clock::time_point::max();  // SIGKILL after the grace, once SIGTERM went out
  auto next_tick = observer.tick_interval.count() > 0 ? After(started, observer.tick_interval) : Clock::time_point::max();
  bool timed_out = false, cancelled = false, exited = false;
  int status = 0;
  auto pipes_closed_by = Clock::time_point::max();
  // Signals go to the group only while the supervisor has not reported the job's end: after it,
  // the group is gone and its id may be reused.
  auto stop = [&](bool& flag) {
    if (flag || timed_out || cancelled || exited) return;
    flag = true;
    SignalGroup(pid, SIGTERM);
    kill_at = After(Clock::now(), spec.kill_grace);
  };
  detail::ProcessOutput output(result, spec.progress, observer.progress);
  auto on_stdout = [&](const char* data, std::size_t n) { output.Stdout({data, n}); };
  auto on_stderr = [&](const char* data, std::size_t n) { output.Stderr({data, n}); };
  // Reads what a pipe has; false at end of file.
  char buf[65536];
  auto drain = [&](Fd& fd, bool is_stdout) {
    for (;;) {
      const ssize_t n = ::read(fd.fd, buf, sizeof buf);
      if (n > 0) {
        if (is_stdout) {
          on_stdout(buf, static_cast<std::size_t>(n));
        } else {
          on_stderr(buf, static_cast<std::size_t>(n));
        }
        if (static_cast<std::size_t>(n) < sizeof buf) return true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      fd.Reset();  // end of file or error: done with this pipe
      return false;
    }
  };
  // The supervisor reports the job's end once it reaped the job and cleared its group. A report
  // is one write of 8 bytes, so a readable pipe holds it whole.
  auto on_report = [&] {
    Report r{};
    if (!read_report(r) || r.kind != kReportExited) {
      // The supervisor died without a word (someone killed it): nothing may outlive it.
      SignalGroup(pid, SIGKILL);
      r.value = SIGKILL;  // as a wait status: killed by SIGKILL
    }
    status = r.value;
    exited = true;
    kill_at = Clock::time_point::max();
    report_r.Reset();
    reap_supervisor();
    pipes_closed_by = Clock::now() + std::chrono::milliseconds(200);
  };

  // Runs until the child exited and both pipes reached end of file (or, once it exited, a
  // short while for descendants that still hold them).
  while (!exited || out_r.fd >= 0 || err_r.fd >= 0) {
    const auto now = Clock::now();
    if (now >= run_deadline) {
      stop(timed_out);
      run_deadline = Clock::time_point::max();  // once
    }
    if (now >= kill_at && !exited) {
      SignalGroup(pid, SIGKILL);
      kill_at = Clock::time_point::max();
    }
    if (now >= next_tick) {
      if (!exited && observer.tick) observer.tick();
      next_tick = After(now, observer.tick_interval);
    }
    if (exited && now >= pipes_closed_by) break;
    pollfd fds[4];
    nfds_t n = 0;
    int i_out = -1, i_err = -1, i_rep = -1, i_ctl = -1;
    if (out_r.fd >= 0) i_out = static_cast<int>(n), fds[n++] = {out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0) i_err = static_cast<int>(n), fds[n++] = {err_r.fd, POLLIN, 0};
    if (!exited) i_rep = static_cast<int>(n), fds[n++] = {report_r.fd, POLLIN, 0};
    if (!exited && control != nullptr && control->fd() >= 0 && !cancelled) {
      i_ctl = static_cast<int>(n), fds[n++] = {control->fd(), POLLIN, 0};
    }
    const auto wake = std::min({run_deadline, kill_at, next_tick, pipes_closed_by});
    const int timeout = wake == Clock::time_point::max()
                            ? -1
                            : static_cast<int>(std::clamp<std::int64_t>(
                                  std::chrono::ceil<std::chrono::milliseconds>(wake - now).count(), 0, 60000));
    const int ready = ::poll(fds, n, timeout);
    if (ready < 0 && errno != EINTR) break;
    // Stderr first: what a child wrote there before its stdout is read before it (ffmpeg's
    // input duration before the progress it is needed for).
    if (i_err >= 0 && fds[i_err].revents != 0) drain(err_r, false);
    if (i_out >= 0 && fds[i_out].revents != 0) drain(out_r, true);
    if (i_ctl >= 0 && fds[i_ctl].revents != 0) stop(cancelled);
    if (i_rep >= 0 && fds[i_rep].revents != 0) on_report();
  }
  if (!exited) {
    // poll failed: end the job rather than leave it unwatched, and take the supervisor's word.
    SignalGroup(pid, SIGKILL);
    on_report();
  }
  output.Finish();

  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  if (timed_out) {
    result.outcome = ProcessOutcome::kTimedOut;
  } else if (cancelled) {
    result.outcome = ProcessOutcome::kCancelled;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    result.outcome = ProcessOutcome::kSucceeded;
  } else {
    result.outcome = ProcessOutcome::kFailed;
  }
  return result;
}

}  // namespace kbus::handlers
