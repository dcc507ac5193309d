#include "kbus/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <string>
#include <vector>

#include "kbus/json.hpp"

namespace kbus {
namespace {

// True when `s` goes into a log line as it is.
bool Fits(std::string_view s, std::size_t max = kMaxLogValueBytes) { return s.size() <= max && IsValidUtf8(s); }

// `s`, or its form cut to `max` bytes and made valid, kept in `storage`.
std::string_view Bounded(std::string_view s, std::string& storage,
                         std::size_t max = kMaxLogValueBytes) {
  if (Fits(s, max)) return s;
  if (s.size() <= max) {
    storage = ToValidUtf8(s);
  } else {
    storage = ToValidUtf8(s, max);
    storage += "\xE2\x80\xA6(truncated, " + std::to_string(s.size()) + " bytes)";  // U+2026
  }
  return storage;
}

void AppendEscaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
}

// What the sink allows a value past kMaxLogValueBytes: the marker Log added when it cut it.
constexpr std::size_t kMarkerRoom = 64;

class JsonLogSink final : public LogSink {
 public:
  explicit JsonLogSink(int fd) : fd_(fd) {}
  void Write(LogLevel level, std::string_view message, std::span<const LogField> fields) override {
    std::string line;
    line.reserve(128);
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char ts[64];
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms.count()));
    line += "{\"ts\":\"";
    line += ts;
    line += "\",\"level\":\"";
    line += ToString(level);
    line += "\",\"msg\":\"";
    std::string storage;
    // Log bounded the values already; this is for callers of Write itself.
    AppendEscaped(line, Bounded(message, storage, kMaxLogValueBytes + kMarkerRoom));
    line += '"';
    for (const auto& f : fields) {
      line += ",\"";
      AppendEscaped(line, Bounded(f.key, storage, kMaxLogValueBytes + kMarkerRoom));
      line += "\":";
      if (const auto* s = std::get_if<std::string_view>(&f.value)) {
        line += '"';
        AppendEscaped(line, Bounded(*s, storage, kMaxLogValueBytes + kMarkerRoom));
        line += '"';
      } else {
        line += std::to_string(std::get<std::int64_t>(f.value));
      }
    }
    line += "}\n";
    std::lock_guard lock(mu_);
    std::size_t done = 0;
    while (done < line.size()) {
      const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
      if (n <= 0) break;  // nowhere to report a failing log stream
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  int fd_;
  std::mutex mu_;
};

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_sink_mu;
std::shared_ptr<LogSink> g_sink;

std::shared_ptr<LogSink> CurrentSink() {
  std::lock_guard lock(g_sink_mu);
  if (!g_sink) g_sink = MakeJsonLogSink(2);
  return g_sink;
}

}  // namespace

std::string_view ToString(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "info";
}

bool ParseLogLevel(std::string_view text, LogLevel& out) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError,
                     LogLevel::kOff}) {
    if (text == ToString(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

std::shared_ptr<LogSink> MakeJsonLogSink(int fd) { return std::make_shared<JsonLogSink>(fd); }

void SetLogSink(std::shared_ptr<LogSink> sink) {
  std::lock_guard lock(g_sink_mu);
  g_sink = std::move(sink);
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) {
  return level != LogLevel::kOff && static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  auto sink = CurrentSink();
  if (!sink) return;
  const bool fits =
      Fits(message) && std::all_of(fields.begin(), fields.end(), [](const LogField& f) {
        const auto* s = std::get_if<std::string_view>(&f.value);
        return s == nullptr || Fits(*s);
      });
  if (fits) return sink->Write(level, message, {fields.begin(), fields.size()});
  // Any sink sees bounded, valid values: copies of those that are not. `storage` never
  // reallocates, so the views into it stay valid.
  std::vector<std::string> storage(fields.size() + 1);
  std::vector<LogField> bounded(fields.begin(), fields.end());
  for (std::size_t i = 0; i < bounded.size(); ++i) {
    if (auto* s = std::get_if<std::string_view>(&bounded[i].value)) *s = Bounded(*s, storage[i]);
  }
  sink->Write(level, Bounded(message, storage.back()), bounded);
}

}  // namespace kbus
