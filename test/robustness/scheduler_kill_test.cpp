// Three kbus-scheduler processes, one of them SIGKILLed and restarted every few seconds, keep a
// 1-second schedule for two minutes: every tick fires, each tick's command carries the id
// derived from (schedule, tick), and duplicates (a tick fired by an owner that died before it
// recorded the tick, then by the next owner) are counted and reported. None may be missing.

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>

#include "kbus/envelope.hpp"
#include "kbus/schedules/client.hpp"
#include "rb_support.hpp"
#include "schedules_it_support.hpp"

namespace {

using kbus::test::WaitFor;
using sit::Follower;
using sit::TestBroker;
using namespace std::chrono_literals;

constexpr auto kChaos = 120s;
constexpr auto kKillEvery = 6s;

std::unique_ptr<rb::Process> StartScheduler(const kbus::schedules::SchedulerConfig& config) {
  return std::make_unique<rb::Process>(std::vector<std::string>{
      KBUS_SCHEDULER_PATH, "--brokers", config.client.brokers, "--group", config.group, "--pending-topic",
      config.pending_topic, "--schedules-topic", config.schedules_topic, "--run-topics", "",
      "--session-timeout-ms", "6000", "--log-level", "warn"});
}

TEST(SchedulerKill, EveryTickOfAOneSecondScheduleFiresWhileOwnersAreKilled) {
  auto config = sit::Config("kill-sched", 3);
  const std::string target = TestBroker::UniqueName("kill-ticks");
  TestBroker::Get().CreateTopic(target, 1);
  Follower arrived(target);

  kbus::schedules::ScheduleSpec spec;
  spec.id = "heartbeat";
  spec.every = 1s;
  spec.type = "test.Tick";
  spec.topic = target;
  spec.catch_up_window = 2min;  // longer than any takeover: a missed tick is caught up, not lost
  kbus::kafka::Producer producer(sit::ProducerOptions());
  ASSERT_TRUE(kbus::schedules::Declare(producer, {spec}, config.schedules_topic).ok());

  std::vector<std::unique_ptr<rb::Process>> instances;
  for (int i = 0; i < 3; ++i) instances.push_back(StartScheduler(config));
  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= 1; }, 90s)) << "the schedule fires";

  auto tick_of = [](const Follower::Arrival& a) {
    auto ref = kbus::schedules::ParseRunCorrelation(a.Header(std::string(kbus::header::kCorrelationId)).value_or(""));
    return ref ? ref->tick.time_since_epoch().count() : -1;
  };
  const std::int64_t first = tick_of(arrived.Arrivals().front());
  const auto chaos_end = std::chrono::steady_clock::now() + kChaos;
  int kills = 0;
  while (std::chrono::steady_clock::now() < chaos_end) {
    std::this_thread::sleep_for(kKillEvery);  // the pace of the kills under test
    auto& victim = instances[static_cast<std::size_t>(kills % 3)];
    victim->Stop(SIGKILL, 10s);
    victim = StartScheduler(config);
    ++kills;
  }
  const std::int64_t last = sit::NowMs() / 1000 * 1000;
  ASSERT_TRUE(WaitFor([&] {
    std::set<std::int64_t> ticks;
    for (const auto& a : arrived.Arrivals()) ticks.insert(tick_of(a));
    for (std::int64_t t = first; t <= last; t += 1000) {
      if (!ticks.count(t)) return false;
    }
    return true;
  }, 120s)) << "every tick up to the end of the kills arrives";

  std::map<std::int64_t, std::set<std::string>> ids;
  std::map<std::int64_t, int> copies;
  for (const auto& a : arrived.Arrivals()) {
    const std::int64_t t = tick_of(a);
    if (t < first || t > last) continue;
    ids[t].insert(a.Header(std::string(kbus::header::kId)).value_or(""));
    ++copies[t];
  }
  int duplicates = 0;
  for (const auto& [t, n] : copies) {
    duplicates += n - 1;
    EXPECT_EQ(ids[t].size(), 1u) << "every copy of tick " << t << " carries the same id";
    const auto expected = kbus::schedules::TickCommand(spec, kbus::schedules::TimePoint(std::chrono::milliseconds(t)), "tick");
    EXPECT_EQ(*ids[t].begin(), std::string(*expected.FindHeader(kbus::header::kId)));
  }
  const std::int64_t expected_ticks = (last - first) / 1000 + 1;
  EXPECT_EQ(static_cast<std::int64_t>(copies.size()), expected_ticks) << "none missing";
  std::cout << "[ report ] " << expected_ticks << " ticks in " << kChaos.count() << " s with " << kills
            << " kills: all fired, " << duplicates << " duplicate copies (same id)\n";
  ::testing::Test::RecordProperty("duplicates", duplicates);
}

}  // namespace
