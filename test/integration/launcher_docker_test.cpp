// kbus-launcher with --backend docker, as an operator runs it, on a private Docker engine (the
// ctest fixture docker_engine: test/integration/docker_rig.sh) and a test image holding only the
// static fake encoder: jobs run in containers and report as child processes do (succeeded with
// progress and result, failed, timed out, cancelled, and out of memory); arguments reach the
// program byte for byte, without a shell; programs outside the allow-list, or without an image,
// are refused; no container outlives its job's exit. A launcher killed with SIGKILL leaves its
// containers running; the launcher that takes its partitions adopts them, so each attempt runs
// once and is reported once.
//
// Needs root (dockerd). Without dockerd on the machine the binary exits 77 (ctest: skipped).

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "free_port.hpp"
#include "docker_support.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "launcher_events.hpp"

extern "C" char** environ;

namespace {

using kbus::handlers::CancelProcess;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessProgress;
using kbus::handlers::ProcessStarted;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using lt::EventLog;
using lt::Seen;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace fs = std::filesystem;

using dt::Docker;
using dt::Lines;
using dt::Quoted;
using dt::TheEngine;

// The container id in a ProcessStarted, or nullopt while the message has no such field.
template <class E>
std::optional<std::string> ContainerIdOf(const E& e) {
  if constexpr (requires { e.container_id; }) {
    return std::string(e.container_id);
  } else {
    return std::nullopt;
  }
}

using kbus::test::FreePort;

// GET http://127.0.0.1:port/path; the body, "" when nothing answers.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    }
  }
  close(fd);
  const auto body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// The sum of a metric's samples in a Prometheus exposition; -1 when it has none.
double MetricSum(const std::string& text, const std::string& name) {
  double sum = -1;
  for (const std::string& line : Lines(text)) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != ' ' && next != '{') continue;
    sum = (sum < 0 ? 0 : sum) + std::atof(line.substr(line.rfind(' ') + 1).c_str());
  }
  return sum;
}

