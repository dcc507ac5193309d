#pragma once
// The footer of a TZif file: a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3") stating the rule
// that continues a zone after the last transition the file lists. date's reader of the system
// database (USE_OS_TZDB) ignores it, so on its own it would keep a zone's last offset forever
// after 2037; calendar.cpp continues the zone with this rule instead. Private to kbus_schedules.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kbus::schedules::detail {

struct PosixTz {
  // A day of the year: 'M' (month, week 1-5 where 5 is the last, weekday 0-6 with 0 Sunday),
  // 'J' (day 1-365, Feb 29 never counted) or 'n' (day 0-365, Feb 29 counted in leap years);
  // `time` is local time of day, -167h to +167h.
  struct DateRule {
    char kind = 'M';
    int month = 0;
    int week = 0;
    int weekday = 0;
    int day = 0;
    std::chrono::seconds time{7200};
  };

  std::chrono::seconds std_offset{0};  // east of UTC: +3600 for "CET-1"
  bool has_dst = false;
  std::chrono::seconds dst_offset{0};
  DateRule start;  // read in standard time: the zone moves to dst_offset
  DateRule end;    // read in daylight time: the zone moves back to std_offset
};

struct Transition {
  std::chrono::sys_seconds at;
  std::chrono::seconds offset;  // from `at` on
};

// nullopt when `text` is not a POSIX TZ string this reader understands.
std::optional<PosixTz> ParsePosixTz(std::string_view text);

// The footer of the TZif (version 2 or later) file at `path`; nullopt when the file cannot be
// read, is version 1, or its footer is empty or not understood.
std::optional<PosixTz> ReadTzifFooter(const std::string& path);

// The two transitions `tz` makes in `year`, oldest first; none without daylight time.
std::vector<Transition> TransitionsIn(const PosixTz& tz, int year);

}  // namespace kbus::schedules::detail
