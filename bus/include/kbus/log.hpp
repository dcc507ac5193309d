#pragma once
// One logging interface for the library: structured fields, JSON lines by default (on stderr).
// librdkafka's own logs are routed here too, from kbus's threads.
//
// Thread safety: Log may be called from any thread; SetLogSink/SetLogLevel at start-up.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

namespace kbus {

enum class LogLevel { kDebug, kInfo, kWarn, kError, kOff };
std::string_view ToString(LogLevel level);
// Parses "debug", "info", "warn", "error" or "off" into `out`; false (and `out` untouched) for
// anything else.
bool ParseLogLevel(std::string_view text, LogLevel& out);

struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  template <class I>
    requires std::is_integral_v<I>
  LogField(std::string_view k, I v) : key(k), value(static_cast<std::int64_t>(v)) {}
  std::string_view key;
  std::variant<std::string_view, std::int64_t> value;
};

class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Write(LogLevel level, std::string_view message, std::span<const LogField> fields) = 0;
};

// The longest string a log line carries per value (the message and each string field), in
// bytes. Values often come from input (a kbus-type header, an error quoting a payload), so a
// longer one is cut between characters and marked "…(truncated, <size> bytes)". Log also makes
// every string valid UTF-8 (U+FFFD for bytes that are not) before any sink sees it.
inline constexpr std::size_t kMaxLogValueBytes = 1024;

// Writes one JSON object per line: {"ts":"...","level":"info","msg":"...",<fields>}, values
// bounded and made valid UTF-8 as Log does, control characters escaped.
std::shared_ptr<LogSink> MakeJsonLogSink(int fd = 2);

void SetLogSink(std::shared_ptr<LogSink> sink);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
// Passes the message and fields to the sink, each string bounded by kMaxLogValueBytes and made
// valid UTF-8.
void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});

}  // namespace kbus