// A kbus-launcher process, its stdout and stderr in a file. SIGKILLed when the test process dies
// (PR_SET_PDEATHSIG) and when the object goes while it still runs.
class LauncherProcess {
 public:
  LauncherProcess(std::vector<std::string> args, const fs::path& log) : log_(log) {
    args.insert(args.begin(), KBUS_LAUNCHER_PATH);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
      dup2(out, 1);
      dup2(out, 2);
      execve(argv[0], argv.data(), environ);
      _exit(127);
    }
    close(out);
  }
  ~LauncherProcess() {
    if (pid_ > 0) Stop(SIGTERM, seconds(30));
  }
  LauncherProcess(const LauncherProcess&) = delete;
  LauncherProcess& operator=(const LauncherProcess&) = delete;

  // Sends `sig` and waits up to `timeout` for the exit (then SIGKILL): the exit code, or 128 +
  // the signal; -1 when it had to be killed.
  int Stop(int sig, seconds timeout) {
    if (pid_ > 0) {
      kill(pid_, sig);
      code_ = WaitExit(timeout);
    }
    return code_;
  }
  // False once it exited (reaped then; exit_code() says how).
  bool Running() {
    int status = 0;
    if (pid_ <= 0) return false;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
    pid_ = -1;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  int exit_code() const { return code_; }
  // Waits for it to exit by itself.
  int WaitExit(seconds timeout) {
    if (pid_ <= 0) return code_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return code_ = -1;
  }
  std::string Log() const {
    std::ifstream in(log_);
    return {std::istreambuf_iterator<char>(in), {}};
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int code_ = -1;
};

// One test's topics, group, allow-list and launchers.
class DockerLauncher : public ::testing::Test {
 protected:
  void SetUp() override {
    since_ = dt::EpochSeconds() - 1;
    const std::string& image = TheEngine().image;
    allow_text_ =
        "encode = /fake-encoder\n"
        "encode.image = " + image + "\n"
        "encode.tmpfs = /track\n"
        "echo = /fake-encoder --echo-args\n"
        "echo.image = " + image + "\n"
        "hog = /fake-encoder --eat-memory 256 --seconds 0 --steps 1\n"
        "hog.image = " + image + "\n"
        "hog.memory = 32m\n";
    fs::create_directories(dir_);
  }
  void TearDown() override {
    launchers_.clear();  // SIGTERM, then the containers they leave are seen below
    // Whatever the test did, no container of its group may remain; remove any so that one
    // failure does not spill into the next test (or the fixture's clean-up check).
    const auto left = Lines(Docker("ps -a --filter label=kbus.group=" + group_ +
                                   " --format '{{.Names}} job={{.Label \"kbus.job_id\"}} {{.Status}}'"));
    EXPECT_TRUE(left.empty()) << "containers left of group " << group_ << ":\n" << ::testing::PrintToString(left);
    for (const std::string& id : Containers()) Docker("rm -f " + id);
    if (HasFailure()) {
      for (const auto& log : logs_) std::cerr << "--- " << log << ":\n" << FirstLines(log) << "\n";
    } else {
      fs::remove_all(dir_);
    }
  }
  static std::string FirstLines(const fs::path& file) {
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    return text.size() > 20000 ? text.substr(0, 20000) + "\n[...]" : text;
  }

  // Creates the topics (launch and control with `partitions`) and writes the allow-list.
  void Topics(int partitions = 1) {
    TestBroker::Get().CreateTopic(launch_, partitions);
    TestBroker::Get().CreateTopic(control_, partitions);
    TestBroker::Get().CreateTopic(events_, 1);
    std::ofstream(allow_) << allow_text_;
  }
  std::vector<std::string> Args(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args{"--brokers", TestBroker::Get().bootstrap(), "--group", group_, "--allow-list",
                                  allow_.string(), "--launch-topic", launch_, "--control-topic", control_,
                                  "--reply-topics", "ldt-events-*", "--session-timeout-ms", "6000",
                                  "--kill-grace-ms", "500", "--log-level", "warn", "--backend", "docker",
                                  "--docker-socket", TheEngine().socket()};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  LauncherProcess& Start(const std::vector<std::string>& extra = {}) {
    const fs::path log = dir_ / ("launcher-" + std::to_string(logs_.size()) + ".log");
    logs_.push_back(log);
    launchers_.push_back(std::make_unique<LauncherProcess>(Args(extra), log));
    stopped_.push_back(false);
    reported_.push_back(false);
    return *launchers_.back();
  }

  // The job's ProcessStarted (nullopt, a failure, after `timeout`), or its ProcessExited: waits
  // that end early when a launcher the test did not stop has exited (its log is printed).
  std::optional<ProcessStarted> WaitStarted(EventLog& log, const std::string& job, seconds timeout = seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline && !LauncherDied()) {
      if (auto started = log.WaitStarted(job, milliseconds(250))) return started;
    }
    ADD_FAILURE() << "no ProcessStarted for " << job;
    return std::nullopt;
  }
  ProcessExited WaitExited(EventLog& log, const std::string& job, seconds timeout = seconds(60)) {
    WaitFor([&] { return log.Count<ProcessExited>(job) > 0 || LauncherDied(); }, timeout);
    return log.WaitExited(job, milliseconds(1));
  }
  // Whether a launcher exited that the test did not stop.
  bool LauncherDied() {
    for (std::size_t i = 0; i < launchers_.size(); ++i) {
      if (!stopped_[i] && !launchers_[i]->Running()) {
        if (!reported_[i]) {
          reported_[i] = true;
          ADD_FAILURE() << "launcher " << i << " exited with " << launchers_[i]->exit_code() << ":\n"
                        << launchers_[i]->Log();
        }
        return true;
      }
    }
    return false;
  }
  // SIGKILLs launcher `i` (the `i`th Start()).
  int Kill(std::size_t i) {
    stopped_[i] = true;
    return launchers_[i]->Stop(SIGKILL, seconds(10));
  }

  LaunchProcess Job(const std::string& job, const std::string& program, std::vector<std::string> args) {
    LaunchProcess cmd;
    cmd.job_id = job;
    cmd.program = program;
    cmd.args = std::move(args);
    cmd.reply_to = events_;
    return cmd;
  }
  void Launch(const LaunchProcess& cmd, int partition = -1) {
    kbus::OutgoingRecord r = kbus::BuildRecord(cmd, {.topic = launch_, .key = cmd.job_id});
    r.partition = partition;
    ASSERT_TRUE(producer_.SendSync(r).ok());
  }
  void Cancel(const std::string& job, const std::string& reason, int partition = -1) {
    kbus::OutgoingRecord r = kbus::BuildRecord(CancelProcess{job, reason}, {.topic = control_, .key = job});
    r.partition = partition;
    ASSERT_TRUE(producer_.SendSync(r).ok());
  }

  // The ids of this group's containers (all, or the job's), running or not.
  std::vector<std::string> Containers(const std::string& job = "") { return dt::Containers(group_, job); }
  // Waits for the job's container to be removed (after its exit is reported).
  void ExpectContainerGone(const std::string& job) {
    EXPECT_TRUE(WaitFor([&] { return Containers(job).empty(); }, seconds(15)))
        << "the container of " << job << " is still there after its exit was reported: "
        << Docker("ps -a --filter label=kbus.group=" + group_ + " --filter " + Quoted("label=kbus.job_id=" + job));
  }
  // How many times a container of the job was started by the engine since the test began.
  int ContainerStarts(const std::string& job) { return dt::ContainerStarts(group_, job, since_); }

  std::string launch_ = TestBroker::UniqueName("ldt-launch");
  std::string control_ = TestBroker::UniqueName("ldt-control");
  std::string events_ = TestBroker::UniqueName("ldt-events");
  std::string group_ = TestBroker::UniqueName("ldt-g");
  fs::path dir_ = fs::temp_directory_path() / TestBroker::UniqueName("ldt");
  fs::path allow_ = dir_ / "launcher.allow";
  std::string allow_text_;
  long long since_ = 0;
  kbus::kafka::Producer producer_{it::ProducerConfig()};
  std::vector<fs::path> logs_;
  std::vector<std::unique_ptr<LauncherProcess>> launchers_;
  std::vector<bool> stopped_, reported_;  // per launcher: stopped by the test; its exit reported
};

TEST_F(DockerLauncher, ASucceedingJobReportsItsContainerProgressAndResultAndItsContainerIsRemoved) {
  Topics();
  EventLog log(events_);
  Start();
  LaunchProcess cmd = Job("ok", "encode", {"--track", "/track", "--seconds", "1.2", "--steps", "4", "--output",
                                           "clip.mp4"});
  cmd.heartbeat_interval = milliseconds(200);
  Launch(cmd);
  const auto started = WaitStarted(log, "ok", seconds(60));
  ASSERT_TRUE(started.has_value());
  const auto container = ContainerIdOf(*started);
  EXPECT_TRUE(container.has_value()) << "ProcessStarted has no container_id field";
  EXPECT_NE(container.value_or(""), "") << "ProcessStarted of a container names it";
  EXPECT_GT(started->pid, 0);
  EXPECT_EQ(started->program, "encode");

  const ProcessExited exited = WaitExited(log, "ok", seconds(60));
  EXPECT_EQ(exited.outcome, "succeeded") << exited.error << exited.stderr_tail;
  EXPECT_EQ(exited.exit_code, 0);
  EXPECT_EQ(exited.signal, 0);
  EXPECT_EQ(exited.attempt, 1);
  EXPECT_GE(exited.duration, milliseconds(1100));
  EXPECT_EQ(exited.result, R"({"output":"clip.mp4","frames":100})");

  std::vector<std::string> progress;
  for (const Seen& s : log.Of("ok")) {
    if (const auto* p = std::get_if<ProcessProgress>(&s.event)) {
      progress.push_back(std::to_string(p->percent) + " " + p->message);
    }
  }
  EXPECT_EQ(progress, (std::vector<std::string>{"0 running 1", "25 encoding pass 1", "50 encoding pass 2",
                                                "75 encoding pass 3", "100 encoding pass 4"}))
      << "--track wrote to the tmpfs of a read-only root";
  EXPECT_GE(log.Count<ProcessHeartbeat>("ok"), 2) << "every 200 ms over 1.2 s";
  EXPECT_TRUE(std::holds_alternative<ProcessStarted>(log.Of("ok").front().event));
  EXPECT_EQ(log.Count<ProcessStarted>("ok"), 1);
  EXPECT_EQ(log.Count<ProcessExited>("ok"), 1);
  ExpectContainerGone("ok");
  EXPECT_EQ(ContainerStarts("ok"), 1);
}

TEST_F(DockerLauncher, AFailingJobReportsItsExitCodeAndStderr) {
  Topics();
  EventLog log(events_);
  Start();
  Launch(Job("exit-3", "encode", {"--seconds", "0.05", "--steps", "1", "--exit-code", "3", "--stderr", "bad input"}));
  const ProcessExited exited = WaitExited(log, "exit-3", seconds(60));
  EXPECT_EQ(exited.outcome, "failed");
  EXPECT_EQ(exited.exit_code, 3);
  EXPECT_EQ(exited.signal, 0);
  EXPECT_EQ(exited.stderr_tail, "bad input\n");
  EXPECT_EQ(exited.result, "");
  EXPECT_EQ(log.Count<ProcessStarted>("exit-3"), 1);
  ExpectContainerGone("exit-3");
}

TEST_F(DockerLauncher, AJobPastItsRunTimeoutIsStoppedAndReportedTimedOut) {
  Topics();
  EventLog log(events_);
  Start();
  LaunchProcess cmd = Job("slow", "encode", {"--ignore-term", "--seconds", "120", "--steps", "120"});
  cmd.run_timeout = milliseconds(1500);
  Launch(cmd);
  ASSERT_TRUE(WaitStarted(log, "slow", seconds(60)).has_value());
  const ProcessExited exited = WaitExited(log, "slow", seconds(60));
  EXPECT_EQ(exited.outcome, "timed_out");
  EXPECT_GE(exited.duration, milliseconds(1500));
  EXPECT_LT(exited.duration, seconds(30)) << "SIGTERM ignored: SIGKILL after the 500 ms grace";
  ExpectContainerGone("slow");
}

TEST_F(DockerLauncher, CancelStopsARunningContainerAndReportsCancelled) {
  Topics();
  EventLog log(events_);
  Start();
  Launch(Job("long", "encode", {"--seconds", "120", "--steps", "120"}));
  ASSERT_TRUE(WaitStarted(log, "long", seconds(60)).has_value());
  Cancel("long", "the user gave up");
  const ProcessExited exited = WaitExited(log, "long", seconds(60));
  EXPECT_EQ(exited.outcome, "cancelled");
  EXPECT_EQ(exited.error, "cancelled: the user gave up");
  EXPECT_LT(exited.duration, seconds(30));
  EXPECT_EQ(log.Count<ProcessExited>("long"), 1);
  ExpectContainerGone("long");
}

TEST_F(DockerLauncher, AJobPastItsMemoryLimitIsReportedOutOfMemory) {
  Topics();
  EventLog log(events_);
  Start();
  Launch(Job("hog", "hog", {}));
  const ProcessExited exited = WaitExited(log, "hog", seconds(60));
  EXPECT_EQ(exited.outcome, "out_of_memory") << exited.error;
  EXPECT_EQ(exited.error, "the container exceeded its memory limit of 33554432 bytes");
  EXPECT_EQ(exited.result, "") << "it never got to its result";
  ExpectContainerGone("hog");
}

TEST_F(DockerLauncher, ArgumentsReachTheProgramByteForByteWithoutAShell) {
  Topics();
  EventLog log(events_);
  Start();
  const std::vector<std::string> args{"$(rm -rf /)", "; | & > '\"", "`id`", "a b  c", "x\ny", "\t*?~ $HOME",
                                      "é ü 日本 🎬", "", "--seconds"};
  Launch(Job("argv", "echo", args));
  const ProcessExited exited = WaitExited(log, "argv", seconds(60));
  EXPECT_EQ(exited.outcome, "succeeded") << exited.stderr_tail;
  EXPECT_EQ(exited.result,
            "{\"args\":[\"$(rm -rf /)\",\"; | & > '\\\"\",\"`id`\",\"a b  c\",\"x\\u000ay\",\"\\u0009*?~ $HOME\","
            "\"é ü 日本 🎬\",\"\",\"--seconds\"]}");
  ExpectContainerGone("argv");
}

TEST_F(DockerLauncher, AProgramNotInTheAllowListIsALaunchFailureAndCreatesNoContainer) {
  Topics();
  EventLog log(events_);
  Start();
  LaunchProcess rm = Job("rm", "rm", {"-rf", "/"});
  Launch(rm);
  const ProcessExited exited = WaitExited(log, "rm", seconds(60));
  EXPECT_EQ(exited.outcome, "launch_failed");
  EXPECT_NE(exited.error.find("'rm' is not in the launcher's allow-list"), std::string::npos) << exited.error;
  EXPECT_EQ(log.Count<ProcessStarted>("rm"), 0);
  EXPECT_EQ(ContainerStarts("rm"), 0);
  EXPECT_TRUE(Containers("rm").empty());
}

TEST_F(DockerLauncher, AnAllowListProgramWithoutAnImageIsRefusedAtStartNamingIt) {
  allow_text_ += "bare = /fake-encoder --seconds 1\n";
  Topics();
  LauncherProcess& launcher = Start();
  const int code = launcher.WaitExit(seconds(30));
  EXPECT_TRUE(code == 1 || code == 2) << "exit code " << code << "; output:\n" << launcher.Log();
  EXPECT_NE(launcher.Log().find("bare"), std::string::npos) << "the message names the program:\n" << launcher.Log();
}

TEST_F(DockerLauncher, ASocketWhereNoEngineAnswersIsRefusedAtStartNamingTheFlag) {
  Topics();
  const fs::path log = dir_ / "nosocket.log";
  logs_.push_back(log);
  std::vector<std::string> args = Args();
  args.back() = (dir_ / "no-docker.sock").string();
  LauncherProcess launcher(args, log);
  EXPECT_EQ(launcher.WaitExit(seconds(30)), 2) << "a bad flag value: " << launcher.Log();
  EXPECT_NE(launcher.Log().find("--docker-socket: cannot use the Docker engine's socket"), std::string::npos)
      << launcher.Log();
}

// One launcher, SIGKILLed while its job runs, and started again: the new one adopts the running
// container (heartbeats and progress from it), reports its exit once, and runs nothing again.
TEST_F(DockerLauncher, AJobOfALauncherKilledWithSigkillIsAdoptedByItsSuccessorAndRunsOnce) {
  Topics();
  EventLog log(events_);
  Start();
  LaunchProcess cmd = Job("adopted", "encode", {"--seconds", "16", "--steps", "16", "--output", "adopted.mp4"});
  cmd.heartbeat_interval = milliseconds(500);
  Launch(cmd);
  const auto started = WaitStarted(log, "adopted", seconds(60));
  ASSERT_TRUE(started.has_value());
  ASSERT_TRUE(WaitFor([&] { return log.Count<ProcessProgress>("adopted") >= 2 || LauncherDied(); }, seconds(30)) &&
              !LauncherDied())
      << "the job makes progress before the kill";
  EXPECT_EQ(Kill(0), 128 + SIGKILL);
  ASSERT_EQ(Containers("adopted").size(), 1u) << "the container outlives its launcher";
  const std::size_t before = log.Of("adopted").size();

  Start();
  const ProcessExited exited = WaitExited(log, "adopted", seconds(90));
  EXPECT_EQ(exited.outcome, "succeeded") << exited.error;
  EXPECT_EQ(exited.attempt, 1);
  EXPECT_EQ(exited.exit_code, 0);
  EXPECT_EQ(exited.result, R"({"output":"adopted.mp4","frames":400})");
  EXPECT_GE(exited.duration, seconds(15)) << "the container's whole run, not the adopter's share";
  const auto seen = log.Of("adopted");
  int followed = 0;
  for (std::size_t i = before; i + 1 < seen.size(); ++i) {
    followed += std::holds_alternative<ProcessHeartbeat>(seen[i].event) ||
                std::holds_alternative<ProcessProgress>(seen[i].event);
  }
  EXPECT_GT(followed, 0) << "the successor followed the running container (heartbeats, progress)";
  EXPECT_EQ(log.Count<ProcessStarted>("adopted"), 1) << "no second start for the attempt";
  // Another exit would come soon after the first, if at all.
  std::this_thread::sleep_for(seconds(2));
  EXPECT_EQ(log.Count<ProcessExited>("adopted"), 1);
  EXPECT_EQ(ContainerStarts("adopted"), 1) << "the container ran once";
  ExpectContainerGone("adopted");
}

// Two launchers in one group on a launch topic of two partitions; one is SIGKILLed while it
// runs jobs: the other takes its partitions and adopts its containers. Every job ends with
// exactly one ProcessExited, and each ran once.
TEST_F(DockerLauncher, JobsOfAReplicaKilledWithSigkillAreAdoptedByTheOtherAndEachEndsOnce) {
  Topics(2);
  EventLog log(events_);
  const int port_a = FreePort();
  const int port_b = FreePort();
  Start({"--http-port", std::to_string(port_a)});
  const std::vector<std::string> jobs{"r-0", "r-1", "r-2", "r-3"};
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    LaunchProcess cmd = Job(jobs[i], "encode", {"--seconds", "20", "--steps", "20"});
    cmd.heartbeat_interval = milliseconds(500);
    Launch(cmd, static_cast<int>(i % 2));
  }
  for (const auto& job : jobs) ASSERT_TRUE(WaitStarted(log, job, seconds(60)).has_value()) << job;
  // The second replica joins: it takes one partition of each topic (the range assignor),
  // adopting the running containers of its launch partition.
  Start({"--http-port", std::to_string(port_b)});
  ASSERT_TRUE(WaitFor(
      [&] {
        if (LauncherDied()) return true;
        return MetricSum(HttpGet(port_b, "/metrics"), "kbus_worker_assigned_partitions") >= 2 &&
               MetricSum(HttpGet(port_a, "/metrics"), "kbus_worker_assigned_partitions") == 2;
      },
      seconds(60)) && !LauncherDied())
      << "the partitions were never split between the two replicas";
  EXPECT_EQ(Kill(0), 128 + SIGKILL);
  EXPECT_EQ(Containers().size(), jobs.size()) << "the containers outlive their launcher";

  const auto deadline = std::chrono::steady_clock::now() + seconds(120);  // for all of them
  for (const auto& job : jobs) {
    const auto left = std::chrono::duration_cast<seconds>(deadline - std::chrono::steady_clock::now());
    const ProcessExited exited = WaitExited(log, job, std::max(left, seconds(1)));
    EXPECT_EQ(exited.outcome, "succeeded") << job << ": " << exited.error;
    EXPECT_EQ(exited.attempt, 1) << job;
    EXPECT_GE(exited.duration, seconds(19)) << job;
  }
  std::this_thread::sleep_for(seconds(2));
  for (const auto& job : jobs) {
    EXPECT_EQ(log.Count<ProcessStarted>(job), 1) << job;
    EXPECT_EQ(log.Count<ProcessExited>(job), 1) << job;
    EXPECT_EQ(ContainerStarts(job), 1) << job;
    ExpectContainerGone(job);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (const auto exit = dt::LoadEngine()) return *exit;
  return RUN_ALL_TESTS();
}
