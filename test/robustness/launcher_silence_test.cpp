// SIGKILL the kbus-launcher while it runs a job: the job dies with it (its supervisor) and no
// exit is ever reported, so the workflow only sees silence. After heartbeat_timeout it counts
// attempt 1 as lost, cancels it by name, and launches attempt 2, which a new launcher runs to
// success.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "free_port.hpp"
#include "workflow_rig.hpp"

namespace {

using kbus::test::TestBroker;
using namespace std::chrono_literals;

TEST(LauncherSilence, KillingTheLauncherMidJobIsSeenAsSilenceAndTheNextAttemptRunsElsewhere) {
  wfrb::Rig s;
  wfrb::Watch watch(s);
  // Each launcher has joined its group before a launch can wait for it: the workflow counts
  // silence from the launch, and a join slower than that (a loaded machine) would be "lost".
  const int first_port = kbus::test::FreePort();
  auto launcher = s.StartLauncher(first_port);
  ASSERT_TRUE(launcher->started());
  ASSERT_TRUE(wfrb::Rig::ReadyAt(first_port)) << "the first launcher never joined its group";
  // Each attempt runs 6 s, long enough to be killed in the middle; 2.5 s of silence (5 missed
  // heartbeats) make it lost.
  auto host = s.StartHost("6", "2500");
  ASSERT_TRUE(host->started());
  const std::string id = s.tag + "-long";
  const std::string first = wfrb::Launch(id, 1), second = wfrb::Launch(id, 2);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.Send(video::EncodeVideo{id, "ok.mp4", 720}, {.topic = s.commands}).ok());

  ASSERT_EQ(watch.Await([&] { return watch.Started(first); }, 60s, {host.get(), launcher.get()}), "")
      << "attempt 1 never started";
  const pid_t first_child = static_cast<pid_t>(watch.PidOf(first));
  // The job's parent is its supervisor, a child of the launcher.
  EXPECT_EQ(rb::ParentOf(rb::ParentOf(first_child)), launcher->pid()) << "attempt 1 runs under the first launcher";
  EXPECT_EQ(launcher->Stop(SIGKILL, 10s), 128 + SIGKILL);
  EXPECT_TRUE(kbus::test::WaitFor([&] { return rb::Gone(first_child); }, 5s))
      << "the encoder of attempt 1 (pid " << first_child << ") outlived its launcher";
  const int next_port = kbus::test::FreePort();
  auto next = s.StartLauncher(next_port);
  ASSERT_TRUE(next->started());
  ASSERT_TRUE(wfrb::Rig::ReadyAt(next_port)) << "the second launcher never joined its group";

  EXPECT_EQ(watch.Await([&] { return watch.Cancelled(first); }, 30s, {host.get(), next.get()}), "")
      << "the silent attempt 1 was not cancelled";
  ASSERT_EQ(watch.Await([&] { return watch.Started(second); }, 60s, {host.get(), next.get()}), "")
      << "attempt 2 never started";
  const pid_t second_child = static_cast<pid_t>(watch.PidOf(second));
  EXPECT_EQ(rb::ParentOf(rb::ParentOf(second_child)), next->pid()) << "attempt 2 runs under the new launcher";
  EXPECT_EQ(watch.Await([&] { return watch.endings().Ended() >= 1; }, 60s, {host.get(), next.get()}), "");
  const auto endings = watch.endings().Settle(2s);
  ASSERT_TRUE(endings.contains(id));
  EXPECT_EQ(endings.at(id), std::vector<std::string>{"encoded:2"});
  // The killed launcher reported nothing. If it had not committed the launch yet, the new one
  // takes it again, after or before the cancel: either way attempt 1 ends cancelled there.
  const auto first_exits = watch.Exits(first);
  EXPECT_TRUE(first_exits.empty() || first_exits == std::vector<std::string>{"cancelled"})
      << testing::PrintToString(first_exits);
  std::printf("attempt 1 after the kill: %s, started %d time(s) more\n",
              first_exits.empty() ? "never taken again" : "taken again by the new launcher, cancelled",
              watch.StartedTwice());
  EXPECT_EQ(watch.Exits(second), std::vector<std::string>{"succeeded"});

  // The workflow's own record of it: attempt 1 lost, attempt 2 succeeded.
  const std::string state = wfrb::LastStateRecord(s, id);
  EXPECT_NE(state.find(R"("history":["1:lost","2:succeeded"])"), std::string::npos) << state;
  EXPECT_NE(state.find(R"("status":"completed")"), std::string::npos) << state;

  EXPECT_EQ(host->Stop(SIGTERM, 30s), 0);
  EXPECT_EQ(next->Stop(SIGTERM, 30s), 0);
}

}  // namespace
