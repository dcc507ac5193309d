// kbus-launcher and video-encoding as an operator (or compose) runs them: a SIGTERM with a job
// running reports it lost and exits 0, a second signal exits at once, brokers that do not answer
// yet are waited for with a log line every few seconds rather than an exit, and a bad KBUS_*
// value exits 2 naming the variable.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "free_port.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/ops/server.hpp"
#include "launcher_events.hpp"
#include "process_group.hpp"

extern char** environ;

namespace {

using kbus::handlers::LaunchProcess;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;

using kbus::test::FreePort;

// A program with its stderr (its JSON log lines) in a file the test reads while it runs, and
// this process's environment without KBUS_* variables plus `env`. Killed with SIGKILL and
// reaped if it still runs when destroyed.
class Program {
 public:
  explicit Program(const std::vector<std::string>& args, const std::vector<std::string>& env = {})
      : log_(std::filesystem::temp_directory_path() / TestBroker::UniqueName("program-log")) {
    std::vector<std::string> vars;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).rfind("KBUS_", 0) != 0) vars.emplace_back(*e);
    }
    vars.insert(vars.end(), env.begin(), env.end());
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (auto& v : vars) envp.push_back(v.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&files, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (posix_spawn(&pid_, argv[0], &files, nullptr, argv.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&files);
  }
  ~Program() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove(log_);
  }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig) const { kill(pid_, sig); }
  // Its exit code (128 + the signal that ended it), or -1 if it still runs after `timeout`.
  int WaitExit(milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
};

int Ready(int port) { return kbus::ops::Get("127.0.0.1", port, "/readyz").status; }

// A kbus-launcher on the test broker, on topics and a group of its own, serving its port.
struct LauncherRig {
  std::string launch = TestBroker::UniqueName("ops-launch");
  std::string control = TestBroker::UniqueName("ops-control");
  std::string events = TestBroker::UniqueName("ops-events");
  std::string group = TestBroker::UniqueName("ops-launcher");
  std::filesystem::path allow = std::filesystem::temp_directory_path() / TestBroker::UniqueName("allow");
  kbus::kafka::Producer producer{it::ProducerConfig()};
  int port = FreePort();

  LauncherRig() {
    TestBroker::Get().CreateTopic(launch, 1);
    TestBroker::Get().CreateTopic(control, 1);
    TestBroker::Get().CreateTopic(events, 1);
    std::ofstream(allow) << "fake-encoder = " FAKE_ENCODER_PATH "\n";
  }
  ~LauncherRig() { std::filesystem::remove(allow); }

  std::unique_ptr<Program> Start(int kill_grace_ms) {
    return std::make_unique<Program>(std::vector<std::string>{
        KBUS_LAUNCHER_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", group, "--allow-list",
        allow.string(), "--launch-topic", launch, "--control-topic", control, "--reply-topics", "ops-events-*",
        "--session-timeout-ms", "6000", "--kill-grace-ms", std::to_string(kill_grace_ms), "--http-port",
        std::to_string(port), "--log-level", "warn"});
  }
  void Launch(const std::string& job, std::vector<std::string> args) {
    LaunchProcess cmd;
    cmd.job_id = job;
    cmd.program = "fake-encoder";
    cmd.args = std::move(args);
    cmd.reply_to = events;
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(cmd, {.topic = launch, .key = job})).ok());
  }
};

