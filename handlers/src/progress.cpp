#include "kbus/handlers/progress.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "kbus/json.hpp"

namespace kbus::handlers {

namespace {

// The longest stderr line the ffmpeg format looks at: the Duration line is about 70 bytes, and
// a longer line is not it.
constexpr std::size_t kMaxStderrLine = 256;
constexpr std::size_t kMaxSpeed = 16;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Up to `max` leading digits of `s` as a number, consumed; nullopt when there are none, or more.
std::optional<std::int64_t> TakeDigits(std::string_view& s, std::size_t min, std::size_t max) {
  std::size_t n = 0;
  while (n < s.size() && IsDigit(s[n])) ++n;
  if (n < min || n > max) return std::nullopt;
  std::int64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = v * 10 + (s[i] - '0');
  s.remove_prefix(n);
  return v;
}

// "[-]H:MM:SS[.fraction]", as ffmpeg writes a time (hours of any width up to 9 digits), in
// microseconds.
std::optional<std::int64_t> ParseClock(std::string_view s) {
  const bool negative = !s.empty() && s.front() == '-';
  if (negative) s.remove_prefix(1);
  const auto hours = TakeDigits(s, 1, 9);
  if (!hours || s.empty() || s.front() != ':') return std::nullopt;
  s.remove_prefix(1);
  const auto minutes = TakeDigits(s, 2, 2);
  if (!minutes || *minutes >= 60 || s.empty() || s.front() != ':') return std::nullopt;
  s.remove_prefix(1);
  const auto seconds = TakeDigits(s, 2, 2);
  if (!seconds || *seconds >= 60) return std::nullopt;
  std::int64_t micros = 0;
  if (!s.empty() && s.front() == '.') {
    s.remove_prefix(1);
    std::size_t n = 0;
    std::int64_t scale = 100000;
    for (; n < s.size() && IsDigit(s[n]); ++n) {
      if (n < 6) {
        micros += (s[n] - '0') * scale;
        scale /= 10;
      }
    }
    if (n == 0 || n > 9) return std::nullopt;
    s.remove_prefix(n);
  }
  if (!s.empty()) return std::nullopt;
  const std::int64_t us = ((*hours * 60 + *minutes) * 60 + *seconds) * 1000000 + micros;
  return negative ? -us : us;
}

// "[-]digits" as a 64-bit integer; nullopt for "N/A", garbage or an overflow.
std::optional<std::int64_t> ParseInteger(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// "35.9x", as ffmpeg writes a speed; anything else (N/A, garbage) is not shown, nor is "0x",
// which ffmpeg writes before it has measured one.
bool IsSpeed(std::string_view s) {
  if (s.empty() || s.size() > kMaxSpeed || s.back() != 'x') return false;
  s.remove_suffix(1);
  return std::all_of(s.begin(), s.end(), [](char c) { return IsDigit(c) || c == '.' || c == 'e' || c == '+'; }) &&
         std::any_of(s.begin(), s.end(), [](char c) { return c >= '1' && c <= '9'; });
}

std::string Clock(std::int64_t us) {
  const long long s = std::max<std::int64_t>(us, 0) / 1000000;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

}  // namespace

std::optional<Progress> ParseProgressLine(std::string_view line) {
  constexpr std::string_view kPrefix = "progress:";
  line = Trim(line);
  if (line.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  line = Trim(line.substr(kPrefix.size()));
  std::size_t digits = 0;
  while (digits < line.size() && digits < 4 && IsDigit(line[digits])) ++digits;
  if (digits == 0 || (digits < line.size() && !IsSpace(line[digits]))) return std::nullopt;
  int percent = -1;
  std::from_chars(line.data(), line.data() + digits, percent);
  if (percent < 0 || percent > 100) return std::nullopt;
  Progress p;
  p.percent = percent;
  p.message = std::string(Trim(line.substr(digits)));
  return p;
}

bool IsResultLine(std::string_view line) {
  constexpr std::string_view kWord = "kbus-result";
  line = Trim(line);
  if (line.substr(0, kWord.size()) != kWord) return false;
  return line.size() == kWord.size() || IsSpace(line[kWord.size()]);
}

std::optional<Result<std::string>> ParseResultLine(std::string_view line, std::size_t max_bytes) {
  if (!IsResultLine(line)) return std::nullopt;
  line = Trim(Trim(line).substr(std::string_view("kbus-result").size()));
  if (line.empty()) return Result<std::string>(Error(ErrorCode::kInvalidArgument, "the result line has no JSON"));
  if (line.size() > max_bytes) {
    return Result<std::string>(Error(ErrorCode::kInvalidArgument,
                                     "the result is " + std::to_string(line.size()) + " bytes, more than the " +
                                         std::to_string(max_bytes) + " allowed"));
  }
  if (Status s = ValidateJson(line); !s.ok()) {
    return Result<std::string>(
        Error(ErrorCode::kInvalidArgument, "the result is not one JSON value: " + s.error().message()));
  }
  return Result<std::string>(std::string(line));
}

std::optional<ProgressFormat> ProgressFormatNamed(std::string_view name) {
  if (name == "kbus") return ProgressFormat::kKbus;
  if (name == "ffmpeg") return ProgressFormat::kFfmpeg;
  return std::nullopt;
}

std::string_view ProgressFormatName(ProgressFormat format) {
  switch (format) {
    case ProgressFormat::kKbus: return "kbus";
    case ProgressFormat::kFfmpeg: return "ffmpeg";
  }
  return "kbus";
}

std::optional<Progress> ProgressReader::StdoutLine(std::string_view line) {
  if (format_ == ProgressFormat::kKbus) return ParseProgressLine(line);
  line = Trim(line);
  const auto eq = line.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  const std::string_view key = line.substr(0, eq);
  const std::string_view value = Trim(line.substr(eq + 1));
  // out_time_ms holds microseconds too (an old ffmpeg mistake, kept for compatibility); out_time
  // is the same as a clock, for an ffmpeg that writes only that.
  if (key == "out_time_us" || key == "out_time_ms") {
    if (auto us = ParseInteger(value)) out_time_us_ = *us;
  } else if (key == "out_time") {
    if (!out_time_us_) {
      if (auto us = ParseClock(value)) out_time_us_ = *us;
    }
  } else if (key == "speed") {
    speed_ = IsSpeed(value) ? std::string(value) : std::string();
  } else if (key == "progress") {
    return EndOfBlock(value == "end");
  }
  return std::nullopt;
}

std::optional<Progress> ProgressReader::EndOfBlock(bool end) {
  std::optional<Progress> report;
  const std::int64_t total = duration_.count();
  if (!ended_ && total > 0 && (end || out_time_us_)) {
    int percent = 100;
    if (!end) {
      // Clamped to 99 until ffmpeg says it is done: out_time can pass the container's duration.
      const double share = static_cast<double>(std::max<std::int64_t>(*out_time_us_, 0)) * 100.0 /
                           static_cast<double>(total);
      percent = static_cast<int>(std::min(99.0, std::floor(share)));
    }
    if (percent > last_percent_) {
      last_percent_ = percent;
      Progress p;
      p.percent = percent;
      if (end) {
        p.message = "done";
      } else {
        p.message = Clock(*out_time_us_) + " of " + Clock(total);
        if (!speed_.empty()) p.message += " at " + speed_;
      }
      report = std::move(p);
    }
  }
  ended_ = ended_ || end;
  out_time_us_.reset();
  speed_.clear();
  return report;
}

void ProgressReader::Stderr(std::string_view data) {
  if (format_ != ProgressFormat::kFfmpeg || duration_read_) return;
  for (char c : data) {
    if (c == '\n' || c == '\r') {
      if (!stderr_line_too_long_) StderrLine(stderr_line_);
      stderr_line_.clear();
      stderr_line_too_long_ = false;
      if (duration_read_) return;
    } else if (stderr_line_.size() < kMaxStderrLine) {
      stderr_line_.push_back(c);
    } else {
      stderr_line_too_long_ = true;
    }
  }
}

void ProgressReader::StderrLine(std::string_view line) {
  // "  Duration: 00:00:04.00, start: 0.000000, bitrate: 42 kb/s", in the description of input
  // #0, which ffmpeg prints before anything else of its inputs. The first one decides.
  constexpr std::string_view kKey = "Duration:";
  line = Trim(line);
  if (line.substr(0, kKey.size()) != kKey) return;
  duration_read_ = true;
  line.remove_prefix(kKey.size());
  line = Trim(line.substr(0, line.find(',')));
  const auto us = ParseClock(line);  // "N/A" (a live stream) does not parse: no percent
  if (us && *us > 0) duration_ = std::chrono::microseconds(*us);
  stderr_line_.clear();
  stderr_line_.shrink_to_fit();
}

}  // namespace kbus::handlers
