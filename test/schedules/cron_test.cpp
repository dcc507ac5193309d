// Calendars: cron syntax, interval calendars, and the daylight-saving rules of calendar.hpp,
// pinned on fixed instants in Europe/Paris and America/New_York (2026 transitions).

#include "kbus/schedules/calendar.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "kbus/testing/matchers.hpp"

namespace kbus::schedules {
namespace {

using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A UTC instant.
TimePoint Utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return TimePoint{std::chrono::sys_days{std::chrono::year{y} / mo / d}} + hours(h) + minutes(mi) +
         seconds(s);
}

// "2026-03-29T01:00:00Z", with ".250" when there are milliseconds.
std::string Iso(TimePoint t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss<milliseconds> tod{t - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(tod.hours().count()), static_cast<int>(tod.minutes().count()),
                static_cast<int>(tod.seconds().count()));
  std::string out = buf;
  if (tod.subseconds().count() != 0) {
    std::snprintf(buf, sizeof buf, ".%03d", static_cast<int>(tod.subseconds().count()));
    out += buf;
  }
  return out + "Z";
}

std::string NextIso(const Calendar& calendar, TimePoint after) {
  const auto next = calendar.Next(after);
  return next ? Iso(*next) : "none";
}

std::vector<std::string> BetweenIso(const Calendar& calendar, TimePoint from, TimePoint to,
                                    std::size_t limit = 100) {
  std::vector<std::string> out;
  for (TimePoint t : calendar.Between(from, to, limit)) out.push_back(Iso(t));
  return out;
}

Calendar Cron(std::string_view expression, std::string_view zone = "UTC") {
  auto calendar = Calendar::Cron(expression, zone);
  EXPECT_THAT(calendar, IsOk()) << expression;
  return calendar.ok() ? *calendar : *Calendar::Cron("* * * * *");
}

// Walks Next from `from` to `to` and checks every tick is strictly after the previous one.
void ExpectStrictlyIncreasing(const Calendar& calendar, TimePoint from, TimePoint to) {
  TimePoint t = from;
  int ticks = 0;
  while (true) {
    const auto next = calendar.Next(t);
    ASSERT_TRUE(next.has_value()) << calendar.Describe() << " after " << Iso(t);
    ASSERT_GT(*next, t) << calendar.Describe() << " after " << Iso(t);
    if (*next > to) break;
    t = *next;
    ++ticks;
  }
  EXPECT_GT(ticks, 0) << calendar.Describe();
}

// --- syntax ---------------------------------------------------------------------------------

TEST(CronSyntax, SingleValuesPickOneMinuteOfTheDay) {
  const Calendar c = Cron("5 3 * * *");
  EXPECT_EQ(NextIso(c, Utc(2026, 1, 1)), "2026-01-01T03:05:00Z");
  EXPECT_EQ(NextIso(c, Utc(2026, 1, 1, 3, 5)), "2026-01-02T03:05:00Z");
}

TEST(CronSyntax, NextIsStrictlyAfterAndOnWholeMinutes) {
  const Calendar c = Cron("* * * * *");
  EXPECT_EQ(NextIso(c, Utc(2026, 1, 1, 0, 1)), "2026-01-01T00:02:00Z");
  EXPECT_EQ(NextIso(c, Utc(2026, 1, 1, 0, 1, 30)), "2026-01-01T00:02:00Z");
  EXPECT_EQ(NextIso(c, Utc(2026, 1, 1, 0, 1) - milliseconds(1)), "2026-01-01T00:01:00Z");
}

TEST(CronSyntax, RangesIncludeBothEnds) {
  EXPECT_THAT(BetweenIso(Cron("10-12 * * * *"), Utc(2026, 1, 1), Utc(2026, 1, 1, 1, 10)),
              ElementsAre("2026-01-01T00:10:00Z", "2026-01-01T00:11:00Z", "2026-01-01T00:12:00Z",
                          "2026-01-01T01:10:00Z"));
}

TEST(CronSyntax, StepsOverTheWholeRangeARangeOrFromAValue) {
  EXPECT_THAT(BetweenIso(Cron("*/20 * * * *"), Utc(2026, 1, 1), Utc(2026, 1, 1, 1)),
              ElementsAre("2026-01-01T00:20:00Z", "2026-01-01T00:40:00Z", "2026-01-01T01:00:00Z"));
  EXPECT_THAT(BetweenIso(Cron("10-30/10 * * * *"), Utc(2026, 1, 1), Utc(2026, 1, 1, 0, 59)),
              ElementsAre("2026-01-01T00:10:00Z", "2026-01-01T00:20:00Z", "2026-01-01T00:30:00Z"));
  EXPECT_THAT(BetweenIso(Cron("50/5 * * * *"), Utc(2026, 1, 1), Utc(2026, 1, 1, 1, 50)),
              ElementsAre("2026-01-01T00:50:00Z", "2026-01-01T00:55:00Z", "2026-01-01T01:50:00Z"));
  EXPECT_THAT(BetweenIso(Cron("0 0 */10 * *"), Utc(2026, 1, 1), Utc(2026, 2, 1)),
              ElementsAre("2026-01-11T00:00:00Z", "2026-01-21T00:00:00Z", "2026-01-31T00:00:00Z",
                          "2026-02-01T00:00:00Z"));
}

TEST(CronSyntax, ListsMixValuesRangesAndSteps) {
  EXPECT_THAT(BetweenIso(Cron("1,5,10-20/5 * * * *"), Utc(2026, 1, 1), Utc(2026, 1, 1, 0, 59)),
              ElementsAre("2026-01-01T00:01:00Z", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z",
                          "2026-01-01T00:15:00Z", "2026-01-01T00:20:00Z"));
}

TEST(CronSyntax, MonthNamesInAnyCase) {
  EXPECT_THAT(BetweenIso(Cron("0 0 1 jan,Jul *"), Utc(2025, 12, 1), Utc(2027, 1, 1)),
              ElementsAre("2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"));
  EXPECT_THAT(BetweenIso(Cron("0 0 1 MAR-MAY *"), Utc(2026, 1, 1), Utc(2026, 12, 31)),
              ElementsAre("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"));
}

TEST(CronSyntax, DayNamesInAnyCase) {
  // 2026-01-03 is a Saturday.
  const Calendar c = Cron("0 9 * * mon-FRI");
  EXPECT_EQ(NextIso(c, Utc(2026, 1, 3)), "2026-01-05T09:00:00Z");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 1, 5, 9), Utc(2026, 1, 12)),
              ElementsAre("2026-01-06T09:00:00Z", "2026-01-07T09:00:00Z", "2026-01-08T09:00:00Z",
                          "2026-01-09T09:00:00Z"));
}

