// Cron and interval calendars. The cron search walks local wall-clock time field by field
// (whole months, days and hours that cannot match are skipped in one step) inside each span of
// constant UTC offset of the zone, which is where the daylight-saving rules of calendar.hpp are
// applied: at a segment's start (gap or repeat) and nowhere else.

#include "kbus/schedules/calendar.hpp"

#include <date/date.h>
#include <date/tz.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <exception>
#include <string>

#include "posix_tz.hpp"

namespace kbus::schedules {
namespace {

using std::chrono::ceil;
using std::chrono::floor;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using LocalMinutes = date::local_time<minutes>;
using LocalMs = date::local_time<milliseconds>;

// Cron ticks exist from year 1 to year 9999; keeping to them keeps every conversion in range.
const TimePoint kMinInstant{date::sys_days{date::year{1} / 1 / 1}};
const TimePoint kMaxInstant{date::sys_days{date::year{10000} / 1 / 1}};
// How far Next() looks. A satisfiable expression matches within 8 years (Feb 29 skips 2100).
constexpr date::days kHorizon{3660};

constexpr std::array<std::string_view, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kDayNames = {"SUN", "MON", "TUE", "WED",
                                                       "THU", "FRI", "SAT"};

struct FieldSpec {
  int number;             // 1-based position, for messages
  std::string_view name;  // "hour"
  int min;
  int max;                // highest value accepted (7 for day-of-week)
  int star_max;           // where `*` and `N/n` end (6 for day-of-week: 7 is Sunday again)
  const std::string_view* names;  // names[i] is value min + i; null: numbers only
  std::size_t name_count;
  std::string_view name_hint;  // "JAN-DEC"
};

constexpr FieldSpec kFields[5] = {
    {1, "minute", 0, 59, 59, nullptr, 0, ""},
    {2, "hour", 0, 23, 23, nullptr, 0, ""},
    {3, "day-of-month", 1, 31, 31, nullptr, 0, ""},
    {4, "month", 1, 12, 12, kMonthNames.data(), kMonthNames.size(), "JAN-DEC"},
    {5, "day-of-week", 0, 7, 6, kDayNames.data(), kDayNames.size(), "SUN-SAT"},
};

// The parsed fields: bit v set when value v matches (day-of-week 7 folded onto 0).
struct CronFields {
  std::uint64_t minutes = 0;
  std::uint64_t hours = 0;
  std::uint64_t days_of_month = 0;
  std::uint64_t months = 0;
  std::uint64_t days_of_week = 0;
  bool hour_restricted = false;
  bool dom_restricted = false;
  bool dow_restricted = false;
  bool satisfiable = true;  // false: no date ever matches (`0 0 30 2 *`)
};

Error FieldError(const FieldSpec& spec, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument,
               "cron: field " + std::to_string(spec.number) + " (" + std::string(spec.name) +
                   "): " + what);
}

std::string Range(int lo, int hi) { return std::to_string(lo) + "-" + std::to_string(hi); }

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A plain decimal number; more than 4 digits is out of range for every field (and for int).
std::optional<int> ParseNumber(std::string_view s) {
  if (!AllDigits(s) || s.size() > 4) return std::nullopt;
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

Result<int> ParseValue(std::string_view token, const FieldSpec& spec) {
  if (AllDigits(token)) {
    auto v = ParseNumber(token);
    if (!v || *v < spec.min || *v > spec.max) {
      return FieldError(spec, std::string(token) + " is out of range " + Range(spec.min, spec.max));
    }
    return *v;
  }
  if (spec.names != nullptr && token.size() == 3) {
    for (std::size_t i = 0; i < spec.name_count; ++i) {
      const std::string_view name = spec.names[i];
      bool same = true;
      for (std::size_t k = 0; k < 3; ++k) {
        same = same && std::toupper(static_cast<unsigned char>(token[k])) == name[k];
      }
      if (same) return spec.min + static_cast<int>(i);
    }
  }
  std::string expected = "a number " + Range(spec.min, spec.max);
  if (spec.names != nullptr) expected += " or a name " + std::string(spec.name_hint);
  return FieldError(spec, "'" + std::string(token) + "' is not " + expected);
}

// One list item: `*`, `N`, `a-b`, `*/n`, `a-b/n` or `N/n`.
Status ParseItem(std::string_view item, const FieldSpec& spec, std::uint64_t& bits) {
  const std::size_t slash = item.find('/');
  const std::string_view range = item.substr(0, slash);
  int lo = 0;
  int hi = 0;
  if (range == "*") {
    lo = spec.min;
    hi = spec.star_max;
  } else if (const std::size_t dash = range.find('-'); dash != std::string_view::npos) {
    auto a = ParseValue(range.substr(0, dash), spec);
    if (!a) return a.error();
    auto b = ParseValue(range.substr(dash + 1), spec);
    if (!b) return b.error();
    lo = *a;
    hi = *b;
    if (lo > hi) {
      return FieldError(spec, "range " + std::string(range) + " runs backwards: write it as " +
                                  Range(lo, spec.star_max) + "," + Range(spec.min, hi));
    }
  } else {
    auto v = ParseValue(range, spec);
    if (!v) return v.error();
    lo = *v;
    hi = slash == std::string_view::npos ? lo : std::max(lo, spec.star_max);
  }
  int step = 1;
  if (slash != std::string_view::npos) {
    const std::string_view step_text = item.substr(slash + 1);
    const int max_step = spec.star_max - spec.min + 1;
    if (!AllDigits(step_text)) {
      return FieldError(spec, "step '" + std::string(step_text) + "' in '" + std::string(item) +
                                  "' is not a number " + Range(1, max_step));
    }
    const auto s = ParseNumber(step_text);
    if (!s || *s < 1 || *s > max_step) {
      return FieldError(spec, "step " + std::string(step_text) + " is out of range " +
                                  Range(1, max_step));
    }
    step = *s;
  }
  for (int v = lo; v <= hi; v += step) bits |= std::uint64_t{1} << (v == 7 && spec.max == 7 ? 0 : v);
  return Ok();
}

Result<std::uint64_t> ParseField(std::string_view text, const FieldSpec& spec) {
  std::uint64_t bits = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma - start);
    if (item.empty()) {
      return FieldError(spec, "empty item in list '" + std::string(text) + "'");
    }
    if (auto s = ParseItem(item, spec, bits); !s) return s.error();
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return bits;
}

std::uint64_t FullMask(const FieldSpec& spec) {
  std::uint64_t bits = 0;
  for (int v = spec.min; v <= spec.star_max; ++v) bits |= std::uint64_t{1} << v;
  return bits;
}

bool Has(std::uint64_t bits, unsigned v) { return v < 64 && ((bits >> v) & 1U) != 0; }

// Lowest set bit at or above `from`, or -1.
int NextBit(std::uint64_t bits, int from) {
  if (from >= 64) return -1;
  const std::uint64_t rest = bits >> from;
  if (rest == 0) return -1;
  return from + std::countr_zero(rest);
}

// Whether some allowed month has some allowed day of month; day-of-week alone (or OR-ed in)
// matches in every month, as every month has every weekday.
bool Satisfiable(const CronFields& f) {
  if (f.dow_restricted || !f.dom_restricted) return true;
  constexpr int kLongest[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  for (int m = 1; m <= 12; ++m) {
    if (!Has(f.months, static_cast<unsigned>(m))) continue;
    const int first_day = NextBit(f.days_of_month, 1);
    if (first_day != -1 && first_day <= kLongest[m]) return true;
  }
  return false;
}

bool DayMatches(const CronFields& f, date::local_days day) {
  const date::year_month_day ymd{day};
  const bool dom = Has(f.days_of_month, static_cast<unsigned>(ymd.day()));
  const bool dow = Has(f.days_of_week, date::weekday{day}.c_encoding());
  if (f.dom_restricted && f.dow_restricted) return dom || dow;
  return dom && dow;
}

// The first local minute L matching the fields with from <= L < limit.
std::optional<LocalMinutes> FindLocal(const CronFields& f, LocalMinutes from, LocalMinutes limit) {
  date::local_days day = floor<date::days>(from);
  int hour = static_cast<int>(floor<hours>(from - day).count());
  int minute = static_cast<int>((from - day - hours(hour)).count());
  while (true) {
    const LocalMinutes candidate = day + hours(hour) + minutes(minute);
    if (candidate >= limit) return std::nullopt;
    const date::year_month_day ymd{day};
    const unsigned month = static_cast<unsigned>(ymd.month());
    if (!Has(f.months, month)) {
      const int next = NextBit(f.months, static_cast<int>(month) + 1);
      const date::year year = next == -1 ? ymd.year() + date::years(1) : ymd.year();
      const int first = next == -1 ? NextBit(f.months, 1) : next;
      day = date::local_days{year / date::month(static_cast<unsigned>(first)) / 1};
      hour = minute = 0;
      continue;
    }
    if (!DayMatches(f, day)) {
      day += date::days(1);
      hour = minute = 0;
      continue;
    }
    const int h = NextBit(f.hours, hour);
    if (h == -1 || h > 23) {
      day += date::days(1);
      hour = minute = 0;
      continue;
    }
    if (h != hour) {
      hour = h;
      minute = 0;
    }
    const int m = NextBit(f.minutes, minute);
    if (m == -1 || m > 59) {
      if (++hour == 24) {
        day += date::days(1);
        hour = 0;
      }
      minute = 0;
      continue;
    }
    const LocalMinutes found = day + hours(hour) + minutes(m);
    if (found >= limit) return std::nullopt;
    return found;
  }
}

LocalMs ToLocal(TimePoint t, seconds offset) { return LocalMs{t.time_since_epoch() + offset}; }
LocalMinutes CeilMinute(LocalMs t) { return ceil<minutes>(t); }

// Where the system database keeps its zones; date's OS reader (USE_OS_TZDB) reads the same.
constexpr std::string_view kZoneDir = "/usr/share/zoneinfo/";

// A time zone: date's view of it, continued past the file's last transition by its footer.
struct Zone {
  const date::time_zone* tz = nullptr;  // null: UTC; owned by date's process-wide tzdb
  std::optional<detail::PosixTz> rule;  // set only when it has daylight time
  date::sys_seconds rule_from{};        // the last transition date knows of
};

// A span of constant UTC offset.
struct Segment {
  date::sys_seconds begin;
  date::sys_seconds end;
  seconds offset;
  std::optional<seconds> previous;  // the offset just before `begin`, if anything came before
};

const date::sys_seconds kMinSeconds = floor<seconds>(kMinInstant);

Segment SegmentAt(const Zone& zone, date::sys_seconds t) {
  const date::sys_info info = zone.tz->get_info(t);
  Segment s{info.begin, info.end, info.offset, std::nullopt};
  if (info.begin > kMinSeconds) s.previous = zone.tz->get_info(info.begin - seconds(1)).offset;
  if (!zone.rule || t < zone.rule_from) return s;
  // date knows nothing after rule_from: cut its last span with the transitions of the rule.
  std::vector<detail::Transition> transitions = {{zone.rule_from, info.offset}};
  const int year = static_cast<int>(date::year_month_day{floor<date::days>(t)}.year());
  for (int y = year - 1; y <= year + 1; ++y) {
    for (const detail::Transition& tr : detail::TransitionsIn(*zone.rule, y)) {
      if (tr.at > zone.rule_from) transitions.push_back(tr);
    }
  }
  std::size_t i = 0;
  while (i + 1 < transitions.size() && transitions[i + 1].at <= t) ++i;
  s.begin = transitions[i].at;
  s.offset = transitions[i].offset;
  if (i > 0) s.previous = transitions[i - 1].offset;
  if (i + 1 < transitions.size()) s.end = transitions[i + 1].at;
  return s;
}

// The DST rules of calendar.hpp, applied per span of constant offset ("segment").
std::optional<TimePoint> NextCron(const CronFields& f, const Zone& zone, TimePoint after) {
  if (!f.satisfiable || after >= kMaxInstant) return std::nullopt;
  after = std::max(after, kMinInstant);
  const TimePoint horizon = std::min(after + kHorizon, kMaxInstant);
  if (zone.tz == nullptr) {  // UTC: local time is the instant
    const LocalMinutes from{floor<minutes>(after.time_since_epoch()) + minutes(1)};
    const auto found = FindLocal(f, from, CeilMinute(ToLocal(horizon, seconds(0))));
    if (!found) return std::nullopt;
    return TimePoint{found->time_since_epoch()};
  }
  TimePoint t = after;
  bool first = true;
  while (t < horizon) {
    const Segment segment = SegmentAt(zone, floor<seconds>(t));
    const seconds offset = segment.offset;
    // begin/end may be the clock's extremes: compare before converting to milliseconds.
    const TimePoint end = segment.end >= floor<seconds>(horizon) ? horizon : TimePoint{segment.end};
    const TimePoint begin = segment.previous ? TimePoint{segment.begin} : kMinInstant;
    const std::optional<seconds> previous = segment.previous;

    LocalMinutes from = first ? LocalMinutes{floor<minutes>(ToLocal(after, offset)) + minutes(1)}
                              : CeilMinute(ToLocal(t, offset));
    if (f.hour_restricted && previous) {
      if (*previous < offset && begin > after) {
        // Gap: local times [begin + previous, begin + offset) do not exist.
        const auto in_gap = FindLocal(f, CeilMinute(ToLocal(begin, *previous)),
                                      CeilMinute(ToLocal(begin, offset)));
        if (in_gap) return begin;
      }
      if (*previous > offset) {
        // Repeat: local times before begin + previous already happened once.
        from = std::max(from, CeilMinute(ToLocal(begin, *previous)));
      }
    }
    if (const auto found = FindLocal(f, from, CeilMinute(ToLocal(end, offset)))) {
      return TimePoint{found->time_since_epoch() - offset};
    }
    t = end;
    first = false;
  }
  return std::nullopt;
}

std::optional<TimePoint> NextInterval(milliseconds every, TimePoint anchor, TimePoint after) {
  const std::int64_t e = every.count();
  std::int64_t diff = 0;
  if (__builtin_sub_overflow(after.time_since_epoch().count(), anchor.time_since_epoch().count(),
                             &diff)) {
    return std::nullopt;
  }
  std::int64_t k = diff / e;
  if (diff % e != 0 && diff < 0) --k;  // floor division
  std::int64_t offset = 0;
  std::int64_t next = 0;
  if (__builtin_mul_overflow(k + 1, e, &offset) ||
      __builtin_add_overflow(anchor.time_since_epoch().count(), offset, &next)) {
    return std::nullopt;
  }
  return TimePoint{milliseconds(next)};
}

// "1h30m", "90ms", "1d", "-5s".
std::string FormatPeriod(milliseconds period) {
  if (period.count() == 0) return "0s";
  std::string out = period.count() < 0 ? "-" : "";
  // Negative periods exist only in error messages; their magnitude fits comfortably.
  auto rest = period.count() < 0 ? -period : period;
  const std::pair<milliseconds, const char*> units[] = {
      {date::days(1), "d"}, {hours(1), "h"}, {minutes(1), "m"}, {seconds(1), "s"},
      {milliseconds(1), "ms"}};
  for (const auto& [unit, suffix] : units) {
    if (rest >= unit) {
      out += std::to_string(rest / unit) + suffix;
      rest %= unit;
    }
  }
  return out;
}

std::string FormatInstant(TimePoint t) {
  if (t.time_since_epoch() % seconds(1) == milliseconds(0)) {
    return date::format("%FT%TZ", floor<seconds>(t));
  }
  return date::format("%FT%TZ", t);
}

struct Macro {
  std::string_view name;
  std::string_view fields;
};
constexpr Macro kMacros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::vector<std::string_view> SplitBlanks(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && IsBlank(text[i])) ++i;
    const std::size_t start = i;
    while (i < text.size() && !IsBlank(text[i])) ++i;
    if (i > start) out.push_back(text.substr(start, i - start));
  }
  return out;
}