TEST(LauncherProgram, SigtermWithAJobRunningReportsTheJobLostAndExitsZero) {
  LauncherRig rig;
  lt::EventLog log(rig.events);
  auto launcher = rig.Start(500);
  ASSERT_GT(launcher->pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return Ready(rig.port) == 200; }, seconds(60))) << launcher->Log();
  rig.Launch("long", {"--seconds", "120"});
  const auto started = log.WaitStarted("long", seconds(60));
  ASSERT_TRUE(started.has_value());
  const std::string ready = kbus::ops::Get("127.0.0.1", rig.port, "/readyz").body;
  EXPECT_NE(ready.find(R"("launcher":{"live":true,"ready":true,"active_work":1,"running":1)"), std::string::npos)
      << ready;
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_NE(ready.find("\"host\":\"" + std::string(host) + "\""), std::string::npos) << ready;
  EXPECT_EQ(started->host, host) << "ProcessStarted names the launcher's host";
  EXPECT_NE(kbus::ops::Get("127.0.0.1", rig.port, "/metrics").body.find("kbus_launcher_processes_running 1\n"),
            std::string::npos);

  launcher->Signal(SIGTERM);
  EXPECT_EQ(launcher->WaitExit(seconds(30)), 0) << launcher->Log();
  const auto exited = log.WaitExited("long", seconds(10));
  EXPECT_EQ(exited.outcome, "lost");
  EXPECT_EQ(exited.error, "the launcher stopped while it ran");
  EXPECT_FALSE(kbus::test::GroupAlive(static_cast<int>(started->pid), seconds(5)));
}

TEST(LauncherProgram, ASecondSignalExitsAtOnceWhileTheFirstWaitsForAJobThatIgnoresSigterm) {
  LauncherRig rig;
  lt::EventLog log(rig.events);
  auto launcher = rig.Start(10000);  // the first signal would wait 10 s for this job
  ASSERT_GT(launcher->pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return Ready(rig.port) == 200; }, seconds(60))) << launcher->Log();
  rig.Launch("stubborn", {"--seconds", "120", "--ignore-term"});
  const auto started = log.WaitStarted("stubborn", seconds(60));
  ASSERT_TRUE(started.has_value());

  launcher->Signal(SIGTERM);
  // The first signal is taken: the launcher stops taking work and says so.
  ASSERT_TRUE(WaitFor([&] { return Ready(rig.port) != 200; }, seconds(10)));
  const auto second = std::chrono::steady_clock::now();
  launcher->Signal(SIGINT);
  EXPECT_EQ(launcher->WaitExit(seconds(30)), 128 + SIGINT) << launcher->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - second, seconds(3)) << "not at once";
  // The job's supervisor outlives no launcher: SIGTERM, the grace, SIGKILL.
  EXPECT_FALSE(kbus::test::GroupAlive(static_cast<int>(started->pid), seconds(30)));
}

TEST(LauncherProgram, ABadKbusVariableExitsTwoNamingIt) {
  Program launcher({KBUS_LAUNCHER_PATH, "--allow-list", "/dev/null"}, {"KBUS_MAX_PROCESSES=lots"});
  EXPECT_EQ(launcher.WaitExit(seconds(30)), 2);
  EXPECT_NE(launcher.Log().find("KBUS_MAX_PROCESSES"), std::string::npos) << launcher.Log();
}