TEST(CronSyntax, SevenAndZeroAreBothSunday) {
  const auto sundays = BetweenIso(Cron("0 0 * * 0"), Utc(2026, 1, 1), Utc(2026, 1, 31));
  EXPECT_THAT(sundays, ElementsAre("2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z",
                                   "2026-01-18T00:00:00Z", "2026-01-25T00:00:00Z"));
  EXPECT_EQ(BetweenIso(Cron("0 0 * * 7"), Utc(2026, 1, 1), Utc(2026, 1, 31)), sundays);
  EXPECT_EQ(BetweenIso(Cron("0 0 * * sun"), Utc(2026, 1, 1), Utc(2026, 1, 31)), sundays);
  // A range up to 7 ends on Sunday: Friday, Saturday, Sunday.
  EXPECT_THAT(BetweenIso(Cron("0 0 * * 5-7"), Utc(2026, 1, 1), Utc(2026, 1, 5)),
              ElementsAre("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"));
}

TEST(CronSyntax, DayOfMonthOrDayOfWeekWhenBothAreRestricted) {
  // Every 13th and every Friday (2026-01-02 is a Friday, 2026-01-13 a Tuesday).
  EXPECT_THAT(BetweenIso(Cron("0 0 13 * FRI"), Utc(2026, 1, 1), Utc(2026, 1, 17)),
              ElementsAre("2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z",
                          "2026-01-16T00:00:00Z"));
}

TEST(CronSyntax, OnlyTheRestrictedDayFieldCountsWhenTheOtherIsUnrestricted) {
  EXPECT_THAT(BetweenIso(Cron("0 0 13 * *"), Utc(2026, 1, 1), Utc(2026, 3, 1)),
              ElementsAre("2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"));
  EXPECT_THAT(BetweenIso(Cron("0 0 * * FRI"), Utc(2026, 1, 1), Utc(2026, 1, 10)),
              ElementsAre("2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"));
  // A field covering its whole range is unrestricted however it is written.
  EXPECT_THAT(BetweenIso(Cron("0 0 1-31 * FRI"), Utc(2026, 1, 1), Utc(2026, 1, 10)),
              ElementsAre("2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"));
  EXPECT_THAT(BetweenIso(Cron("0 0 13 * 0-7"), Utc(2026, 1, 1), Utc(2026, 3, 1)),
              ElementsAre("2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"));
}

