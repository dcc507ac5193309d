// The decisions a schedule's owner takes, on a test clock: which ticks fire, with which ids,
// under each overlap and catch-up policy, paused, triggered, backfilled; and the records that
// carry schedules, round trip. No broker: the Scheduler sends what these decisions ask for.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kbus/envelope.hpp"
#include "kbus/schedules/client.hpp"
#include "kbus/schedules/schedule.hpp"
#include "kbus/testing/matchers.hpp"

namespace {

using kbus::ErrorCode;
using kbus::OutgoingRecord;
using kbus::schedules::Calendar;
using kbus::schedules::CatchUp;
using kbus::schedules::Evaluate;
using kbus::schedules::Overlap;
using kbus::schedules::Plan;
using kbus::schedules::Request;
using kbus::schedules::ScheduleSpec;
using kbus::schedules::ScheduleState;
using kbus::schedules::TimePoint;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// 2026-12-06T10:00:00Z
const TimePoint kT0 = TimePoint(std::chrono::sys_days(std::chrono::year(2026) / 12 / 6).time_since_epoch()) + 10h;

ScheduleSpec EveryMinute() {
  ScheduleSpec s;
  s.id = "minutely";
  s.every = 1min;
  s.type = "reports.Render";
  s.topic = "reports";
  s.payload = R"({"run":"${run}","tick":"${tick}","schedule":"${schedule}"})";
  return s;
}

ScheduleSpec LaunchEveryMinute() {
  ScheduleSpec s = EveryMinute();
  s.type = "kbus.LaunchProcess";
  s.topic = "kbus.launcher";
  s.payload = R"({"job_id":"job-${run}","attempt":1,"program":"encode","args":[]})";
  return s;
}

struct Owner {
  ScheduleSpec spec;
  Calendar calendar;
  ScheduleState state;
  std::vector<OutgoingRecord> sent;

  explicit Owner(ScheduleSpec s) : spec(std::move(s)), calendar(*kbus::schedules::CalendarOf(spec)) {}
  Plan At(TimePoint now) {
    Plan p = Evaluate(spec, calendar, state, now);
    for (auto& r : p.sends) sent.push_back(r);
    return p;
  }
  Plan Do(Request r, TimePoint now) {
    Plan p = kbus::schedules::Apply(spec, calendar, state, r, now);
    for (auto& s : p.sends) sent.push_back(s);
    return p;
  }
  std::vector<std::string> Outcomes() const {
    std::vector<std::string> out;
    for (const auto& r : state.recent) out.push_back(r.outcome);
    return out;
  }
  std::vector<std::string> Ticks() const {  // ticks of the commands sent, as "kbus-schedule-tick"
    std::vector<std::string> out;
    for (const auto& r : sent) {
      if (auto t = r.FindHeader("kbus-schedule-tick")) out.emplace_back(*t);
    }
    return out;
  }
  void Ends(const OutgoingRecord& run, TimePoint now, std::string outcome = "succeeded") {
    Request r;
    r.id = "end-" + std::string(*run.FindHeader(kbus::header::kId));
    r.op = Request::Op::kRunEnded;
    r.run = std::string(*run.FindHeader(kbus::header::kCorrelationId));
    r.event_type = "kbus.ProcessExited";
    r.outcome = std::move(outcome);
    Do(r, now);
  }
};

TEST(Schedule, ANewScheduleStartsFromNowAndFiresEachTickOnce) {
  Owner o(EveryMinute());
  EXPECT_TRUE(o.At(kT0 + 10s).sends.empty()) << "the ticks before it existed are not fired";
  EXPECT_TRUE(o.At(kT0 + 50s).sends.empty());
  Plan p = o.At(kT0 + 60s);
  ASSERT_EQ(p.sends.size(), 1u);
  EXPECT_EQ(p.next_wake, kT0 + 120s);
  EXPECT_TRUE(o.At(kT0 + 61s).sends.empty()) << "a tick fires once";
  o.At(kT0 + 120s);
  EXPECT_THAT(o.Ticks(), ElementsAre("2026-12-06T10:01:00Z", "2026-12-06T10:02:00Z"));
}

TEST(Schedule, ATicksCommandHasIdsDerivedFromScheduleAndTick) {
  ScheduleSpec spec = EveryMinute();
  const OutgoingRecord a = kbus::schedules::TickCommand(spec, kT0, "tick");
  const OutgoingRecord again = kbus::schedules::TickCommand(spec, kT0, "tick");
  const OutgoingRecord next = kbus::schedules::TickCommand(spec, kT0 + 1min, "tick");
  EXPECT_EQ(a.FindHeader(kbus::header::kId), again.FindHeader(kbus::header::kId)) << "a tick fired twice carries one id";
  EXPECT_NE(a.FindHeader(kbus::header::kId), next.FindHeader(kbus::header::kId));
  const std::string id(*a.FindHeader(kbus::header::kId));
  EXPECT_EQ(a.FindHeader(kbus::header::kCorrelationId), "schedule/minutely/" + std::to_string(kT0.time_since_epoch().count()));
  EXPECT_EQ(a.payload, R"({"run":")" + id + R"(","tick":"2026-12-06T10:00:00Z","schedule":"minutely"})");
  EXPECT_EQ(a.FindHeader(kbus::header::kType), "reports.Render");
  EXPECT_EQ(a.topic, "reports");
  auto ref = kbus::schedules::ParseRunCorrelation(*a.FindHeader(kbus::header::kCorrelationId));
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->schedule_id, "minutely");
  EXPECT_EQ(ref->tick, kT0);
}