Result<CronFields> ParseCron(const std::vector<std::string_view>& fields) {
  if (fields.size() != 5) {
    return Error(ErrorCode::kInvalidArgument,
                 "cron: expected 5 fields (minute hour day-of-month month day-of-week), got " +
                     std::to_string(fields.size()));
  }
  std::uint64_t bits[5] = {};
  for (std::size_t i = 0; i < 5; ++i) {
    auto parsed = ParseField(fields[i], kFields[i]);
    if (!parsed) return parsed.error();
    bits[i] = *parsed;
  }
  CronFields f;
  f.minutes = bits[0];
  f.hours = bits[1];
  f.days_of_month = bits[2];
  f.months = bits[3];
  f.days_of_week = bits[4];
  f.hour_restricted = f.hours != FullMask(kFields[1]);
  f.dom_restricted = f.days_of_month != FullMask(kFields[2]);
  f.dow_restricted = f.days_of_week != FullMask(kFields[4]);
  f.satisfiable = Satisfiable(f);
  return f;
}

Result<Zone> LocateZone(std::string_view name) {
  if (name == "UTC") return Zone{};
  if (name.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "time_zone: empty: use an IANA zone name such as 'Europe/Paris' or 'UTC'");
  }
  try {
    (void)date::get_tzdb();
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal,
                 "time_zone: cannot read the time zone database in " + std::string(kZoneDir) +
                     " (" + e.what() + "): install tzdata, or use 'UTC'");
  }
  Zone zone;
  try {
    zone.tz = date::locate_zone(std::string(name));
  } catch (const std::exception&) {
    return Error(ErrorCode::kInvalidArgument,
                 "time_zone: unknown time zone '" + std::string(name) + "': use an IANA name from " +
                     std::string(kZoneDir) + " such as 'Europe/Paris'");
  }
  // The name is one date found in the database's own listing, so it is a path under kZoneDir.
  zone.rule = detail::ReadTzifFooter(std::string(kZoneDir) + std::string(name));
  if (zone.rule && !zone.rule->has_dst) zone.rule.reset();
  if (zone.rule) {
    zone.rule_from = zone.tz->get_info(floor<seconds>(kMaxInstant)).begin;
  }
  return zone;
}

}  // namespace

