#pragma once
// kbus::schedules::Calendar: when a recurring schedule fires. A cron expression read in a time
// zone, or a fixed interval. Pure computation: no clock, no broker, no threads.
//
// Cron syntax: five fields, `minute hour day-of-month month day-of-week`, separated by spaces.
//   field          values   names
//   minute         0-59
//   hour           0-23
//   day-of-month   1-31
//   month          1-12     JAN-DEC (any case)
//   day-of-week    0-7      SUN-SAT (any case); 0 and 7 are both Sunday
// Each field is a comma-separated list of items; an item is `*`, `N`, `a-b`, `*/n`, `a-b/n` or
// `N/n` (N to the end of the range, every n). A range must not run backwards: write `22-23,0-3`,
// not `22-3`. Macros: @yearly and @annually (`0 0 1 1 *`), @monthly (`0 0 1 * *`), @weekly
// (`0 0 * * 0`), @daily and @midnight (`0 0 * * *`), @hourly (`0 * * * *`).
//
// A field is "unrestricted" when it covers its whole range (`*`, `*/1`, `0-23`, `0-7`...);
// anything else, `*/2` included, restricts it. Days: when both day-of-month and day-of-week
// are restricted a day matches if EITHER matches (classic cron: `0 0 13 * FRI` fires on every
// 13th and every Friday); when one of them is unrestricted only the other one counts.
// Cron ticks are whole minutes (second 0) of local time.
//
// Daylight-saving time. A tick is a local wall-clock time matching the fields, converted to
// an instant in the zone:
// - Gap (clocks spring forward; Europe/Paris 2026-03-29 02:00 -> 03:00): local times in the
//   gap do not exist. If the hour field is restricted (a fixed-time job such as `30 2 * * *`),
//   the job fires once at the instant the gap ends (03:00 CEST = 01:00 UTC), however many of
//   its times fell in the gap. If the hour field is unrestricted (`*/15 * * * *`), the minutes
//   that do not exist simply do not happen: no burst, no catch-up.
// - Repeat (clocks fall back; Europe/Paris 2026-10-25 03:00 -> 02:00, 02:00-02:59 happens
//   twice): a fixed-time job (hour restricted) fires once, at the first occurrence; a job
//   whose hour field is unrestricted fires at both occurrences, as it follows elapsed time.
// - Two ticks are never equal: a gap tick that coincides with a regular one (`0 2,3 * * *`
//   at 03:00 CEST) is one tick.
//
// Errors are kInvalidArgument with a message naming the field and the remedy, e.g.
// "cron: field 2 (hour): 25 is out of range 0-23", "cron: expected 5 fields (minute hour
// day-of-month month day-of-week), got 4", "time_zone: unknown time zone 'Europe/Pari' ...".
// A zone other than "UTC" needs the system's time zone database (/usr/share/zoneinfo, Debian's
// tzdata); "UTC" works without it. Zone files list transitions up to 2037; after the last one a
// zone follows the rule in the file's footer (the POSIX TZ string), so Europe/Paris keeps
// changing clocks on the last Sundays of March and October in 2038 and later.
//
// Thread safety: a Calendar is immutable once built; copies share their parsed state, and
// every const member may be called from any number of threads at once.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kbus/result.hpp"

namespace kbus::schedules {

// An instant, in milliseconds since the Unix epoch (UTC, leap seconds not counted).
using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

// When a recurring schedule fires: a copyable value.
class Calendar {
 public:
  enum class Kind { kCron, kInterval };

  // A cron calendar read in `time_zone` (an IANA name such as "Europe/Paris"; default "UTC").
  // Errors: kInvalidArgument naming the field or the zone; kInternal when a zone is asked for
  // and the system time zone database cannot be read (install tzdata).
  static Result<Calendar> Cron(std::string_view expression, std::string_view time_zone = "UTC");

  // Ticks at anchor + k * every for every integer k, negative ones included, so the phase is
  // fixed by `anchor` whatever instant a scheduler starts at. Errors: kInvalidArgument when
  // `every` is shorter than one second.
  static Result<Calendar> Every(std::chrono::milliseconds every, TimePoint anchor = TimePoint{});

  // The first tick strictly after `after`, or nullopt when there is none. A cron calendar
  // whose fields can never match (`0 0 30 2 *`) answers nullopt at once; otherwise the search
  // looks at most 10 years ahead, which always finds a match (Feb 29 recurs within 8 years,
  // 2096 -> 2104). Instants past year 9999 have no tick. Successive calls Next(Next(t)) are
  // strictly increasing.
  std::optional<TimePoint> Next(TimePoint after) const;

  // The ticks in (from, to], oldest first, at most `limit` of them.
  std::vector<TimePoint> Between(TimePoint from, TimePoint to, std::size_t limit) const;

  Kind kind() const;
  // The cron expression as given, blanks collapsed to one space (a macro stays a macro); for
  // an interval, the period such as "1h30m".
  std::string expression() const;
  // The zone name as given; "UTC" for an interval.
  std::string time_zone() const;
  // Interval calendars only (zero and the epoch for cron calendars).
  std::chrono::milliseconds every() const;
  TimePoint anchor() const;

  // For people and logs: "cron '0 2 * * *' in Europe/Paris", "every 1m",
  // "every 1h from 2026-03-29T00:30:00Z".
  std::string Describe() const;

  // Same kind, expression, zone, period and anchor.
  friend bool operator==(const Calendar& a, const Calendar& b);

 private:
  struct Impl;
  explicit Calendar(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

  std::shared_ptr<const Impl> impl_;  // never null; shared by copies, immutable
};

}  // namespace kbus::schedules