TEST(Schedule, DownTenMinutesCatchUpAllFiresEachMissedTickInTheWindowOldestFirst) {
  ScheduleSpec spec = EveryMinute();
  spec.catch_up_window = 5min;
  Owner o(spec);
  o.At(kT0);
  // Down from 10:00 to 10:10: ten ticks missed; five fall within the window.
  o.At(kT0 + 10min);
  EXPECT_THAT(o.Ticks(), ElementsAre("2026-12-06T10:05:00Z", "2026-12-06T10:06:00Z", "2026-12-06T10:07:00Z",
                                     "2026-12-06T10:08:00Z", "2026-12-06T10:09:00Z", "2026-12-06T10:10:00Z"));
  const auto outcomes = o.Outcomes();
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "missed"), 4) << "10:01 to 10:04 are outside the window";
}

TEST(Schedule, DownTenMinutesCatchUpLatestFiresOnlyTheLatest) {
  ScheduleSpec spec = EveryMinute();
  spec.catch_up_window = 5min;
  spec.catch_up = CatchUp::kLatest;
  Owner o(spec);
  o.At(kT0);
  o.At(kT0 + 10min + 20s);
  EXPECT_THAT(o.Ticks(), ElementsAre("2026-12-06T10:10:00Z"));
  const auto outcomes = o.Outcomes();
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "missed"), 5) << "10:01 to 10:05 are over 5 min old";
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "skipped"), 4) << "10:06 to 10:09 give way to 10:10";
}

TEST(Schedule, AZeroWindowStillFiresATickThatIsOnlyALittleLate) {
  ScheduleSpec spec = EveryMinute();
  spec.catch_up_window = 0ms;
  Owner o(spec);
  o.At(kT0);
  o.At(kT0 + 1min + 300ms);
  EXPECT_EQ(o.Ticks().size(), 1u);
  o.At(kT0 + 5min);
  EXPECT_EQ(o.Ticks().size(), 2u) << "10:05 fires; 10:02 to 10:04 were missed";
}

TEST(Schedule, SkipNeverOverlapsARunAndTheRunsEndLetsTheNextTickFire) {
  Owner o(LaunchEveryMinute());
  o.At(kT0);
  o.At(kT0 + 1min);
  ASSERT_EQ(o.sent.size(), 1u);
  EXPECT_EQ(o.state.running.size(), 1u) << "a launcher job runs until its ProcessExited";
  o.At(kT0 + 2min);
  o.At(kT0 + 3min);
  EXPECT_EQ(o.sent.size(), 1u) << "skip: no second run while the first runs";
  o.Ends(o.sent[0], kT0 + 3min + 30s);
  EXPECT_TRUE(o.state.running.empty());
  EXPECT_EQ(o.sent.size(), 1u) << "skip does not fire the skipped ticks afterwards";
  o.At(kT0 + 4min);
  EXPECT_EQ(o.sent.size(), 2u);
  EXPECT_THAT(o.Outcomes(), ElementsAre("fired", "skipped", "skipped", "succeeded", "fired"));
}