TEST(CronSyntax, AStepRestrictsItsField) {
  // */10 is days 1, 11, 21, 31: OR-ed with Fridays (2, 9, 16, 23, 30).
  EXPECT_THAT(BetweenIso(Cron("0 0 */10 * FRI"), Utc(2026, 1, 1), Utc(2026, 1, 17)),
              ElementsAre("2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-11T00:00:00Z",
                          "2026-01-16T00:00:00Z"));
}

TEST(CronSyntax, MacrosStandForTheirFiveFields) {
  const TimePoint from = Utc(2026, 5, 13, 10, 30);  // a Wednesday
  EXPECT_EQ(NextIso(Cron("@yearly"), from), "2027-01-01T00:00:00Z");
  EXPECT_EQ(NextIso(Cron("@annually"), from), "2027-01-01T00:00:00Z");
  EXPECT_EQ(NextIso(Cron("@monthly"), from), "2026-06-01T00:00:00Z");
  EXPECT_EQ(NextIso(Cron("@weekly"), from), "2026-05-17T00:00:00Z");
  EXPECT_EQ(NextIso(Cron("@daily"), from), "2026-05-14T00:00:00Z");
  EXPECT_EQ(NextIso(Cron("@midnight"), from), "2026-05-14T00:00:00Z");
  EXPECT_EQ(NextIso(Cron("@hourly"), from), "2026-05-13T11:00:00Z");
  EXPECT_EQ(NextIso(Cron("@DAILY"), from), "2026-05-14T00:00:00Z");
  EXPECT_EQ(Cron("@daily").expression(), "@daily");
}

TEST(CronSyntax, ExpressionKeepsTheFieldsWithBlanksCollapsed) {
  const Calendar c = Cron("  0   2 *\t* *  ", "Europe/Paris");
  EXPECT_EQ(c.expression(), "0 2 * * *");
  EXPECT_EQ(c.time_zone(), "Europe/Paris");
  EXPECT_EQ(c.kind(), Calendar::Kind::kCron);
  EXPECT_EQ(c.Describe(), "cron '0 2 * * *' in Europe/Paris");
  EXPECT_EQ(Cron("*/5 * * * *").Describe(), "cron '*/5 * * * *' in UTC");
}

TEST(CronSyntax, CopiesAreEqualValues) {
  const Calendar a = Cron("0 2 * * *", "Europe/Paris");
  const Calendar b = a;  // NOLINT(performance-unnecessary-copy-initialization): the point
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.Next(Utc(2026, 1, 1)), b.Next(Utc(2026, 1, 1)));
  EXPECT_FALSE(a == Cron("0 2 * * *"));
  EXPECT_FALSE(a == Cron("0 3 * * *", "Europe/Paris"));
}

// --- errors ---------------------------------------------------------------------------------

TEST(CronErrors, WrongNumberOfFields) {
  EXPECT_THAT(Calendar::Cron("0 2 * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: expected 5 fields (minute hour day-of-month month day-of-week), "
                      "got 4"));
  EXPECT_THAT(Calendar::Cron("0 0 2 * * *"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("expected 5 fields")));
  EXPECT_THAT(Calendar::Cron("   "), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("got 0")));
}

