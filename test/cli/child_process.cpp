#include "child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace kbus::test {

namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error SystemError(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

// Frees posix_spawn's attribute and file-action objects on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

int PollTimeoutMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 100));
}

}  // namespace

std::string ProcessResult::Describe() const {
  std::string how = timed_out     ? "timed out and was killed"
                    : signal != 0 ? "was killed by signal " + std::to_string(signal)
                                  : "exited with " + std::to_string(exit_code);
  return how + "\n--- stdout:\n" + out + "\n--- stderr:\n" + err;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env) {
  if (argv.empty()) throw std::invalid_argument("ChildProcess: empty argv");
  ::signal(SIGPIPE, SIG_IGN);  // a write to a dead child's stdin fails with EPIPE instead

  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw SystemError("pipe", errno);
  if (pipe2(out, O_CLOEXEC) != 0) throw SystemError("pipe", errno);
  if (pipe2(err, O_CLOEXEC) != 0) throw SystemError("pipe", errno);

  SpawnSetup setup;
  // dup2 clears close-on-exec on the child's 0, 1 and 2; every other pipe end closes at exec.
  posix_spawn_file_actions_adddup2(&setup.actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, err[1], STDERR_FILENO);
  // Ignored signals stay ignored across exec: give the child default dispositions and no mask.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&setup.attr, &all);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "KBUS_", 5) != 0) environment.emplace_back(*e);
  }
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> c_argv, c_env;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  for (const auto& e : environment) c_env.push_back(const_cast<char*>(e.c_str()));
  c_env.push_back(nullptr);

  const int rc = posix_spawnp(&pid_, argv[0].c_str(), &setup.actions, &setup.attr, c_argv.data(),
                              c_env.data());
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  stdin_ = in[1];
  stdout_ = out[0];
  stderr_ = err[0];
  if (rc != 0) {
    CloseFd(stdin_);
    CloseFd(stdout_);
    CloseFd(stderr_);
    reaped_ = true;
    throw SystemError("cannot start " + argv[0], rc);
  }
  fcntl(stdin_, F_SETFL, fcntl(stdin_, F_GETFL) | O_NONBLOCK);
}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  CloseFd(stdin_);
  CloseFd(stdout_);
  CloseFd(stderr_);
}

void ChildProcess::CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void ChildProcess::SendStdinAndClose(std::string data) {
  stdin_data_ += data;
  close_stdin_ = true;
  Pump(Clock::now(), [] { return false; });  // writes what fits now; later calls write the rest
}

template <class Done>
bool ChildProcess::Pump(Clock::time_point deadline, Done done) {
  for (;;) {
    if (stdin_ >= 0 && close_stdin_ && stdin_data_.empty()) CloseFd(stdin_);
    if (done()) return true;
    pollfd fds[3];
    nfds_t n = 0;
    if (stdin_ >= 0 && !stdin_data_.empty()) fds[n++] = {stdin_, POLLOUT, 0};
    if (stdout_ >= 0) fds[n++] = {stdout_, POLLIN, 0};
    if (stderr_ >= 0) fds[n++] = {stderr_, POLLIN, 0};
    if (n == 0) {
      // Nothing left to move: only time can make done() true.
      if (Clock::now() >= deadline) return done();
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(PollTimeoutMs(deadline), 5)));
      continue;
    }
    const int ready = ::poll(fds, n, PollTimeoutMs(deadline));
    if (ready < 0 && errno != EINTR) throw SystemError("poll", errno);
    for (nfds_t i = 0; ready > 0 && i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == stdin_) {
        const ssize_t w = ::write(stdin_, stdin_data_.data(), stdin_data_.size());
        if (w > 0) {
          stdin_data_.erase(0, static_cast<std::size_t>(w));
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          stdin_data_.clear();  // the child closed its stdin: nothing more to deliver
          CloseFd(stdin_);
        }
        continue;
      }
      int& fd = fds[i].fd == stdout_ ? stdout_ : stderr_;
      std::string& sink = fds[i].fd == stdout_ ? out_ : err_;
      char buffer[4096];
      const ssize_t r = ::read(fd, buffer, sizeof buffer);
      if (r > 0) {
        sink.append(buffer, static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        CloseFd(fd);
      }
    }
    if (Clock::now() >= deadline) return done();
  }
}

std::optional<std::string> ChildProcess::ReadLine(std::chrono::milliseconds timeout) {
  const bool got = Pump(Clock::now() + timeout,
                        [&] { return out_.find('\n') != std::string::npos || stdout_ < 0; });
  const auto eol = out_.find('\n');
  if (!got || eol == std::string::npos) return std::nullopt;
  std::string line = out_.substr(0, eol);
  out_.erase(0, eol + 1);
  return line;
}

void ChildProcess::Kill(int signal) {
  if (!reaped_) ::kill(pid_, signal);
}

ProcessResult ChildProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  ProcessResult result;
  int status = 0;
  const bool exited = Pump(deadline, [&] {
    if (stdout_ >= 0 || stderr_ >= 0) return false;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    return r == pid_;
  });
  if (!exited) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    result.timed_out = true;
  }
  reaped_ = true;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  // Whatever the pipes still hold (a killed child's last words).
  Pump(Clock::now(), [] { return false; });
  result.out = std::move(out_);
  result.err = std::move(err_);
  return result;
}

ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         std::string stdin_data, const std::vector<std::string>& env) {
  ChildProcess child(argv, env);
  child.SendStdinAndClose(std::move(stdin_data));
  return child.Wait(timeout);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t eol; (eol = text.find('\n', start)) != std::string::npos; start = eol + 1) {
    out.push_back(text.substr(start, eol - start));
  }
  if (start < text.size()) out.push_back(text.substr(start));
  return out;
}

}  // namespace kbus::test
