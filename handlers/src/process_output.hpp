#pragma once
// A run's output as both backends read it: stdout lines give progress (in the program's format)
// and the result line, stderr feeds the ffmpeg format and the 4 KiB tail. Whatever a program
// prints, this neither fails nor grows past a line of kMaxLine and twice the tail.
//
// Thread safety: one per run, used by the thread reading its output.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/handlers/process.hpp"
#include "kbus/handlers/progress.hpp"

namespace kbus::handlers::detail {

class ProcessOutput {
 public:
  static constexpr std::size_t kStderrTail = 4096;
  static constexpr std::size_t kMaxLine = 64 * 1024;  // a longer stdout line is not progress, and is cut

  // Writes stdout_lines, result, results_refused, result_refused_why and stderr_tail of `result`.
  ProcessOutput(ProcessResult& result, ProgressFormat format, std::function<void(const Progress&)> on_progress)
      : result_(result), progress_(format), on_progress_(std::move(on_progress)) {}

  void Stdout(std::string_view data) {
    for (const char c : data) {
      if (c != '\n') {
        if (line_.size() < kMaxLine) {
          line_.push_back(c);
        } else {
          line_too_long_ = true;
        }
        continue;
      }
      EndLine();
    }
  }

  void Stderr(std::string_view data) {
    progress_.Stderr(data);
    result_.stderr_tail.append(data);
    if (result_.stderr_tail.size() > 2 * kStderrTail) {
      result_.stderr_tail.erase(0, result_.stderr_tail.size() - kStderrTail);
    }
  }

  // While quiet, progress is not reported but kept: the output of an adopted job from before its
  // adoption (reported by the launcher that watched it then). Ending the quiet reports the last
  // progress kept, if any, once.
  void SetQuiet(bool quiet) {
    quiet_ = quiet;
    if (!quiet && has_kept_ && on_progress_) on_progress_(kept_);
    has_kept_ = false;
  }

  // At the end of the output: a last line without a newline still counts; the tail is cut.
  void Finish() {
    if (!line_.empty() || line_too_long_) EndLine();
    if (result_.stderr_tail.size() > kStderrTail) {
      result_.stderr_tail.erase(0, result_.stderr_tail.size() - kStderrTail);
    }
  }

 private:
  void EndLine() {
    ++result_.stdout_lines;
    if (line_too_long_) {
      if (IsResultLine(line_)) {
        ++result_.results_refused;
        result_.result_refused_why = "the result line is longer than " + std::to_string(kMaxLine) + " bytes";
      }
    } else if (auto r = ParseResultLine(line_, kMaxProcessResultBytes)) {
      // The last valid one wins; a refused one leaves the one before in place.
      if (r->ok()) {
        result_.result = std::move(*r).value();
      } else {
        ++result_.results_refused;
        result_.result_refused_why = r->error().message();
      }
    } else if (auto p = progress_.StdoutLine(line_); p && quiet_) {
      kept_ = std::move(*p);
      has_kept_ = true;
    } else if (p && on_progress_) {
      on_progress_(*p);
    }
    line_.clear();
    line_too_long_ = false;
  }

  ProcessResult& result_;
  ProgressReader progress_;
  std::function<void(const Progress&)> on_progress_;
  std::string line_;
  bool line_too_long_ = false;
  bool quiet_ = false;
  Progress kept_;  // while quiet: the last progress, if has_kept_
  bool has_kept_ = false;
};

}  // namespace kbus::handlers::detail