TEST(CronErrors, EachOutOfRangeValueNamesItsField) {
  EXPECT_THAT(Calendar::Cron("60 * * * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 1 (minute): 60 is out of range 0-59"));
  EXPECT_THAT(Calendar::Cron("0 25 * * *"),
              ErrorIs(ErrorCode::kInvalidArgument, "cron: field 2 (hour): 25 is out of range 0-23"));
  EXPECT_THAT(Calendar::Cron("0 0 0 * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 3 (day-of-month): 0 is out of range 1-31"));
  EXPECT_THAT(Calendar::Cron("0 0 32 * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 3 (day-of-month): 32 is out of range 1-31"));
  EXPECT_THAT(Calendar::Cron("0 0 * 13 *"),
              ErrorIs(ErrorCode::kInvalidArgument, "cron: field 4 (month): 13 is out of range 1-12"));
  EXPECT_THAT(Calendar::Cron("0 0 * * 8"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 5 (day-of-week): 8 is out of range 0-7"));
  EXPECT_THAT(Calendar::Cron("0 1-99999999999 * * *"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 2 (hour): 99999999999 is out")));
}

TEST(CronErrors, NamesOnlyWhereTheyBelong) {
  EXPECT_THAT(Calendar::Cron("0 0 * FOO *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 4 (month): 'FOO' is not a number 1-12 or a name JAN-DEC"));
  EXPECT_THAT(Calendar::Cron("0 0 * * MONDAY"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      HasSubstr("field 5 (day-of-week): 'MONDAY' is not a number 0-7 or a name "
                                "SUN-SAT")));
  EXPECT_THAT(Calendar::Cron("MON * * * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 1 (minute): 'MON' is not a number 0-59"));
  EXPECT_THAT(Calendar::Cron("0 0 JAN * *"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 3 (day-of-month)")));
}

TEST(CronErrors, BadStepsNameTheirField) {
  EXPECT_THAT(Calendar::Cron("*/0 * * * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 1 (minute): step 0 is out of range 1-60"));
  EXPECT_THAT(Calendar::Cron("0 */x * * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 2 (hour): step 'x' in '*/x' is not a number 1-24"));
  EXPECT_THAT(Calendar::Cron("0 0 * */13 *"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 4 (month): step 13")));
  EXPECT_THAT(Calendar::Cron("0 0 * * 1/"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 5 (day-of-week): step ''")));
}

TEST(CronErrors, BackwardsRangesAndEmptyItemsNameTheirField) {
  EXPECT_THAT(Calendar::Cron("0 22-3 * * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 2 (hour): range 22-3 runs backwards: write it as 22-23,0-3"));
  EXPECT_THAT(Calendar::Cron("0 0 * * FRI-MON"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      HasSubstr("field 5 (day-of-week): range FRI-MON runs backwards: write it as "
                                "5-6,0-1")));
  EXPECT_THAT(Calendar::Cron("1,,2 * * * *"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "cron: field 1 (minute): empty item in list '1,,2'"));
  EXPECT_THAT(Calendar::Cron("0 0 1, * *"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 3 (day-of-month): empty item")));
  EXPECT_THAT(Calendar::Cron("0 0 * -1 *"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 4 (month): '' is not")));
}

TEST(CronErrors, UnknownMacro) {
  EXPECT_THAT(Calendar::Cron("@reboot"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      HasSubstr("cron: unknown macro '@reboot': use @yearly")));
  EXPECT_THAT(Calendar::Cron("@daily 0"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("expected 5 fields")));
}

TEST(CronErrors, UnknownOrEmptyTimeZone) {
  EXPECT_THAT(Calendar::Cron("0 2 * * *", "Europe/Pari"),
              ErrorIs(ErrorCode::kInvalidArgument,
                      HasSubstr("time_zone: unknown time zone 'Europe/Pari'")));
  EXPECT_THAT(Calendar::Cron("0 2 * * *", ""),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("time_zone: empty")));
  EXPECT_THAT(Calendar::Cron("0 2 * * *", "../../etc/passwd"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("unknown time zone")));
}

TEST(CronErrors, TheExpressionIsCheckedBeforeTheZone) {
  EXPECT_THAT(Calendar::Cron("0 25 * * *", "Nowhere/Else"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 2 (hour)")));
}

// --- intervals ------------------------------------------------------------------------------

TEST(Interval, TicksOnMultiplesOfThePeriodFromTheEpoch) {
  auto c = Calendar::Every(minutes(1));
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(NextIso(*c, Utc(2026, 1, 1, 12, 0, 30)), "2026-01-01T12:01:00Z");
  EXPECT_EQ(NextIso(*c, Utc(2026, 1, 1, 12, 1)), "2026-01-01T12:02:00Z");
  EXPECT_EQ(c->kind(), Calendar::Kind::kInterval);
  EXPECT_EQ(c->every(), minutes(1));
  EXPECT_EQ(c->expression(), "1m");
  EXPECT_EQ(c->time_zone(), "UTC");
  EXPECT_EQ(c->Describe(), "every 1m");
}

TEST(Interval, TheAnchorFixesThePhaseOnBothSides) {
  const TimePoint anchor = Utc(2026, 1, 1, 0, 0, 10);
  auto c = Calendar::Every(hours(1), anchor);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(NextIso(*c, Utc(2025, 12, 31, 23, 0)), "2025-12-31T23:00:10Z");
  EXPECT_EQ(NextIso(*c, Utc(2025, 12, 31, 23, 30)), "2026-01-01T00:00:10Z");
  EXPECT_EQ(NextIso(*c, anchor), "2026-01-01T01:00:10Z");
  EXPECT_EQ(NextIso(*c, anchor - milliseconds(1)), "2026-01-01T00:00:10Z");
  EXPECT_EQ(NextIso(*c, Utc(2026, 1, 3, 7, 0, 10)), "2026-01-03T08:00:10Z");
  EXPECT_EQ(c->anchor(), anchor);
  EXPECT_EQ(c->Describe(), "every 1h from 2026-01-01T00:00:10Z");
}

TEST(Interval, PeriodsPrintInMixedUnits) {
  EXPECT_EQ(Calendar::Every(seconds(90))->Describe(), "every 1m30s");
  EXPECT_EQ(Calendar::Every(hours(36))->Describe(), "every 1d12h");
  EXPECT_EQ(Calendar::Every(milliseconds(1500))->Describe(), "every 1s500ms");
  EXPECT_EQ(Calendar::Every(seconds(1), Utc(2026, 1, 1) + milliseconds(250))->Describe(),
            "every 1s from 2026-01-01T00:00:00.250Z");
}

TEST(Interval, PeriodsShorterThanOneSecondAreRefused) {
  EXPECT_THAT(Calendar::Every(milliseconds(500)),
              ErrorIs(ErrorCode::kInvalidArgument,
                      "every: 500ms is shorter than the minimum of 1s"));
  EXPECT_THAT(Calendar::Every(milliseconds(0)),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("every: 0s")));
  EXPECT_THAT(Calendar::Every(-seconds(5)),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("every: -5s")));
  EXPECT_THAT(Calendar::Every(seconds(1)), IsOk());
}

TEST(Interval, ExtremeInstantsHaveNoTickRatherThanOverflowing) {
  auto c = Calendar::Every(hours(24));
  ASSERT_THAT(c, IsOk());
  EXPECT_FALSE(c->Next(TimePoint::max()).has_value());
  EXPECT_TRUE(c->Next(TimePoint::min()).has_value());
}

TEST(CronSyntax, ExtremeInstantsAreHandled) {
  EXPECT_FALSE(Cron("0 0 * * *").Next(TimePoint::max()).has_value());
  EXPECT_FALSE(Cron("0 0 * * *", "Europe/Paris").Next(TimePoint::max()).has_value());
  EXPECT_EQ(NextIso(Cron("0 0 * * *"), Utc(9999, 12, 31)), "none");
  EXPECT_EQ(NextIso(Cron("0 0 * * *"), TimePoint::min()), "0001-01-02T00:00:00Z");
  EXPECT_TRUE(Cron("0 0 * * *", "Europe/Paris").Next(TimePoint::min()).has_value());
}

// --- Between --------------------------------------------------------------------------------

TEST(Between, ExcludesFromIncludesToOldestFirst) {
  const Calendar c = Cron("0 * * * *");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 1, 1, 1), Utc(2026, 1, 1, 3)),
              ElementsAre("2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"));
}

TEST(Between, StopsAtTheLimit) {
  const Calendar c = Cron("*/5 * * * *");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 1, 1), Utc(2027, 1, 1), 3),
              ElementsAre("2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z", "2026-01-01T00:15:00Z"));
  EXPECT_THAT(c.Between(Utc(2026, 1, 1), Utc(2027, 1, 1), 0), IsEmpty());
  EXPECT_THAT(c.Between(Utc(2026, 1, 1), Utc(2026, 1, 1), 10), IsEmpty());
  EXPECT_THAT(c.Between(Utc(2026, 1, 2), Utc(2026, 1, 1), 10), IsEmpty());
}

TEST(Between, WorksForIntervals) {
  auto c = Calendar::Every(seconds(20), Utc(2026, 1, 1, 0, 0, 5));
  ASSERT_THAT(c, IsOk());
  EXPECT_THAT(BetweenIso(*c, Utc(2026, 1, 1), Utc(2026, 1, 1, 0, 1)),
              ElementsAre("2026-01-01T00:00:05Z", "2026-01-01T00:00:25Z", "2026-01-01T00:00:45Z"));
}

// --- rare and impossible dates --------------------------------------------------------------

TEST(RareDates, LeapDayIsFoundYearsAhead) {
  const Calendar c = Cron("0 0 29 2 *");
  EXPECT_EQ(NextIso(c, Utc(2027, 1, 1)), "2028-02-29T00:00:00Z");
  EXPECT_EQ(NextIso(c, Utc(2028, 2, 29)), "2032-02-29T00:00:00Z");
  // 2100 is not a leap year: eight years between two Feb 29.
  EXPECT_EQ(NextIso(c, Utc(2096, 3, 1)), "2104-02-29T00:00:00Z");
  // In a zone: midnight CET is 23:00 UTC the day before.
  EXPECT_EQ(NextIso(Cron("0 0 29 2 *", "Europe/Paris"), Utc(2027, 1, 1)), "2028-02-28T23:00:00Z");
}

TEST(RareDates, ImpossibleDatesNeverTick) {
  EXPECT_EQ(NextIso(Cron("0 0 30 2 *"), Utc(2026, 1, 1)), "none");
  EXPECT_EQ(NextIso(Cron("0 0 31 4,6,9,11 *", "Europe/Paris"), Utc(2026, 1, 1)), "none");
  EXPECT_THAT(Cron("0 0 30 2 *").Between(Utc(2026, 1, 1), Utc(2040, 1, 1), 10), IsEmpty());
  // With a day of the week OR-ed in, the Mondays of April still match.
  EXPECT_EQ(NextIso(Cron("0 0 31 4 MON"), Utc(2026, 1, 1)), "2026-04-06T00:00:00Z");
}

TEST(RareDates, Day31SkipsShortMonths) {
  EXPECT_THAT(BetweenIso(Cron("0 12 31 * *"), Utc(2026, 1, 1), Utc(2026, 6, 1)),
              ElementsAre("2026-01-31T12:00:00Z", "2026-03-31T12:00:00Z", "2026-05-31T12:00:00Z"));
}

TEST(RareDates, TheUtcShortcutAgreesWithTheZoneDatabase) {
  for (const char* expression : {"*/7 3-5 * * *", "0 0 29 2 *", "15 10 13 * FRI"}) {
    EXPECT_EQ(Cron(expression).Between(Utc(2026, 1, 1), Utc(2029, 1, 1), 500),
              Cron(expression, "Etc/UTC").Between(Utc(2026, 1, 1), Utc(2029, 1, 1), 500))
        << expression;
  }
}

// --- daylight-saving time: Europe/Paris -----------------------------------------------------
// 2026-03-29: 02:00 CET (01:00 UTC) -> 03:00 CEST. 2026-10-25: 03:00 CEST (01:00 UTC) -> 02:00
// CET, so 02:00-02:59 happens at 00:xx UTC and again at 01:xx UTC.

TEST(DstParis, NightlyAt2FiresAtTheEndOfTheSpringGap) {
  // The example: every night at 02:00 in Paris.
  const Calendar c = Cron("0 2 * * *", "Europe/Paris");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 3, 27, 12), Utc(2026, 3, 31)),
              ElementsAre("2026-03-28T01:00:00Z",    // 02:00 CET
                          "2026-03-29T01:00:00Z",    // 02:00 does not exist: 03:00 CEST
                          "2026-03-30T00:00:00Z",    // 02:00 CEST
                          "2026-03-31T00:00:00Z"));  // 02:00 CEST
}

TEST(DstParis, NightlyAt2FiresOnceWhenTheHourRepeats) {
  const Calendar c = Cron("0 2 * * *", "Europe/Paris");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 10, 23, 12), Utc(2026, 10, 27)),
              ElementsAre("2026-10-24T00:00:00Z",    // 02:00 CEST
                          "2026-10-25T00:00:00Z",    // 02:00 CEST, the first of two
                          "2026-10-26T01:00:00Z"));  // 02:00 CET
  EXPECT_EQ(NextIso(c, Utc(2026, 10, 25)), "2026-10-26T01:00:00Z");
}

TEST(DstParis, FixedTimeInTheGapFiresOnceAtTheGapEnd) {
  const Calendar c = Cron("30 2 * * *", "Europe/Paris");
  EXPECT_EQ(NextIso(c, Utc(2026, 3, 28, 12)), "2026-03-29T01:00:00Z");
  EXPECT_EQ(NextIso(c, Utc(2026, 3, 29, 1)), "2026-03-30T00:30:00Z");
  // Every minute of the gap matches: still one tick.
  EXPECT_THAT(BetweenIso(Cron("*/15 2 * * *", "Europe/Paris"), Utc(2026, 3, 28, 23),
                         Utc(2026, 3, 29, 23)),
              ElementsAre("2026-03-29T01:00:00Z"));
  // A step restricts the hour too: 02:00 moves to 03:00 CEST, then 04:00 CEST as usual.
  EXPECT_THAT(BetweenIso(Cron("0 */2 * * *", "Europe/Paris"), Utc(2026, 3, 28, 22, 30),
                         Utc(2026, 3, 29, 2)),
              ElementsAre("2026-03-28T23:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"));
}

TEST(DstParis, AGapTickThatMeetsARegularTickIsOneTick) {
  const Calendar c = Cron("0 2,3 * * *", "Europe/Paris");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 3, 27, 12), Utc(2026, 3, 30, 12)),
              ElementsAre("2026-03-28T01:00:00Z", "2026-03-28T02:00:00Z",
                          "2026-03-29T01:00:00Z",  // 02:00 (gap) and 03:00 CEST
                          "2026-03-30T00:00:00Z", "2026-03-30T01:00:00Z"));
}

