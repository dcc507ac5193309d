// Recurring schedules end to end, on both brokers and in real time: a schedule declared in code
// fires one command per tick with ids derived from (schedule, tick); requests (pause, trigger,
// resume) are applied and answered; a schedule of an unknown type is refused at creation; after
// downtime the catch-up setting decides which missed ticks fire.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "kbus/envelope.hpp"
#include "kbus/schedules/client.hpp"
#include "kbus/testing/matchers.hpp"
#include "schedules_it_support.hpp"

namespace {

using kbus::ErrorCode;
using kbus::schedules::Request;
using kbus::schedules::ScheduleSpec;
using kbus::schedules::TimePoint;
using kbus::test::WaitFor;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using sit::Follower;
using sit::ProducerOptions;
using sit::Running;
using sit::TestBroker;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

ScheduleSpec EverySecond(const std::string& id, const std::string& topic) {
  ScheduleSpec s;
  s.id = id;
  s.every = 1s;
  s.type = "test.Ping";
  s.topic = topic;
  s.payload = R"({"tick":"${tick}"})";
  return s;
}

std::int64_t TickMs(const Follower::Arrival& a) {
  auto ref = kbus::schedules::ParseRunCorrelation(a.Header(std::string(kbus::header::kCorrelationId)).value_or(""));
  return ref ? ref->tick.time_since_epoch().count() : -1;
}

// Sends `r` for `id` and waits for its owner's answer.
kbus::Result<kbus::schedules::Answer> Ask(kbus::kafka::Producer& producer, const kbus::schedules::SchedulerConfig& config,
                                          const std::string& id, Request r) {
  auto from = kbus::schedules::EndOffsets(config.client, config.schedules_topic);
  if (!from.ok()) return from.error();
  auto sent = kbus::schedules::SendRequest(producer, id, std::move(r), config.schedules_topic);
  if (!sent.ok()) return sent.error();
  return kbus::schedules::Await(config.client, id, *sent, *from, 30s, config.schedules_topic);
}

TEST(Schedules, ADeclaredScheduleFiresOneCommandPerTickWithIdsFromScheduleAndTick) {
  auto config = sit::Config("sched-ticks");
  const std::string target = TestBroker::UniqueName("pings");
  TestBroker::Get().CreateTopic(target, 1);
  Follower arrived(target);
  kbus::kafka::Producer producer(ProducerOptions());
  const ScheduleSpec spec = EverySecond("pinger", target);
  ASSERT_THAT(kbus::schedules::Declare(producer, {spec}, config.schedules_topic), IsOk());
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= 6; }, 60s));

  const auto all = arrived.Arrivals();
  std::set<std::int64_t> ticks;
  for (const auto& a : all) {
    const std::int64_t tick = TickMs(a);
    ASSERT_GT(tick, 0);
    EXPECT_TRUE(ticks.insert(tick).second) << "one command per tick";
    EXPECT_EQ(tick % 1000, 0) << "ticks on whole seconds";
    const auto expected = kbus::schedules::TickCommand(spec, TimePoint(std::chrono::milliseconds(tick)), "tick");
    EXPECT_EQ(a.Header(std::string(kbus::header::kId)), std::optional<std::string>(expected.FindHeader(kbus::header::kId)))
        << "the id is derived from (schedule, tick): a tick fired twice carries the same id";
    EXPECT_EQ(a.record.payload, expected.payload);
    EXPECT_GE(a.record.timestamp_ms, tick) << "never before its tick";
    EXPECT_LE(a.record.timestamp_ms, tick + 1000) << "within a second of it";
    EXPECT_EQ(a.Header("kbus-schedule-id"), "pinger");
  }
  // Consecutive seconds, none skipped.
  EXPECT_EQ(*ticks.rbegin() - *ticks.begin(), static_cast<std::int64_t>(ticks.size() - 1) * 1000);
}

