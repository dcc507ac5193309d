#pragma once
// Runs Debian's `promtool check metrics` (package prometheus, installed by scripts/install-deps.sh)
// over an exposition, for tests that hold kbus's /metrics to what Prometheus accepts: the text
// format parsed, and its lint rules (_total counters, base units, help text, snake_case).

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace kbus::test {

inline constexpr const char* kPromtool = "/usr/bin/promtool";

struct PromtoolResult {
  int exit_code = -1;  // 0: parsed with no lint problems; -1: promtool could not be run
  std::string output;  // what it printed, stdout and stderr: parse errors and lint problems
};

// `promtool check metrics` with `exposition` on its standard input.
inline PromtoolResult CheckMetrics(std::string_view exposition) {
  PromtoolResult r;
  if (access(kPromtool, X_OK) != 0) {
    r.output = std::string(kPromtool) + " is missing: install Debian's prometheus package (scripts/install-deps.sh)";
    return r;
  }
  // The exposition goes through a file: popen gives one direction only, and the output is the part
  // worth reading.
  char path[] = "/tmp/kbus-promtool-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    r.output = "cannot make a temporary file";
    return r;
  }
  for (std::string_view left = exposition; !left.empty();) {
    const ssize_t n = write(fd, left.data(), left.size());
    if (n <= 0) break;
    left.remove_prefix(static_cast<std::size_t>(n));
  }
  close(fd);
  const std::string command = std::string(kPromtool) + " check metrics < " + path + " 2>&1";
  if (FILE* p = popen(command.c_str(), "r")) {
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
    const int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  } else {
    r.output = "cannot run " + command;
  }
  unlink(path);
  return r;
}

}  // namespace kbus::test
