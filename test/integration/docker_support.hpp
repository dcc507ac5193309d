#pragma once
// The docker_engine fixture's engine (test/integration/docker_rig.sh), for tests that run jobs
// in containers: where it listens, the test image, and the docker client on it.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace dt {

// What the fixture's setup left in KBUS_TEST_DOCKER_DIR.
struct Engine {
  std::string host;   // unix:///.../docker.sock
  std::string image;  // kbus-test-job:<hash>
  std::string socket() const { return host.rfind("unix://", 0) == 0 ? host.substr(7) : host; }
};

inline Engine& TheEngine() {
  static Engine engine;
  return engine;
}

inline std::string FirstLine(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// Reads the fixture's files into TheEngine(). nullopt when the tests may run; else the exit
// code for main: 77 (skipped) on a machine without dockerd, 1 when the fixture did not run.
inline std::optional<int> LoadEngine() {
  namespace fs = std::filesystem;
  const char* dir = std::getenv("KBUS_TEST_DOCKER_DIR");
  if (dir == nullptr) {
    std::cerr << "KBUS_TEST_DOCKER_DIR is not set: run through ctest (the docker_engine fixture), "
                 "or set it to a folder that test/integration/docker_rig.sh setup prepared\n";
    return 1;
  }
  if (fs::exists(fs::path(dir) / "no-dockerd")) {
    std::cout << "skipped: " << FirstLine(fs::path(dir) / "no-dockerd") << "\n";
    return 77;
  }
  TheEngine().host = FirstLine(fs::path(dir) / "docker-host");
  TheEngine().image = FirstLine(fs::path(dir) / "image");
  if (TheEngine().host.empty() || TheEngine().image.empty()) {
    std::cerr << "no engine in " << dir << ": docker_rig.sh setup failed or did not run\n";
    return 1;
  }
  return std::nullopt;
}

// `s` quoted for /bin/sh.
inline std::string Quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// Runs the docker client on the test engine; its stdout, "" (and a test failure) when it fails.
inline std::string Docker(const std::string& args) {
  const std::string client = std::filesystem::exists("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
  const std::string command = "DOCKER_HOST=" + Quoted(TheEngine().host) + " " + client + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << command;
    return {};
  }
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  if (pclose(pipe) != 0) {
    ADD_FAILURE() << command << " failed: " << out;
    return {};
  }
  return out;
}

// Seconds since the epoch, for `docker events --since/--until`.
inline long long EpochSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How many times the engine started a container of `group` for `job` from `since` (epoch
// seconds) to now.
inline int ContainerStarts(const std::string& group, const std::string& job, long long since) {
  const auto events = Lines(Docker("events --since " + std::to_string(since) + " --until " +
                                   std::to_string(EpochSeconds() + 1) +
                                   " --filter type=container --filter event=start --filter " +
                                   Quoted("label=kbus.group=" + group) + " --format " +
                                   Quoted("{{index .Actor.Attributes \"kbus.job_id\"}}")));
  return static_cast<int>(std::count(events.begin(), events.end(), job));
}

// The ids of `group`'s containers (all, or the job's), running or not.
inline std::vector<std::string> Containers(const std::string& group, const std::string& job = "") {
  std::string filter = "--filter " + Quoted("label=kbus.group=" + group);
  if (!job.empty()) filter += " --filter " + Quoted("label=kbus.job_id=" + job);
  return Lines(Docker("ps -aq " + filter));
}

}  // namespace dt