TEST(Schedules, PauseStopsTicksTriggerStillFiresAndResumeGoesOnFromNow) {
  auto config = sit::Config("sched-pause");
  const std::string target = TestBroker::UniqueName("pings");
  TestBroker::Get().CreateTopic(target, 1);
  Follower arrived(target);
  kbus::kafka::Producer producer(ProducerOptions());
  ASSERT_THAT(kbus::schedules::Declare(producer, {EverySecond("pauser", target)}, config.schedules_topic), IsOk());
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= 2; }, 60s));

  Request pause;
  pause.op = Request::Op::kPause;
  pause.note = "maintenance window";
  auto paused = Ask(producer, config, "pauser", pause);
  ASSERT_THAT(paused, IsOk());
  ASSERT_TRUE(paused->applied) << paused->refused;
  ASSERT_TRUE(paused->schedule);
  EXPECT_TRUE(paused->schedule->spec.paused);
  EXPECT_EQ(paused->schedule->spec.note, "maintenance window");
  const std::int64_t paused_at = sit::NowMs();

  // Three ticks pass while paused: none of them may fire. (Absence needs time to pass.)
  std::this_thread::sleep_for(3s);
  Request trigger;
  trigger.op = Request::Op::kTrigger;
  trigger.to = TimePoint(std::chrono::milliseconds(sit::NowMs()));
  auto triggered = Ask(producer, config, "pauser", trigger);
  ASSERT_THAT(triggered, IsOk());
  auto reason_count = [&](const std::string& reason) {
    const auto all = arrived.Arrivals();
    return std::count_if(all.begin(), all.end(), [&](const auto& a) { return a.Header("kbus-schedule-reason") == reason; });
  };
  ASSERT_TRUE(WaitFor([&] { return reason_count("trigger") == 1; }, 30s)) << "a trigger fires even while paused";

  Request resume;
  resume.op = Request::Op::kResume;
  auto resumed = Ask(producer, config, "pauser", resume);
  ASSERT_THAT(resumed, IsOk());
  EXPECT_FALSE(resumed->schedule->spec.paused);
  const std::int64_t resumed_at = sit::NowMs();
  ASSERT_TRUE(WaitFor([&] {
    const auto all = arrived.Arrivals();
    return std::count_if(all.begin(), all.end(), [&](const auto& a) { return TickMs(a) > resumed_at; }) >= 2;
  }, 30s)) << "ticks go on after the resume";
  for (const auto& a : arrived.Arrivals()) {
    if (a.Header("kbus-schedule-reason") != "tick") continue;
    const std::int64_t tick = TickMs(a);
    EXPECT_TRUE(tick <= paused_at || tick > resumed_at - 1000)
        << "no tick of the pause fired, then or after the resume (tick " << tick << ", paused " << paused_at
        << ", resumed " << resumed_at << ")";
  }
  auto list = kbus::schedules::ListSchedules(config.client, config.schedules_topic);
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  const auto& recent = (*list)[0].state.recent;
  EXPECT_GE(std::count_if(recent.begin(), recent.end(), [](const auto& r) { return r.outcome == "paused"; }), 2)
      << "describe shows the ticks the pause held back";
}

TEST(Schedules, AScheduleOfAnUnknownTypeIsRefusedAtCreationAndABadOneBeforeItIsSent) {
  auto config = sit::Config("sched-unknown");
  config.known_types = {"test.Ping"};
  kbus::kafka::Producer producer(ProducerOptions());
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return scheduler.Ready(4); }, 30s));

  ScheduleSpec spec = EverySecond("typo", "pings");
  spec.type = "test.Pong";
  Request put;
  put.op = Request::Op::kPut;
  put.spec = spec;
  auto answer = Ask(producer, config, "typo", put);
  ASSERT_THAT(answer, IsOk());
  EXPECT_FALSE(answer->applied);
  EXPECT_THAT(answer->refused, HasSubstr("type: 'test.Pong' is not a command type this system knows"));
  auto list = kbus::schedules::ListSchedules(config.client, config.schedules_topic);
  ASSERT_THAT(list, IsOk());
  EXPECT_TRUE(list->empty()) << "a refused schedule does not exist";

  spec.type = "test.Ping";
  spec.every = 0ms;
  spec.cron = "61 * * * *";
  put.spec = spec;
  EXPECT_THAT(kbus::schedules::SendRequest(producer, "typo", put, config.schedules_topic),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("minute")));
  spec.cron = "0 2 * * *";
  spec.time_zone = "Europe/Pari";
  put.spec = spec;
  EXPECT_THAT(kbus::schedules::SendRequest(producer, "typo", put, config.schedules_topic),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("time_zone")));

  spec.time_zone = "Europe/Paris";
  put.spec = spec;
  auto created = Ask(producer, config, "typo", put);
  ASSERT_THAT(created, IsOk());
  EXPECT_TRUE(created->applied) << created->refused;
  Request backfill;
  backfill.op = Request::Op::kBackfill;
  backfill.from = TimePoint(std::chrono::milliseconds(0));
  backfill.to = TimePoint(std::chrono::milliseconds(sit::NowMs()));
  auto too_long = Ask(producer, config, "typo", backfill);
  ASSERT_THAT(too_long, IsOk());
  EXPECT_FALSE(too_long->applied) << "decades of nightly ticks at once";
  EXPECT_THAT(too_long->refused, HasSubstr("backfill: the range holds more than 10000 ticks"));

  Request del;
  del.op = Request::Op::kDelete;
  auto deleted = Ask(producer, config, "typo", del);
  ASSERT_THAT(deleted, IsOk());
  EXPECT_TRUE(deleted->applied);
  EXPECT_FALSE(deleted->schedule.has_value());
  list = kbus::schedules::ListSchedules(config.client, config.schedules_topic);
  ASSERT_THAT(list, IsOk());
  EXPECT_TRUE(list->empty());
}

