#include "kbus/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>

namespace kbus {
namespace {

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
    AppendEscaped(line, message);
    line += '"';
    for (const auto& f : fields) {
      line += ",\"";
      AppendEscaped(line, f.key);
      line += "\":";
      if (const auto* s = std::get_if<std::string_view>(&f.value)) {
        line += '"';
        AppendEscaped(line, *s);
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
  if (auto sink = CurrentSink()) sink->Write(level, message, {fields.begin(), fields.size()});
}

}  // namespace kbus
