// The kbus-launcher program, as an operator runs it: killed with SIGKILL while jobs run, its
// children do not outlive it; stopped with SIGTERM, it terminates its jobs, reports them as
// lost, commits, and exits 0, so a new launcher does not run them again.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "kbus/handlers/launcher_messages.hpp"
#include "launcher_events.hpp"
#include "process_group.hpp"
#include "rb_support.hpp"

namespace {

using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessStarted;
using kbus::test::AnyAlive;
using kbus::test::TestBroker;
using lt::EventLog;
using std::chrono::seconds;

struct LauncherProcess {
  std::string launch = TestBroker::UniqueName("rb-launch");
  std::string control = TestBroker::UniqueName("rb-control");
  std::string events = TestBroker::UniqueName("rb-events");
  std::string group = TestBroker::UniqueName("rb-launcher");
  std::filesystem::path allow = std::filesystem::temp_directory_path() / TestBroker::UniqueName("allow");
  kbus::kafka::Producer producer{it::ProducerConfig()};

  LauncherProcess() {
    TestBroker::Get().CreateTopic(launch, 1);
    TestBroker::Get().CreateTopic(control, 1);
    TestBroker::Get().CreateTopic(events, 1);
    std::ofstream(allow) << "fake-encoder = " FAKE_ENCODER_PATH "\n";
  }
  ~LauncherProcess() { std::filesystem::remove(allow); }

  pid_t Start() {
    return rb::Spawn({KBUS_LAUNCHER_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", group,
                      "--allow-list", allow.string(), "--launch-topic", launch, "--control-topic", control, "--reply-topics",
                      "rb-events-*",
                      "--session-timeout-ms", "6000", "--kill-grace-ms", "500", "--log-level", "warn"});
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

bool ProcessAlive(std::int64_t pid, std::chrono::milliseconds patience) {
  return AnyAlive([pid](int p, int) { return p == pid; }, patience);
}

TEST(LauncherProcess, KilledWithSigkillWhileJobsRunItsChildrenDoNotOutliveIt) {
  LauncherProcess lp;
  EventLog log(lp.events);
  const pid_t launcher = lp.Start();
  ASSERT_GT(launcher, 0);
  std::vector<std::int64_t> children;
  for (int i = 0; i < 3; ++i) lp.Launch("job-" + std::to_string(i), {"--seconds", "120"});
  for (int i = 0; i < 3; ++i) {
    const auto started = log.WaitStarted("job-" + std::to_string(i), seconds(60));
    ASSERT_TRUE(started.has_value());
    children.push_back(started->pid);
    ASSERT_TRUE(ProcessAlive(started->pid, std::chrono::milliseconds(0))) << "the job runs";
  }
  kill(launcher, SIGKILL);
  EXPECT_EQ(rb::WaitExit(launcher, seconds(10)), 128 + SIGKILL);
  for (std::int64_t child : children) {
    EXPECT_FALSE(ProcessAlive(child, seconds(5))) << "child " << child << " outlived the launcher";
  }
}

TEST(LauncherProcess, KilledWithSigkillAJobsGrandchildThatIgnoresSigtermEndsToo) {
  LauncherProcess lp;
  EventLog log(lp.events);
  const pid_t launcher = lp.Start();
  ASSERT_GT(launcher, 0);
  lp.Launch("tree", {"--ignore-term", "--spawn-child", "--seconds", "120"});
  const auto started = log.WaitStarted("tree", seconds(60));
  ASSERT_TRUE(started.has_value());
  const int job = static_cast<int>(started->pid);
  // The job's child (a copy of fake-encoder that ignores SIGTERM) is in the job's group.
  ASSERT_TRUE(kbus::test::WaitFor(
      [&] { return AnyAlive([job](int p, int pgrp) { return pgrp == job && p != job; }, std::chrono::milliseconds(0)); },
      seconds(10)))
      << "the grandchild never appeared";
  kill(launcher, SIGKILL);
  EXPECT_EQ(rb::WaitExit(launcher, seconds(10)), 128 + SIGKILL);
  // --kill-grace-ms 500, then SIGKILL from the job's supervisor.
  EXPECT_FALSE(kbus::test::GroupAlive(job, seconds(10))) << "a process of the job outlived its launcher";
}

TEST(LauncherProcess, ABadReplyTopicsFlagIsRefusedAtStartUpNamingIt) {
  LauncherProcess lp;
  const pid_t launcher = rb::Spawn({KBUS_LAUNCHER_PATH, "--brokers", TestBroker::Get().bootstrap(), "--allow-list",
                                    lp.allow.string(), "--reply-topics", "ok.topic,bad topic"});
  ASSERT_GT(launcher, 0);
  EXPECT_EQ(rb::WaitExit(launcher, seconds(30)), 2);
}

TEST(LauncherProcess, SigtermTerminatesTheJobsReportsThemLostAndCommitsSoTheyDoNotRunAgain) {
  LauncherProcess lp;
  EventLog log(lp.events);
  const pid_t launcher = lp.Start();
  ASSERT_GT(launcher, 0);
  lp.Launch("a", {"--seconds", "120", "--ignore-term"});
  lp.Launch("b", {"--seconds", "120"});
  const auto a = log.WaitStarted("a", seconds(60));
  const auto b = log.WaitStarted("b", seconds(60));
  ASSERT_TRUE(a.has_value() && b.has_value());

  kill(launcher, SIGTERM);
  EXPECT_EQ(rb::WaitExit(launcher, seconds(30)), 0);
  for (const char* job : {"a", "b"}) {
    const auto exited = log.WaitExited(job, seconds(10));
    EXPECT_EQ(exited.outcome, "lost") << job;
    EXPECT_EQ(exited.error, "the launcher stopped while it ran") << job;
  }
  EXPECT_EQ(log.WaitExited("a").signal, SIGKILL) << "a ignored SIGTERM: killed after the grace";
  EXPECT_EQ(log.WaitExited("b").signal, SIGTERM);
  EXPECT_FALSE(ProcessAlive(a->pid, seconds(2)));
  EXPECT_FALSE(ProcessAlive(b->pid, seconds(2)));

  // A new launcher starts after the committed launches: only the new job runs. (One partition,
  // so an uncommitted launch of a or b would come, and run, before c.)
  const pid_t next = lp.Start();
  ASSERT_GT(next, 0);
  lp.Launch("c", {"--seconds", "0.05", "--steps", "1"});
  EXPECT_EQ(log.WaitExited("c", seconds(60)).outcome, "succeeded");
  EXPECT_EQ(log.Count<ProcessStarted>("a"), 1);
  EXPECT_EQ(log.Count<ProcessStarted>("b"), 1);
  kill(next, SIGTERM);
  EXPECT_EQ(rb::WaitExit(next, seconds(30)), 0);
}

}  // namespace