// The backend's flags and the allow-list agree before anything runs: each refusal exits 2 and
// names what is wrong.
TEST(LauncherProgram, RefusesABackendAndAllowListThatDoNotAgreeNamingThem) {
  const auto dir = std::filesystem::temp_directory_path() / TestBroker::UniqueName("backend-flags");
  std::filesystem::create_directories(dir);
  const auto with_image = dir / "with-image.allow";
  const auto without_image = dir / "without-image.allow";
  std::ofstream(with_image) << "enc = /fake-encoder\nenc.image = kbus-test-job:1\n";
  std::ofstream(without_image) << "enc = /usr/bin/true\n";
  struct Case {
    std::vector<std::string> args, env;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--backend", "kubernetes", "--allow-list", without_image.string()}, {}, "--backend must be local or docker, not 'kubernetes'"},
      {{"--allow-list", with_image.string()}, {}, "program 'enc' names an image ('enc.image'), which only --backend docker runs"},
      {{"--backend", "docker", "--allow-list", without_image.string()}, {}, "program 'enc' names no image ('enc.image = IMAGE')"},
      {{"--allow-list", with_image.string()}, {"KBUS_BACKEND=docker", "KBUS_DOCKER_SOCKET=" + (dir / "no.sock").string()},
       "KBUS_DOCKER_SOCKET: cannot use the Docker engine's socket " + (dir / "no.sock").string() + ": No such file or directory"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {KBUS_LAUNCHER_PATH, "--brokers", "127.0.0.1:9"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Program launcher(args, c.env);
    EXPECT_EQ(launcher.WaitExit(seconds(30)), 2) << c.says;
    EXPECT_NE(launcher.Log().find(c.says), std::string::npos) << launcher.Log();
  }
  std::filesystem::remove_all(dir);
}

TEST(VideoEncodingProgram, ABadKbusVariableExitsTwoNamingIt) {
  Program host({VIDEO_ENCODING_PATH}, {"KBUS_MAX_ATTEMPTS=-3"});
  EXPECT_EQ(host.WaitExit(seconds(30)), 2);
  EXPECT_NE(host.Log().find("KBUS_MAX_ATTEMPTS"), std::string::npos) << host.Log();
}

// The waited_ms of each "waiting for the brokers" line.
std::vector<long> WaitingLines(const std::string& log) {
  static const std::regex line(R"re("msg":"waiting for the brokers".*"waited_ms":(\d+))re");
  std::vector<long> out;
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) out.push_back(std::stol((*it)[1]));
  return out;
}

TEST(VideoEncodingProgram, WaitsForBrokersThatDoNotAnswerLoggingEveryFewSecondsAndExitsZeroOnSigterm) {
  Program host({VIDEO_ENCODING_PATH, "--brokers", "127.0.0.1:" + std::to_string(FreePort())});
  ASSERT_GT(host.pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return WaitingLines(host.Log()).size() >= 2; }, seconds(30))) << host.Log();
  EXPECT_EQ(host.WaitExit(milliseconds(0)), -1) << "it exited instead of waiting: " << host.Log();
  const auto lines = WaitingLines(host.Log());
  EXPECT_GE(lines[1] - lines[0], 4000) << "log lines closer than every few seconds:\n" << host.Log();
  EXPECT_EQ(host.Log().find("\"component\":\"librdkafka\""), std::string::npos)
      << "each try's connection errors are not logged:\n" << host.Log();

  host.Signal(SIGTERM);
  EXPECT_EQ(host.WaitExit(seconds(10)), 0) << host.Log();
}

TEST(VideoEncodingProgram, SigtermWhileHostingStopsItCleanlyWithExitCodeZero) {
  const std::string tag = TestBroker::UniqueName("ops-video");
  // Every topic it reads, first: on Kafka a member whose topics do not exist may never join.
  for (const auto& t : {tag + ".in", tag + ".state", tag + ".commands"}) TestBroker::Get().CreateTopic(t, 2);
  const int port = FreePort();
  Program host({VIDEO_ENCODING_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", tag, "--name", tag,
                "--command-topic", tag + ".commands", "--session-timeout-ms", "6000", "--http-port",
                std::to_string(port), "--encoder", "fake"});
  ASSERT_GT(host.pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return Ready(port) == 200; }, seconds(60)))
      << kbus::ops::Get("127.0.0.1", port, "/readyz").body << "\n" << host.Log();
  const std::string ready = kbus::ops::Get("127.0.0.1", port, "/readyz").body;
  EXPECT_NE(ready.find("\"workflow " + tag + "\":{\"live\":true,\"ready\":true"), std::string::npos) << ready;
  EXPECT_NE(kbus::ops::Get("127.0.0.1", port, "/metrics").body.find("kbus_workflow_instances{workflow=\"" + tag),
            std::string::npos);

  host.Signal(SIGTERM);
  EXPECT_EQ(host.WaitExit(seconds(30)), 0) << host.Log();
}

}  // namespace
