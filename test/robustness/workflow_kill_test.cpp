// SIGKILL the video-encoding workflow host twice while 100 workflows are in flight, restart it
// each time, and every workflow still ends exactly once and as its source says: one VideoEncoded
// with the right attempt count, or one dead-letter record with reason attempts-exhausted. The
// launcher (a real kbus-launcher process) keeps running the fake encoder throughout.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "workflow_rig.hpp"

namespace {

using kbus::test::TestBroker;
using namespace std::chrono_literals;

TEST(WorkflowKill, KillingTheHostTwiceWhile100WorkflowsRunEndsEachExactlyOnce) {
  wfrb::Rig s;
  wfrb::Watch watch(s);
  auto launcher = s.StartLauncher();
  ASSERT_TRUE(launcher->started());
  auto host = s.StartHost("1", "8000");
  ASSERT_TRUE(host->started());

  // A third encode at once, a third fail once and encode on attempt 2, a third fail both
  // attempts (EncoderLaunch in encode_workflow.hpp plays the job from the source's name).
  kbus::kafka::Producer producer(it::ProducerConfig());
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 100; ++i) {
    const std::string id = s.tag + "-" + std::to_string(i);
    static constexpr const char* kSources[] = {"ok.mp4", "flaky-1.mp4", "broken.mp4"};
    static constexpr const char* kEndings[] = {"encoded:1", "encoded:2", "dlq:attempts-exhausted:2:failed"};
    ASSERT_TRUE(producer.Send(video::EncodeVideo{id, kSources[i % 3], 720}, {.topic = s.commands}).ok());
    expected[id] = kEndings[i % 3];
  }

  // Kill it first while its first launches go out, then once the restarted host has taken over
  // and finished some workflows (so the second crash hits a mix of ended, running and waiting
  // ones). Neither kill may come after everything ended: it would test nothing.
  const auto started = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  auto kill_and_restart = [&](const char* when) {
    const std::size_t ended = watch.endings().Ended();
    EXPECT_LT(ended, expected.size()) << "everything ended before the kill " << when;
    // What the crash leaves to be delivered again: the inputs not committed yet.
    const auto committed = rb::Committed(TestBroker::Get().bootstrap(), s.group, s.name + ".in", 4);
    const auto marks = rb::Watermarks(TestBroker::Get().bootstrap(), s.name + ".in", 4);
    std::int64_t uncommitted = 0;
    for (std::size_t p = 0; p < marks.size(); ++p) uncommitted += marks[p].high - std::max<std::int64_t>(committed[p], 0);
    EXPECT_EQ(host->Stop(SIGKILL, 10s), 128 + SIGKILL);
    std::printf("host killed %s: %d launches seen, %zu of %zu workflows ended, %lld input records uncommitted "
                "(%.1f s)\n",
                when, watch.Launches(), ended, expected.size(), static_cast<long long>(uncommitted), seconds());
    host = s.StartHost("1", "8000");
    ASSERT_TRUE(host->started());
  };
  ASSERT_EQ(watch.Await([&] { return watch.total_launches() >= 20; }, 60s, {host.get()}), "")
      << "waiting for 20 launches, saw " << watch.Launches();
  kill_and_restart("after 20 launches");
  ASSERT_EQ(watch.Await([&] { return watch.endings().Ended() >= 15; }, 90s, {host.get()}), "")
      << "waiting for the restarted host to end 15 workflows, " << watch.endings().Ended() << " ended";
  kill_and_restart("after 15 endings");

  const std::string waited =
      watch.Await([&] { return watch.endings().Ended() >= expected.size(); }, 90s, {host.get(), launcher.get()});
  EXPECT_EQ(waited, "") << watch.endings().Ended() << " of " << expected.size() << " workflows ended";
  const auto endings = watch.endings().Settle(3s);
  std::printf("all ended after %.1f s\n", seconds());
  int wrong = 0;
  for (const auto& [id, want] : expected) {
    auto it = endings.find(id);
    const std::vector<std::string> got = it == endings.end() ? std::vector<std::string>{} : it->second;
    if (got != std::vector<std::string>{want} && ++wrong <= 10) {
      ADD_FAILURE() << id << " ended " << testing::PrintToString(got) << ", expected exactly one " << want;
    }
  }
  EXPECT_EQ(wrong, 0) << "workflows that did not end exactly once as expected";
  EXPECT_EQ(endings.size(), expected.size()) << "no ending for a video that was not sent";

  // Around each crash the uncommitted inputs come again and their outboxes are sent again, with
  // the same message ids (docs/workflows.md, "Guarantees"): launches and endings repeat. The
  // launcher remembers each (job, attempt) it ran, so none runs twice; a receiver of the endings
  // drops the copies by id, as the watch did.
  const auto [pairs, copies] = watch.RepeatedLaunches();
  std::printf("launches %d: %d (job, attempt) pairs sent more than once, %d extra copies; %d endings sent again\n",
              watch.Launches(), pairs, copies, watch.endings().RepeatedEndings());
  RecordProperty("repeated_launch_copies", copies);
  RecordProperty("repeated_endings", watch.endings().RepeatedEndings());
  EXPECT_EQ(watch.StartedTwice(), 0) << "a repeated launch ran an attempt twice";

  EXPECT_EQ(host->Stop(SIGTERM, 30s), 0);
  EXPECT_EQ(launcher->Stop(SIGTERM, 30s), 0);
}

}  // namespace
