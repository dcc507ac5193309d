#include "posix_tz.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>

namespace kbus::schedules::detail {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

// Reads from a string_view, consuming what it recognises.
class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  bool done() const { return pos_ == text_.size(); }
  char peek() const { return done() ? '\0' : text_[pos_]; }
  bool Take(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }

  // A zone abbreviation: "<+1030>" or three or more letters.
  bool Name() {
    if (Take('<')) {
      const std::size_t close = text_.find('>', pos_);
      if (close == std::string_view::npos || close == pos_) return false;
      pos_ = close + 1;
      return true;
    }
    std::size_t n = 0;
    while (IsAlpha(peek())) {
      ++pos_;
      ++n;
    }
    return n >= 3;
  }

  std::optional<int> Number(int max) {
    if (!IsDigit(peek())) return std::nullopt;
    int v = 0;
    while (IsDigit(peek())) {
      v = v * 10 + (text_[pos_++] - '0');
      if (v > max) return std::nullopt;
    }
    return v;
  }

  // [+-]hh[:mm[:ss]], hours up to `max_hours`.
  std::optional<seconds> Time(int max_hours) {
    int sign = 1;
    if (Take('-')) {
      sign = -1;
    } else {
      Take('+');
    }
    auto h = Number(max_hours);
    if (!h) return std::nullopt;
    seconds t = hours(*h);
    if (Take(':')) {
      auto m = Number(59);
      if (!m) return std::nullopt;
      t += minutes(*m);
      if (Take(':')) {
        auto s = Number(59);
        if (!s) return std::nullopt;
        t += seconds(*s);
      }
    }
    return sign * t;
  }

  std::optional<PosixTz::DateRule> Rule() {
    PosixTz::DateRule r;
    if (Take('M')) {
      r.kind = 'M';
      auto m = Number(12);
      if (!m || *m < 1 || !Take('.')) return std::nullopt;
      auto w = Number(5);
      if (!w || *w < 1 || !Take('.')) return std::nullopt;
      auto d = Number(6);
      if (!d) return std::nullopt;
      r.month = *m;
      r.week = *w;
      r.weekday = *d;
    } else if (Take('J')) {
      r.kind = 'J';
      auto n = Number(365);
      if (!n || *n < 1) return std::nullopt;
      r.day = *n;
    } else {
      r.kind = 'n';
      auto n = Number(365);
      if (!n) return std::nullopt;
      r.day = *n;
    }
    if (Take('/')) {
      auto t = Time(167);
      if (!t) return std::nullopt;
      r.time = *t;
    }
    return r;
  }

 private:
  static bool IsAlpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }

  std::string_view text_;
  std::size_t pos_ = 0;
};

std::chrono::sys_days DayOf(const PosixTz::DateRule& r, int year) {
  using namespace std::chrono;
  const std::chrono::year y{year};
  if (r.kind == 'M') {
    const month m{static_cast<unsigned>(r.month)};
    const weekday wd{static_cast<unsigned>(r.weekday)};
    if (r.week == 5) return sys_days{y / m / wd[last]};
    return sys_days{y / m / wd[static_cast<unsigned>(r.week)]};
  }
  const sys_days jan1{y / January / 1};
  if (r.kind == 'J') return jan1 + days(r.day - 1 + (y.is_leap() && r.day >= 60 ? 1 : 0));
  return jan1 + days(r.day);
}

}  // namespace

std::optional<PosixTz> ParsePosixTz(std::string_view text) {
  Reader in(text);
  PosixTz tz;
  if (!in.Name()) return std::nullopt;
  auto std_posix = in.Time(24);  // POSIX offsets count west of UTC
  if (!std_posix) return std::nullopt;
  tz.std_offset = -*std_posix;
  if (in.done()) return tz;
  if (!in.Name()) return std::nullopt;
  tz.has_dst = true;
  tz.dst_offset = tz.std_offset + hours(1);
  if (in.peek() != ',') {
    auto dst_posix = in.Time(24);
    if (!dst_posix) return std::nullopt;
    tz.dst_offset = -*dst_posix;
  }
  // Footers always spell the rules out; POSIX's implementation-defined default is not guessed.
  if (!in.Take(',')) return std::nullopt;
  auto start = in.Rule();
  if (!start || !in.Take(',')) return std::nullopt;
  auto end = in.Rule();
  if (!end || !in.done()) return std::nullopt;
  tz.start = *start;
  tz.end = *end;
  return tz;
}

std::optional<PosixTz> ReadTzifFooter(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::nullopt;
  const std::string data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  // Magic "TZif", then the version: '\0' is version 1, which has no footer.
  if (data.size() < 6 || data.compare(0, 4, "TZif") != 0 || data[4] == '\0') return std::nullopt;
  if (data.back() != '\n') return std::nullopt;
  const std::size_t open = data.rfind('\n', data.size() - 2);
  if (open == std::string::npos) return std::nullopt;
  return ParsePosixTz(std::string_view(data).substr(open + 1, data.size() - open - 2));
}

std::vector<Transition> TransitionsIn(const PosixTz& tz, int year) {
  if (!tz.has_dst) return {};
  // Rule times are local: the start is read in standard time, the end in daylight time.
  const std::chrono::sys_seconds start = DayOf(tz.start, year) + tz.start.time - tz.std_offset;
  const std::chrono::sys_seconds end = DayOf(tz.end, year) + tz.end.time - tz.dst_offset;
  std::vector<Transition> out = {{start, tz.dst_offset}, {end, tz.std_offset}};
  std::sort(out.begin(), out.end(), [](const Transition& a, const Transition& b) { return a.at < b.at; });
  return out;
}

}  // namespace kbus::schedules::detail