TEST(DstParis, FrequentJobsSkipTheMissingMinutes) {
  EXPECT_THAT(BetweenIso(Cron("*/15 * * * *", "Europe/Paris"), Utc(2026, 3, 29, 0, 30),
                         Utc(2026, 3, 29, 1, 30)),
              ElementsAre("2026-03-29T00:45:00Z",    // 01:45 CET
                          "2026-03-29T01:00:00Z",    // 03:00 CEST
                          "2026-03-29T01:15:00Z", "2026-03-29T01:30:00Z"));
  EXPECT_THAT(BetweenIso(Cron("0 * * * *", "Europe/Paris"), Utc(2026, 3, 28, 23, 30),
                         Utc(2026, 3, 29, 2, 30)),
              ElementsAre("2026-03-29T00:00:00Z",    // 01:00 CET
                          "2026-03-29T01:00:00Z",    // 03:00 CEST
                          "2026-03-29T02:00:00Z"));  // 04:00 CEST
}

TEST(DstParis, FixedTimeInTheRepeatedHourFiresAtTheFirstOccurrence) {
  const Calendar c = Cron("30 2 * * *", "Europe/Paris");
  EXPECT_EQ(NextIso(c, Utc(2026, 10, 24, 12)), "2026-10-25T00:30:00Z");
  EXPECT_EQ(NextIso(c, Utc(2026, 10, 25, 0, 30)), "2026-10-26T01:30:00Z");
  // From inside the second 02:xx: the first 02:30 has passed, the second does not count.
  EXPECT_EQ(NextIso(c, Utc(2026, 10, 25, 1, 10)), "2026-10-26T01:30:00Z");
  // From inside the first 02:xx.
  EXPECT_EQ(NextIso(c, Utc(2026, 10, 25, 0, 10)), "2026-10-25T00:30:00Z");
}

