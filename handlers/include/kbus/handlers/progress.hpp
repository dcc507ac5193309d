#pragma once
// Progress formats: how the launcher reads a child's progress from its output. The allow-list
// names one per program (`NAME.progress = ffmpeg`, docs/launcher.md); each becomes
// ProcessProgress events with a percent from 0 to 100.
//
// - kbus, the default: a stdout line "progress: <percent> [message]" (ParseProgressLine).
// - ffmpeg: the key=value blocks ffmpeg writes with `-progress pipe:1`, each ended by a line
//   "progress=continue" or "progress=end". The percent is the block's out_time over the input's
//   duration, which ffmpeg prints on stderr before it encodes ("  Duration: 00:01:02.50, ...").
//   A block that ends in "continue" is at most 99 %, "progress=end" is 100 %; a percent is
//   reported only when it is higher than the last one, so an attempt reports at most 101 of
//   them, in increasing order. An input of unknown duration ("Duration: N/A", a live stream, a
//   -loglevel that hides it) gives no percent at all.
//
// In either format, a stdout line "kbus-result <json>" is the program's result
// (ParseResultLine), not progress: the launcher keeps the last valid one and reports it in
// ProcessExited.result.
//
// Whatever a child prints, a reader neither fails nor grows: it keeps a few counters and at most
// one bounded stderr line, and anything it does not recognise is ignored.
//
// Thread safety: a ProgressReader belongs to one run, and is used by the thread reading its
// output. The free functions are thread-safe.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/result.hpp"

namespace kbus::handlers {

// One progress report of a child: percent from 0 to 100, and a short text.
struct Progress {
  int percent = 0;
  std::string message;
};

// The kbus format: "progress: 42 encoding pass 1" is a line of the child's stdout that starts
// with "progress:", then an integer percentage from 0 to 100, then an optional message. Anything
// else is not progress (the line is only counted), so a child's other output cannot fake or
// break it.
std::optional<Progress> ParseProgressLine(std::string_view line);

// A program's result: a stdout line "kbus-result <json>", the word, blanks, then one JSON value
// of at most `max_bytes` (kMaxProcessResultBytes for the launcher), e.g.
//   kbus-result {"output":"/media/out/v7.720p.mp4","frames":1200}
// Blanks around it are ignored. nullopt: the line is no result line (it does not begin with the
// word followed by a blank or its end). Otherwise the JSON text as written, or an error
// (kInvalidArgument) saying why it is refused: empty, not one JSON value, or too large.
std::optional<Result<std::string>> ParseResultLine(std::string_view line, std::size_t max_bytes);
// True when `line` begins as a result line does: for a line too long to be read whole.
bool IsResultLine(std::string_view line_start);

enum class ProgressFormat { kKbus, kFfmpeg };

// "kbus" or "ffmpeg" (as the allow-list writes them); nullopt for any other name.
std::optional<ProgressFormat> ProgressFormatNamed(std::string_view name);
std::string_view ProgressFormatName(ProgressFormat format);

// Turns one run's output into progress reports, in the run's format.
class ProgressReader {
 public:
  explicit ProgressReader(ProgressFormat format = ProgressFormat::kKbus) : format_(format) {}

  // One line of the child's stdout, without its '\n' (the caller bounds its length). Returns the
  // progress to report, if this line completes one.
  std::optional<Progress> StdoutLine(std::string_view line);

  // Bytes of the child's stderr as they come, cut anywhere. Only the ffmpeg format reads them:
  // the first "Duration:" line gives the input's duration.
  void Stderr(std::string_view data);

  // ffmpeg: the input's duration, once read from stderr; 0 before, and when it is unknown.
  std::chrono::microseconds duration() const { return duration_; }

 private:
  std::optional<Progress> EndOfBlock(bool end);
  void StderrLine(std::string_view line);

  ProgressFormat format_;
  // ffmpeg, stderr: the line being read (at most kMaxStderrLine bytes kept), until the first
  // "Duration:" line decided the duration.
  std::string stderr_line_;
  bool stderr_line_too_long_ = false;
  bool duration_read_ = false;
  std::chrono::microseconds duration_{0};
  // ffmpeg, stdout: the block being read.
  std::optional<std::int64_t> out_time_us_;
  std::string speed_;
  int last_percent_ = -1;
  bool ended_ = false;
};

}  // namespace kbus::handlers