// Down for 8 one-second ticks with a 3-second catch-up window. `check` gets the ticks fired
// after the restart, and how late each was sent.
struct Fired {
  std::int64_t tick;
  std::int64_t late_ms;
};
void CatchUpAfterDowntime(kbus::schedules::CatchUp mode, const std::string& prefix,
                          const std::function<void(const std::vector<Fired>&, std::int64_t)>& check) {
  auto config = sit::Config(prefix);
  const std::string target = TestBroker::UniqueName("pings");
  TestBroker::Get().CreateTopic(target, 1);
  Follower arrived(target);
  kbus::kafka::Producer producer(ProducerOptions());
  ScheduleSpec spec = EverySecond("catcher", target);
  spec.catch_up_window = 3s;
  spec.catch_up = mode;
  ASSERT_THAT(kbus::schedules::Declare(producer, {spec}, config.schedules_topic), IsOk());
  std::int64_t down_from = 0;
  {
    Running first(config);
    ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= 2; }, 60s));
    down_from = TickMs(arrived.Arrivals().back());
  }
  const std::size_t before = arrived.Count();
  std::this_thread::sleep_for(8s);  // the downtime under test
  const std::int64_t restarted = sit::NowMs();
  Running second(config);
  ASSERT_TRUE(WaitFor([&] {
    const auto all = arrived.Arrivals();
    return !all.empty() && TickMs(all.back()) > restarted + 1000;
  }, 60s)) << "ticks go on after the restart";
  std::vector<Fired> after;
  const auto all = arrived.Arrivals();
  for (std::size_t i = before; i < all.size(); ++i) {
    after.push_back({TickMs(all[i]), all[i].record.timestamp_ms - TickMs(all[i])});
  }
  ASSERT_FALSE(after.empty());
  EXPECT_GT(after.front().tick, down_from + 2000) << "the ticks older than the window are missed, not fired";
  std::set<std::int64_t> distinct;
  for (const auto& f : after) EXPECT_TRUE(distinct.insert(f.tick).second) << "each tick once";
  check(after, down_from);
}

TEST(Schedules, AfterDowntimeCatchUpAllFiresTheMissedTicksWithinTheWindowOldestFirst) {
  CatchUpAfterDowntime(kbus::schedules::CatchUp::kAll, "sched-catchall", [](const std::vector<Fired>& after, std::int64_t) {
    EXPECT_TRUE(std::is_sorted(after.begin(), after.end(), [](const Fired& a, const Fired& b) { return a.tick < b.tick; }))
        << "oldest first";
    // Caught up: sent well after their tick, at most the window (3 s) plus 2 s of slack late.
    const auto caught = std::count_if(after.begin(), after.end(), [](const Fired& f) { return f.late_ms > 1500; });
    EXPECT_GE(caught, 3) << "the missed ticks within the window fire";
    for (const auto& f : after) EXPECT_LE(f.late_ms, 5000 + 1000);
  });
}

TEST(Schedules, AfterDowntimeCatchUpLatestFiresOnlyTheLatestMissedTick) {
  CatchUpAfterDowntime(kbus::schedules::CatchUp::kLatest, "sched-catchlatest", [](const std::vector<Fired>& after, std::int64_t) {
    const auto caught = std::count_if(after.begin(), after.end(), [](const Fired& f) { return f.late_ms > 1500; });
    EXPECT_LE(caught, 1) << "of the missed ticks, at most the latest fires";
  });
}

}  // namespace