TEST(DstParis, FrequentJobsFireAtBothOccurrencesOfTheRepeatedHour) {
  EXPECT_THAT(BetweenIso(Cron("*/15 * * * *", "Europe/Paris"), Utc(2026, 10, 24, 23, 45),
                         Utc(2026, 10, 25, 1, 45)),
              ElementsAre("2026-10-25T00:00:00Z", "2026-10-25T00:15:00Z", "2026-10-25T00:30:00Z",
                          "2026-10-25T00:45:00Z",  // 02:xx CEST
                          "2026-10-25T01:00:00Z", "2026-10-25T01:15:00Z", "2026-10-25T01:30:00Z",
                          "2026-10-25T01:45:00Z"));  // 02:xx CET
  EXPECT_THAT(BetweenIso(Cron("0 * * * *", "Europe/Paris"), Utc(2026, 10, 24, 23, 30),
                         Utc(2026, 10, 25, 2, 30)),
              ElementsAre("2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"));
  // From inside the second occurrence, the next minute is still in it.
  EXPECT_EQ(NextIso(Cron("30 * * * *", "Europe/Paris"), Utc(2026, 10, 25, 1, 10)),
            "2026-10-25T01:30:00Z");
}

// --- daylight-saving time: America/New_York -------------------------------------------------
// 2026-03-08: 02:00 EST (07:00 UTC) -> 03:00 EDT. 2026-11-01: 02:00 EDT (06:00 UTC) -> 01:00
// EST, so 01:00-01:59 happens at 05:xx UTC and again at 06:xx UTC.