struct Calendar::Impl {
  Kind kind = Kind::kCron;
  std::string expression;
  std::string zone_name = "UTC";
  Zone zone;
  CronFields fields;
  milliseconds every{0};
  TimePoint anchor{};
};

Result<Calendar> Calendar::Cron(std::string_view expression, std::string_view time_zone) {
  const std::vector<std::string_view> words = SplitBlanks(expression);
  std::vector<std::string_view> fields = words;
  if (words.size() == 1 && words[0].front() == '@') {
    std::string lower(words[0]);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto macro = std::find_if(std::begin(kMacros), std::end(kMacros),
                                    [&](const Macro& m) { return m.name == lower; });
    if (macro == std::end(kMacros)) {
      return Error(ErrorCode::kInvalidArgument,
                   "cron: unknown macro '" + std::string(words[0]) +
                       "': use @yearly, @annually, @monthly, @weekly, @daily, @midnight or "
                       "@hourly");
    }
    fields = SplitBlanks(macro->fields);
  }
  auto parsed = ParseCron(fields);
  if (!parsed) return parsed.error();
  auto zone = LocateZone(time_zone);
  if (!zone) return zone.error();

  auto impl = std::make_shared<Impl>();
  impl->kind = Kind::kCron;
  for (std::string_view w : words) {
    if (!impl->expression.empty()) impl->expression += ' ';
    impl->expression += w;
  }
  impl->zone_name = std::string(time_zone);
  impl->zone = std::move(*zone);
  impl->fields = *parsed;
  return Calendar(std::move(impl));
}