TEST(Schedule, BufferOneRunsExactlyOneSkippedTickWhenTheRunEnds) {
  ScheduleSpec spec = LaunchEveryMinute();
  spec.overlap = Overlap::kBufferOne;
  Owner o(spec);
  o.At(kT0);
  o.At(kT0 + 1min);
  o.At(kT0 + 2min);
  o.At(kT0 + 3min);
  o.At(kT0 + 4min);
  ASSERT_EQ(o.sent.size(), 1u);
  EXPECT_EQ(o.state.buffered, kT0 + 2min) << "the first tick that found the run still going";
  o.Ends(o.sent[0], kT0 + 4min + 10s);
  ASSERT_EQ(o.sent.size(), 2u) << "the buffered tick fires as soon as the run ends";
  EXPECT_EQ(o.sent[1].FindHeader("kbus-schedule-tick"), "2026-12-06T10:02:00Z");
  EXPECT_EQ(o.sent[1].FindHeader("kbus-schedule-reason"), "buffered");
  EXPECT_FALSE(o.state.buffered);
}

TEST(Schedule, CancelOtherCancelsTheRunningJobThenFires) {
  ScheduleSpec spec = LaunchEveryMinute();
  spec.overlap = Overlap::kCancelOther;
  Owner o(spec);
  o.At(kT0);
  o.At(kT0 + 1min);
  const std::string first_run(*o.sent[0].FindHeader(kbus::header::kId));
  o.At(kT0 + 2min);
  ASSERT_EQ(o.sent.size(), 3u);
  EXPECT_EQ(o.sent[1].FindHeader(kbus::header::kType), "kbus.CancelProcess");
  EXPECT_EQ(o.sent[1].topic, "kbus.launcher.control");
  EXPECT_THAT(o.sent[1].payload, HasSubstr(R"("job_id":"job-)" + first_run + R"(")"));
  EXPECT_THAT(o.sent[1].payload, HasSubstr("cancel_other"));
  EXPECT_EQ(o.sent[2].FindHeader("kbus-schedule-tick"), "2026-12-06T10:02:00Z");
  EXPECT_EQ(o.state.running.size(), 1u);
}

TEST(Schedule, AllowAllFiresWhateverRuns) {
  ScheduleSpec spec = LaunchEveryMinute();
  spec.overlap = Overlap::kAllowAll;
  Owner o(spec);
  o.At(kT0);
  for (int i = 1; i <= 3; ++i) o.At(kT0 + std::chrono::minutes(i));
  EXPECT_EQ(o.sent.size(), 3u);
  EXPECT_EQ(o.state.running.size(), 3u);
}

TEST(Schedule, ARunWithoutAnEndCountsAsEndedAfterItsRunTimeout) {
  ScheduleSpec spec = LaunchEveryMinute();
  spec.run_timeout = 150s;
  Owner o(spec);
  o.At(kT0);
  o.At(kT0 + 1min);
  o.At(kT0 + 2min);
  EXPECT_EQ(o.sent.size(), 1u);
  // The run fired at 10:01 times out at 10:03:30; the 10:03 tick, within its catch-up window,
  // then finds nothing running and fires.
  o.At(kT0 + 3min + 30s);
  EXPECT_EQ(o.sent.size(), 2u);
  EXPECT_EQ(o.sent[1].FindHeader("kbus-schedule-tick"), "2026-12-06T10:03:00Z");
  EXPECT_THAT(o.Outcomes(), ElementsAre("fired", "skipped", "timed_out", "fired"));
}

TEST(Schedule, AnEndOfAnotherTypeOrAnotherRunChangesNothing) {
  Owner o(LaunchEveryMinute());
  o.At(kT0);
  o.At(kT0 + 1min);
  Request r;
  r.id = "x";
  r.op = Request::Op::kRunEnded;
  r.run = std::string(*o.sent[0].FindHeader(kbus::header::kCorrelationId));
  r.event_type = "kbus.ProcessHeartbeat";
  o.Do(r, kT0 + 70s);
  EXPECT_EQ(o.state.running.size(), 1u) << "only the types in ends_on end a run";
  r.id = "y";
  r.event_type = "kbus.ProcessExited";
  r.run = kbus::schedules::RunCorrelation("minutely", kT0 + 7min);
  o.Do(r, kT0 + 70s);
  EXPECT_EQ(o.state.running.size(), 1u) << "an end for a run that is not running";
}