TEST(DstNewYork, FixedTimeInTheSpringGapFiresAtTheGapEnd) {
  const Calendar c = Cron("30 2 * * *", "America/New_York");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 3, 7), Utc(2026, 3, 10)),
              ElementsAre("2026-03-07T07:30:00Z",    // 02:30 EST
                          "2026-03-08T07:00:00Z",    // 03:00 EDT
                          "2026-03-09T06:30:00Z"));  // 02:30 EDT
}

TEST(DstNewYork, FixedTimeInTheRepeatedHourFiresOnce) {
  const Calendar c = Cron("30 1 * * *", "America/New_York");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 10, 31), Utc(2026, 11, 3)),
              ElementsAre("2026-10-31T05:30:00Z",    // 01:30 EDT
                          "2026-11-01T05:30:00Z",    // 01:30 EDT, the first of two
                          "2026-11-02T06:30:00Z"));  // 01:30 EST
}

TEST(DstNewYork, FrequentJobsFollowElapsedTime) {
  const Calendar c = Cron("*/30 * * * *", "America/New_York");
  EXPECT_THAT(BetweenIso(c, Utc(2026, 3, 8, 6, 15), Utc(2026, 3, 8, 7, 45)),
              ElementsAre("2026-03-08T06:30:00Z",    // 01:30 EST
                          "2026-03-08T07:00:00Z",    // 03:00 EDT
                          "2026-03-08T07:30:00Z"));
  EXPECT_THAT(BetweenIso(c, Utc(2026, 11, 1, 4, 45), Utc(2026, 11, 1, 7, 15)),
              ElementsAre("2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z",  // 01:xx EDT
                          "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z",  // 01:xx EST
                          "2026-11-01T07:00:00Z"));                        // 02:00 EST
}