Result<Calendar> Calendar::Every(milliseconds every, TimePoint anchor) {
  if (every < seconds(1)) {
    return Error(ErrorCode::kInvalidArgument,
                 "every: " + FormatPeriod(every) + " is shorter than the minimum of 1s");
  }
  auto impl = std::make_shared<Impl>();
  impl->kind = Kind::kInterval;
  impl->expression = FormatPeriod(every);
  impl->every = every;
  impl->anchor = anchor;
  return Calendar(std::move(impl));
}

std::optional<TimePoint> Calendar::Next(TimePoint after) const {
  if (impl_->kind == Kind::kInterval) return NextInterval(impl_->every, impl_->anchor, after);
  return NextCron(impl_->fields, impl_->zone, after);
}

std::vector<TimePoint> Calendar::Between(TimePoint from, TimePoint to, std::size_t limit) const {
  std::vector<TimePoint> out;
  std::optional<TimePoint> t = from;
  while (out.size() < limit && (t = Next(*t)) && *t <= to) out.push_back(*t);
  return out;
}

Calendar::Kind Calendar::kind() const { return impl_->kind; }
std::string Calendar::expression() const { return impl_->expression; }
std::string Calendar::time_zone() const { return impl_->zone_name; }
milliseconds Calendar::every() const { return impl_->every; }
TimePoint Calendar::anchor() const { return impl_->anchor; }

std::string Calendar::Describe() const {
  if (impl_->kind == Kind::kCron) {
    return "cron '" + impl_->expression + "' in " + impl_->zone_name;
  }
  std::string out = "every " + impl_->expression;
  if (impl_->anchor != TimePoint{}) out += " from " + FormatInstant(impl_->anchor);
  return out;
}

bool operator==(const Calendar& a, const Calendar& b) {
  const Calendar::Impl& x = *a.impl_;
  const Calendar::Impl& y = *b.impl_;
  return x.kind == y.kind && x.expression == y.expression && x.zone_name == y.zone_name &&
         x.every == y.every && x.anchor == y.anchor;
}

}  // namespace kbus::schedules
