#pragma once
// ChildProcess: runs a program (the kbus tool, kcat) with stdin, stdout and stderr on pipes, for
// tests that drive command-line tools. Every wait has a deadline; a child still running at the
// deadline, or when its ChildProcess is destroyed, is killed with SIGKILL and reaped.
//
// The child gets this process's environment without KBUS_* variables (so a developer's shell
// cannot change a test), plus the entries a test passes. SIGPIPE is ignored in this process from
// the first ChildProcess on, so a child that exits early cannot kill the test writing its stdin.
//
// Thread safety: one ChildProcess is used by one thread.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kbus::test {

struct ProcessResult {
  int exit_code = -1;      // the exit status when the child exited, else -1
  int signal = 0;          // the signal that ended it, else 0
  bool timed_out = false;  // still running at the deadline: killed by us
  std::string out;         // stdout not taken by ReadLine
  std::string err;

  // For assertion messages: how it ended and what it wrote to stderr.
  std::string Describe() const;
};

class ChildProcess {
 public:
  // argv[0] is looked up in PATH unless it contains a '/'. `env` entries are "NAME=value".
  // Throws std::runtime_error when the program cannot be started.
  explicit ChildProcess(const std::vector<std::string>& argv,
                        const std::vector<std::string>& env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Queues `data` for the child's stdin, which is closed once it is written (by later calls).
  void SendStdinAndClose(std::string data);
  // The next stdout line (without '\n'), or nullopt when none came within `timeout`.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout);
  // Sends `signal` to the child.
  void Kill(int signal);
  // Waits for the child to close its output and exit; kills it at the deadline.
  ProcessResult Wait(std::chrono::milliseconds timeout);

  pid_t pid() const { return pid_; }

 private:
  // Moves data through the pipes until `done()` holds or the deadline passes; returns done().
  template <class Done>
  bool Pump(std::chrono::steady_clock::time_point deadline, Done done);
  void CloseFd(int& fd);

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  int stderr_ = -1;
  std::string stdin_data_;
  bool close_stdin_ = false;
  std::string out_;
  std::string err_;
  bool reaped_ = false;
};

// Starts `argv`, writes `stdin_data` to it, and waits up to `timeout` for it to finish.
ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         std::string stdin_data = {}, const std::vector<std::string>& env = {});

// `text` split at newlines; a last line without one counts too.
std::vector<std::string> Lines(const std::string& text);

}  // namespace kbus::test