TEST(Schedule, PausedTicksDoNotFireAndAreNotCaughtUpAfterResume) {
  Owner o(EveryMinute());
  o.At(kT0);
  Request pause;
  pause.id = "p";
  pause.op = Request::Op::kPause;
  pause.note = "db maintenance";
  o.Do(pause, kT0 + 10s);
  EXPECT_TRUE(o.spec.paused);
  EXPECT_EQ(o.spec.note, "db maintenance");
  o.At(kT0 + 1min);
  o.At(kT0 + 2min);
  EXPECT_TRUE(o.sent.empty());
  Request resume;
  resume.id = "r";
  resume.op = Request::Op::kResume;
  o.Do(resume, kT0 + 2min + 30s);
  o.At(kT0 + 2min + 31s);
  EXPECT_TRUE(o.sent.empty()) << "the paused ticks stay unfired";
  o.At(kT0 + 3min);
  EXPECT_THAT(o.Ticks(), ElementsAre("2026-12-06T10:03:00Z"));
  EXPECT_THAT(o.Outcomes(), ElementsAre("paused", "paused", "fired"));
}

TEST(Schedule, TriggerFiresNowEvenWhilePausedAndBackfillFiresEachTickOfTheRange) {
  Owner o(EveryMinute());
  o.At(kT0);
  Request trigger;
  trigger.id = "t";
  trigger.op = Request::Op::kTrigger;
  trigger.to = kT0 + 17s;
  Plan p = o.Do(trigger, kT0 + 17s);
  ASSERT_EQ(p.sends.size(), 1u);
  EXPECT_EQ(p.sends[0].FindHeader("kbus-schedule-tick"), "2026-12-06T10:00:17Z");
  EXPECT_EQ(p.sends[0].FindHeader("kbus-schedule-reason"), "trigger");
  Request backfill;
  backfill.id = "b";
  backfill.op = Request::Op::kBackfill;
  backfill.from = kT0 - 3min;
  backfill.to = kT0 - 1min;
  o.Do(backfill, kT0 + 20s);
  o.At(kT0 + 21s);
  EXPECT_THAT(o.Ticks(), ElementsAre("2026-12-06T10:00:17Z", "2026-12-06T09:58:00Z", "2026-12-06T09:59:00Z"));
  EXPECT_EQ(o.sent.back().FindHeader("kbus-schedule-reason"), "backfill");
  EXPECT_THAT(o.state.applied, ElementsAre("t", "b")) << "each request is remembered, so none applies twice";
}

TEST(Schedule, APutKeepsAPauseSoCodeDeclaringItsSchedulesCannotResumeOne) {
  Owner o(EveryMinute());
  o.At(kT0);
  Request pause;
  pause.id = "p";
  pause.op = Request::Op::kPause;
  pause.note = "incident 42";
  o.Do(pause, kT0 + 1s);
  Request put;
  put.id = "declare";
  put.op = Request::Op::kPut;
  put.spec = EveryMinute();
  put.spec->every = 2min;
  o.Do(put, kT0 + 2s);
  EXPECT_EQ(o.spec.every, 2min) << "the definition changes";
  EXPECT_TRUE(o.spec.paused);
  EXPECT_EQ(o.spec.note, "incident 42");
}

TEST(Schedule, JitterDelaysEachTickByAFixedAmountBelowTheJitter) {
  ScheduleSpec spec = EveryMinute();
  spec.jitter = 20s;
  std::set<std::int64_t> seen;
  for (int i = 0; i < 50; ++i) {
    const auto j = kbus::schedules::TickJitter(spec, kT0 + std::chrono::minutes(i));
    EXPECT_GE(j, 0ms);
    EXPECT_LT(j, 20s);
    EXPECT_EQ(j, kbus::schedules::TickJitter(spec, kT0 + std::chrono::minutes(i))) << "the same on every try";
    seen.insert(j.count());
  }
  EXPECT_GT(seen.size(), 40u) << "spread, not constant";
  Owner o(spec);
  o.At(kT0);
  const auto j = kbus::schedules::TickJitter(spec, kT0 + 1min);
  o.At(kT0 + 1min + j - 1ms);
  EXPECT_TRUE(o.sent.empty()) << "not before its jittered time";
  o.At(kT0 + 1min + j);
  EXPECT_EQ(o.sent.size(), 1u);
}