TEST(DstNewYork, WeekdayJobsKeepTheirLocalTimeAcrossTheChange) {
  // 09:00 on weekdays: 14:00 UTC in winter, 13:00 UTC in summer.
  const Calendar c = Cron("0 9 * * MON-FRI", "America/New_York");
  EXPECT_EQ(NextIso(c, Utc(2026, 3, 6, 15)), "2026-03-09T13:00:00Z");
  EXPECT_EQ(NextIso(c, Utc(2026, 3, 5, 15)), "2026-03-06T14:00:00Z");
}

// --- after 2037 -----------------------------------------------------------------------------
// The zone files list transitions up to 2037; the rule in their footer continues them.

TEST(DstAfter2037, ParisKeepsChangingClocks) {
  const Calendar c = Cron("0 2 * * *", "Europe/Paris");
  // 2038-03-28 and 2038-10-31 are the last Sundays of March and October.
  EXPECT_THAT(BetweenIso(c, Utc(2038, 3, 26, 12), Utc(2038, 3, 29, 12)),
              ElementsAre("2038-03-27T01:00:00Z", "2038-03-28T01:00:00Z", "2038-03-29T00:00:00Z"));
  EXPECT_EQ(NextIso(c, Utc(2038, 6, 30, 12)), "2038-07-01T00:00:00Z");
  EXPECT_THAT(BetweenIso(c, Utc(2038, 10, 30, 12), Utc(2038, 11, 1, 12)),
              ElementsAre("2038-10-31T00:00:00Z", "2038-11-01T01:00:00Z"));
  EXPECT_EQ(NextIso(c, Utc(2100, 6, 30, 12)), "2100-07-01T00:00:00Z");
  EXPECT_EQ(NextIso(c, Utc(2100, 12, 1)), "2100-12-01T01:00:00Z");
  EXPECT_THAT(BetweenIso(Cron("*/30 * * * *", "Europe/Paris"), Utc(2040, 10, 28, 0, 15),
                         Utc(2040, 10, 28, 1, 45)),
              ElementsAre("2040-10-28T00:30:00Z", "2040-10-28T01:00:00Z", "2040-10-28T01:30:00Z"));
}

TEST(DstAfter2037, NewYorkKeepsChangingClocks) {
  // 2040-03-11 and 2040-11-04: second Sunday of March, first Sunday of November.
  const Calendar c = Cron("30 2 * * *", "America/New_York");
  EXPECT_THAT(BetweenIso(c, Utc(2040, 3, 10), Utc(2040, 3, 13)),
              ElementsAre("2040-03-10T07:30:00Z", "2040-03-11T07:00:00Z", "2040-03-12T06:30:00Z"));
  EXPECT_THAT(BetweenIso(Cron("30 1 * * *", "America/New_York"), Utc(2040, 11, 3),
                         Utc(2040, 11, 6)),
              ElementsAre("2040-11-03T05:30:00Z", "2040-11-04T05:30:00Z", "2040-11-05T06:30:00Z"));
}

TEST(DstAfter2037, ZonesWithoutDaylightTimeKeepTheirOffset) {
  EXPECT_EQ(NextIso(Cron("0 9 * * *", "Asia/Tokyo"), Utc(2050, 7, 1)), "2050-07-02T00:00:00Z");
}

TEST(Dst, TicksAreStrictlyIncreasingAcrossEveryTransition) {
  for (const char* zone : {"Europe/Paris", "America/New_York", "Australia/Lord_Howe"}) {
    for (const char* expression : {"*/7 * * * *", "*/15 2 * * *", "30 1,2,3 * * *", "0 */2 * * *",
                                   "59 23 * * *", "0 0 * * SUN"}) {
      SCOPED_TRACE(std::string(expression) + " in " + zone);
      const Calendar c = Cron(expression, zone);
      ExpectStrictlyIncreasing(c, Utc(2026, 3, 7), Utc(2026, 4, 6));
      ExpectStrictlyIncreasing(c, Utc(2026, 10, 3), Utc(2026, 11, 3));
      ExpectStrictlyIncreasing(c, Utc(2037, 9, 20), Utc(2038, 4, 20));
      ExpectStrictlyIncreasing(c, Utc(2041, 9, 20), Utc(2042, 4, 20));
      const auto between = c.Between(Utc(2026, 10, 3), Utc(2026, 11, 3), 100000);
      for (std::size_t i = 1; i < between.size(); ++i) ASSERT_LT(between[i - 1], between[i]);
    }
  }
}

}  // namespace
}  // namespace kbus::schedules
