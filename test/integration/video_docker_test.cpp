// The video-encoding workflow with kbus-launcher --backend docker, as processes: the launcher is
// killed with SIGKILL in the middle of an encode and started again. The encode runs on in its
// container, the new launcher adopts it, and the workflow sees one attempt that succeeded: no
// silence, no second launch, one container run. (With the local backend the same kill costs an
// attempt: test/robustness/launcher_silence_test.cpp.)
//
// Needs the docker_engine fixture (docker_rig.sh); without dockerd it exits 77 (skipped).

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "docker_support.hpp"
#include "workflow_rig.hpp"

namespace {

using kbus::test::TestBroker;
using namespace std::chrono_literals;

std::unique_ptr<rb::Process> StartDockerLauncher(const wfrb::Rig& s) {
  return std::make_unique<rb::Process>(std::vector<std::string>{
      KBUS_LAUNCHER_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", s.tag + "-launcher", "--allow-list",
      s.allow.string(), "--launch-topic", s.launch, "--control-topic", s.control, "--reply-topics", s.name + ".in",
      "--max-processes", "16", "--heartbeat-ms", "500", "--kill-grace-ms", "500", "--session-timeout-ms", "6000",
      "--log-level", "warn", "--backend", "docker", "--docker-socket", dt::TheEngine().socket()});
}

TEST(VideoDocker, ALauncherKilledMidEncodeAndRestartedLeavesTheWorkflowOneSucceededAttempt) {
  const long long since = dt::EpochSeconds() - 1;
  wfrb::Rig s;
  // The workflow's program, in the test image.
  std::ofstream(s.allow) << "fake-encoder = /fake-encoder\nfake-encoder.image = " << dt::TheEngine().image << "\n";
  wfrb::Watch watch(s);
  auto launcher = StartDockerLauncher(s);
  ASSERT_TRUE(launcher->started());
  // The encode runs 12 s. The takeover (a 6 s session to expire, a rebalance, the adoption) is
  // silence to the workflow; 30 s of it would make the attempt lost, and must not happen.
  auto host = s.StartHost("12", "30000");
  ASSERT_TRUE(host->started());
  const std::string id = s.tag + "-clip";
  const std::string first = wfrb::Launch(id, 1), second = wfrb::Launch(id, 2);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.Send(video::EncodeVideo{id, "ok.mp4", 720}, {.topic = s.commands}).ok());

  ASSERT_EQ(watch.Await([&] { return watch.Started(first); }, 60s, {host.get(), launcher.get()}), "")
      << "attempt 1 never started";
  ASSERT_EQ(dt::Containers(s.tag + "-launcher", id).size(), 1u) << "attempt 1 runs in a container";
  EXPECT_EQ(launcher->Stop(SIGKILL, 10s), 128 + SIGKILL);
  ASSERT_EQ(dt::Containers(s.tag + "-launcher", id).size(), 1u) << "the container outlives its launcher";
  auto next = StartDockerLauncher(s);
  ASSERT_TRUE(next->started());

  EXPECT_EQ(watch.Await([&] { return watch.endings().Ended() >= 1; }, 90s, {host.get(), next.get()}), "");
  const auto endings = watch.endings().Settle(2s);
  ASSERT_TRUE(endings.contains(id));
  EXPECT_EQ(endings.at(id), std::vector<std::string>{"encoded:1"}) << "the workflow saw one attempt";
  EXPECT_EQ(watch.Exits(first), std::vector<std::string>{"succeeded"});
  EXPECT_EQ(watch.StartedTwice(), 0) << "no second ProcessStarted for attempt 1";
  EXPECT_EQ(watch.Await([&] { return watch.Started(second); }, 0s), "not within 0 s") << "no attempt 2";
  EXPECT_EQ(dt::ContainerStarts(s.tag + "-launcher", id, since), 1) << "the encode ran once";
  EXPECT_TRUE(kbus::test::WaitFor([&] { return dt::Containers(s.tag + "-launcher", id).empty(); }, 15s))
      << "the container outlived its reported exit";

  const std::string state = wfrb::LastStateRecord(s, id);
  EXPECT_NE(state.find(R"("history":["1:succeeded"])"), std::string::npos) << state;
  EXPECT_NE(state.find(R"("status":"completed")"), std::string::npos) << state;

  EXPECT_EQ(host->Stop(SIGTERM, 30s), 0);
  EXPECT_EQ(next->Stop(SIGTERM, 30s), 0);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (const auto exit = dt::LoadEngine()) return *exit;
  return RUN_ALL_TESTS();
}