TEST(Schedule, StartAndEndBoundTheTicks) {
  ScheduleSpec spec = EveryMinute();
  spec.every = 0ms;
  spec.cron = "*/5 * * * *";
  spec.start = kT0 + 12min;
  spec.end = kT0 + 20min;
  Owner o(spec);
  o.At(kT0);
  for (int m = 1; m <= 30; ++m) o.At(kT0 + std::chrono::minutes(m));
  EXPECT_THAT(o.Ticks(), ElementsAre("2026-12-06T10:15:00Z", "2026-12-06T10:20:00Z"));
  EXPECT_THAT(kbus::schedules::NextFireTimes(spec, kT0, 5), ElementsAre(kT0 + 15min, kT0 + 20min));
}

TEST(Schedule, NightlyInParisFiresAtTwoLocalAcrossTheClockChanges) {
  ScheduleSpec spec = EveryMinute();
  spec.every = 0ms;
  spec.cron = "0 2 * * *";
  spec.time_zone = "Europe/Paris";
  const TimePoint before_spring = TimePoint(std::chrono::sys_days(std::chrono::year(2026) / 3 / 27).time_since_epoch());
  const auto next = kbus::schedules::NextFireTimes(spec, before_spring, 4);
  auto utc = [](int month, int day, int hour) {
    return TimePoint(std::chrono::sys_days(std::chrono::year(2026) / month / day).time_since_epoch()) + std::chrono::hours(hour);
  };
  // 02:00 CET is 01:00Z; on 29 March 02:00 does not exist and the job runs at 03:00 CEST (01:00Z);
  // then 02:00 CEST is 00:00Z.
  EXPECT_THAT(next, ElementsAre(utc(3, 27, 1), utc(3, 28, 1), utc(3, 29, 1), utc(3, 30, 0)));
}

TEST(Schedule, ValidateNamesTheField) {
  ScheduleSpec s = EveryMinute();
  s.every = 0ms;
  s.cron = "0 25 * * *";
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("hour")));
  s.cron = "0 2 * * *";
  s.time_zone = "Europe/Pari";
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("time_zone")));
  s = EveryMinute();
  s.cron = "* * * * *";
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("not both")));
  s = EveryMinute();
  s.type.clear();
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("type")));
  s = EveryMinute();
  s.payload = "{not json";
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("payload")));
  s = EveryMinute();
  s.overlap = Overlap::kBufferOne;
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("ends_on")));
  s.type = "kbus.LaunchProcess";
  EXPECT_THAT(kbus::schedules::Validate(s), IsOk()) << "a launcher job ends with kbus.ProcessExited";
  s = EveryMinute();
  s.overlap = Overlap::kCancelOther;
  s.ends_on = {"reports.Rendered"};
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("cancel_other")));
  s = EveryMinute();
  s.id = "a/b";
  EXPECT_THAT(kbus::schedules::Validate(s), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("id")));
}

TEST(Schedule, RecordsRoundTrip) {
  Owner o(LaunchEveryMinute());
  o.spec.jitter = 3s;
  o.spec.ends_on = {"kbus.ProcessExited", "video.Failed"};
  o.spec.headers = {{"x-team", "media"}};
  o.spec.start = kT0;
  o.At(kT0);
  o.At(kT0 + 2min);
  kbus::schedules::ScheduleRecord rec{o.spec, o.state, std::nullopt, ""};
  auto back = kbus::schedules::DecodeRecord(kbus::schedules::EncodeRecord(rec));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(kbus::schedules::EncodeSpec(*back->spec), kbus::schedules::EncodeSpec(o.spec));
  EXPECT_EQ(back->state->last_tick, o.state.last_tick);
  ASSERT_EQ(back->state->running.size(), o.state.running.size());
  EXPECT_EQ(back->state->running[0].job_id, o.state.running[0].job_id);
  EXPECT_EQ(back->state->recent.size(), o.state.recent.size());
  EXPECT_EQ(back->state->fired, o.state.fired);

  Request r;
  r.id = "req";
  r.op = Request::Op::kBackfill;
  r.from = kT0;
  r.to = kT0 + 1h;
  auto req = kbus::schedules::DecodeRecord(kbus::schedules::EncodeRecord({.request = r}));
  ASSERT_THAT(req, IsOk());
  EXPECT_EQ(req->request->op, Request::Op::kBackfill);
  EXPECT_EQ(req->request->from, kT0);
  EXPECT_EQ(req->request->to, kT0 + 1h);
  EXPECT_THAT(kbus::schedules::DecodeRecord(R"({"request":{"id":"x","op":"explode"}})"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("unknown op")));
  EXPECT_THAT(kbus::schedules::DecodeRecord("[1,2]"), ErrorIs(ErrorCode::kInvalidArgument));
}

}  // namespace
