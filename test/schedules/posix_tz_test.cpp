// The TZif footer reader that continues zones after 2037 (private to kbus_schedules): its rules
// must reproduce the transitions the zone files list.

#include "posix_tz.hpp"

#include <date/tz.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace kbus::schedules::detail {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(PosixTz, ParsesOffsetsNamesAndRules) {
  auto paris = ParsePosixTz("CET-1CEST,M3.5.0,M10.5.0/3");
  ASSERT_TRUE(paris.has_value());
  EXPECT_EQ(paris->std_offset, hours(1));
  EXPECT_TRUE(paris->has_dst);
  EXPECT_EQ(paris->dst_offset, hours(2));
  EXPECT_EQ(paris->start.month, 3);
  EXPECT_EQ(paris->start.week, 5);
  EXPECT_EQ(paris->start.time, hours(2));
  EXPECT_EQ(paris->end.time, hours(3));

  auto chatham = ParsePosixTz("<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45");
  ASSERT_TRUE(chatham.has_value());
  EXPECT_EQ(chatham->std_offset, hours(12) + minutes(45));
  EXPECT_EQ(chatham->dst_offset, hours(13) + minutes(45));

  auto nuuk = ParsePosixTz("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
  ASSERT_TRUE(nuuk.has_value());
  EXPECT_EQ(nuuk->start.time, -hours(1));

  auto tokyo = ParsePosixTz("JST-9");
  ASSERT_TRUE(tokyo.has_value());
  EXPECT_FALSE(tokyo->has_dst);
  EXPECT_EQ(tokyo->std_offset, hours(9));

  auto julian = ParsePosixTz("XXX3YYY,J60/1,300");
  ASSERT_TRUE(julian.has_value());
  EXPECT_EQ(julian->start.kind, 'J');
  EXPECT_EQ(julian->end.kind, 'n');
}

TEST(PosixTz, RefusesWhatItDoesNotUnderstand) {
  for (const char* text : {"", "C-1", "CET", "CET-1CEST", "CET-1CEST,M3.5.0", "CET-1CEST,M13.1.0,M10.5.0",
                           "CET-1CEST,M3.6.0,M10.5.0", "CET-1CEST,M3.5.7,M10.5.0", "CET-1CEST,J0,J5",
                           "<+01-1", "CET-1CEST,M3.5.0,M10.5.0 trailing"}) {
    EXPECT_FALSE(ParsePosixTz(text).has_value()) << text;
  }
}

TEST(PosixTz, JulianDaysCountOrSkipFebruary29) {
  auto tz = ParsePosixTz("XXX0YYY,J60/0,59/0");  // J60 is always March 1; 59 is Feb 29 in leap years
  ASSERT_TRUE(tz.has_value());
  using namespace std::chrono;
  const auto leap = TransitionsIn(*tz, 2028);
  ASSERT_EQ(leap.size(), 2u);
  EXPECT_EQ(leap[0].at, sys_seconds{sys_days{2028y / February / 29}} - hours(1));  // end, in dst
  EXPECT_EQ(leap[1].at, sys_seconds{sys_days{2028y / March / 1}});
  const auto plain = TransitionsIn(*tz, 2027);
  EXPECT_EQ(plain[0].at, sys_seconds{sys_days{2027y / March / 1}} - hours(1));
  EXPECT_EQ(plain[1].at, sys_seconds{sys_days{2027y / March / 1}});
}

// For each zone, the footer's transitions for 2030-2037 are the ones date reads from the file.
TEST(PosixTz, FooterRulesReproduceTheListedTransitions) {
  for (const char* zone : {"Europe/Paris", "America/New_York", "Australia/Lord_Howe",
                           "Europe/Dublin", "America/Nuuk", "Asia/Jerusalem", "America/Santiago",
                           "Pacific/Chatham", "Australia/Sydney", "America/Havana"}) {
    SCOPED_TRACE(zone);
    const auto rule = ReadTzifFooter(std::string("/usr/share/zoneinfo/") + zone);
    ASSERT_TRUE(rule.has_value());
    ASSERT_TRUE(rule->has_dst);
    const date::time_zone* tz = date::locate_zone(zone);
    for (int year = 2030; year <= 2037; ++year) {
      for (const Transition& t : TransitionsIn(*rule, year)) {
        const date::sys_info info = tz->get_info(t.at);
        EXPECT_EQ(info.begin, t.at) << year;
        EXPECT_EQ(info.offset, t.offset) << year;
      }
    }
  }
}

TEST(PosixTz, UnreadableOrFooterlessFilesGiveNothing) {
  EXPECT_FALSE(ReadTzifFooter("/nonexistent/zone").has_value());
  EXPECT_FALSE(ReadTzifFooter("/etc/hostname").has_value());
}

}  // namespace
}  // namespace kbus::schedules::detail
