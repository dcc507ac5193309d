// kbus watch: follows launcher jobs on their events topic (docs/launcher.md): a progress bar per
// running job redrawn in place on a terminal, one line per event otherwise; with --job it ends
// with the job. It reads the topic as `kbus tail` does (read_topic.hpp). Thread safety: everything runs on the main thread, and
// the signal handler only sets a flag.

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/log.hpp"
#include "read_topic.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kWatchCommand = "watch";
constexpr std::string_view kWatchUsage = "kbus watch --brokers B [--job ID] [--topic TOPIC] [options]";
constexpr std::string_view kWatchSummary =
    "Follows launcher jobs through their events (kbus.ProcessStarted, Progress, Heartbeat, Exited)\n"
    "from the beginning of the topic. On a terminal it keeps one progress bar per running job,\n"
    "redrawn in place, with each start and exit printed above the bars; otherwise it prints one\n"
    "line per event. With --job it exits when that job's ProcessExited arrives: 0 when\n"
    "it succeeded, 1 otherwise. Records that are not launcher events are skipped.";

struct WatchArgs {
  ClientOptions client;
  ReadOptions read;  // from the beginning of the topic, no group
  std::string job;
  int attempt = 0;  // 0: any
};

po::options_description DescribeWatch(WatchArgs& args) {
  po::options_description desc("kbus watch options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()(
      "topic", po::value(&args.read.topic)->default_value(std::string(handlers::kLauncherEventsTopic)),
      "the events topic (the commands' reply_to)")(
      "job", po::value(&args.job), "follow this job only, and exit with it")(
      "attempt", po::value(&args.attempt), "with --job: this attempt only (default: the first exit)")(
      "timeout-ms", po::value(&args.read.timeout_ms),
      "give up after T ms without a new record (exit 1)");
  return desc;
}

std::string Clock(std::chrono::milliseconds d) {
  const long long s = d.count() / 1000;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

// Draws the events it is given. Not on a terminal: one plain line per event. On a terminal, as
// `docker pull` does: one line per running job, redrawn in place at the bottom of the screen
// ("job-7 attempt 2 [#########-----]  45% encoding pass 1  00:12"), and above them the lines
// that stay: each job's start and exit, in the order they came.
class JobView {
 public:
  explicit JobView(bool terminal) : terminal_(terminal) {}

  void Started(const handlers::ProcessStarted& e) {
    const std::string text = "started pid " + std::to_string(e.pid) + (e.host.empty() ? "" : " on " + e.host);
    if (!terminal_) return Line(e.job_id, e.attempt, text);
    Job& job = Running(e.job_id, e.attempt);
    if (job.message.empty()) job.message = text;
    Redraw({Id(e.job_id, e.attempt) + ' ' + text});
  }
  void Progress(const handlers::ProcessProgress& e) {
    if (!terminal_) {
      return Line(e.job_id, e.attempt,
                  "progress " + std::to_string(e.percent) + "%" + (e.message.empty() ? "" : " " + e.message));
    }
    Job& job = Running(e.job_id, e.attempt);
    job.percent = e.percent;
    if (!e.message.empty()) job.message = e.message;
    Redraw({});
  }
  void Heartbeat(const handlers::ProcessHeartbeat& e) {
    if (!terminal_) return Line(e.job_id, e.attempt, "heartbeat " + Clock(e.elapsed));
    Job& job = Running(e.job_id, e.attempt);
    job.elapsed = e.elapsed;
    if (e.percent >= 0) job.percent = e.percent;
    Redraw({});
  }
  void Exited(const handlers::ProcessExited& e) {
    std::string text = "exited " + e.outcome;
    if (e.exit_code >= 0) text += " exit_code " + std::to_string(e.exit_code);
    if (e.signal != 0) text += " signal " + std::to_string(e.signal);
    char secs[32];
    std::snprintf(secs, sizeof secs, " after %.1fs", static_cast<double>(e.duration.count()) / 1000);
    text += secs;
    if (!e.error.empty()) text += ": " + e.error;
    if (!terminal_) return Line(e.job_id, e.attempt, text);
    const std::string id = Id(e.job_id, e.attempt);
    std::erase_if(running_, [&](const Job& j) { return j.id == id; });
    Redraw({id + ' ' + text});
  }

 private:
  struct Job {
    std::string id;
    int percent = 0;
    std::string message;
    std::chrono::milliseconds elapsed{0};
  };

  static std::string Id(const std::string& job, int attempt) { return job + " attempt " + std::to_string(attempt); }

  void Line(const std::string& job, int attempt, const std::string& text) {
    std::cout << Id(job, attempt) << ' ' << text << std::endl;
  }

  Job& Running(const std::string& job, int attempt) {
    const std::string id = Id(job, attempt);
    for (Job& j : running_) {
      if (j.id == id) return j;
    }
    running_.push_back(Job{id, 0, {}, std::chrono::milliseconds(0)});
    return running_.back();
  }

  // Moves up over the bars drawn last time, prints `stays` there (lines that scroll up and stay),
  // then one bar per running job, each cut to the terminal's width so that none wraps (a wrapped
  // line would throw the next move up off by one).
  void Redraw(const std::vector<std::string>& stays) {
    std::string out;
    if (drawn_ > 0) out += "\x1b[" + std::to_string(drawn_) + "A";
    out += "\r\x1b[J";
    const std::size_t width = Width();
    for (const std::string& line : stays) out += Cut(line, width) + "\n";
    for (const Job& j : running_) out += Cut(BarLine(j), width) + "\n";
    drawn_ = running_.size();
    std::cout << out << std::flush;
  }

  static std::string BarLine(const Job& j) {
    constexpr int kWidth = 30;
    const int percent = std::clamp(j.percent, 0, 100);
    const int filled = percent * kWidth / 100;
    char pct[8];
    std::snprintf(pct, sizeof pct, "%3d%%", percent);
    return j.id + " [" + std::string(static_cast<std::size_t>(filled), '#') +
           std::string(static_cast<std::size_t>(kWidth - filled), '-') + "] " + pct + " " + j.message + "  " +
           Clock(j.elapsed);
  }

  static std::size_t Width() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1) return ws.ws_col - 1;
    return 79;
  }

  // At most `width` characters (UTF-8 sequences kept whole).
  static std::string Cut(const std::string& line, std::size_t width) {
    std::size_t chars = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;
      if (chars++ == width) return line.substr(0, i);
    }
    return line;
  }

  bool terminal_;
  std::vector<Job> running_;  // in the order they started
  std::size_t drawn_ = 0;     // bar lines drawn last time, just above the cursor
};

// What one launcher event did for a watch: nothing, or ended the watched job.
enum class Seen { kOther, kExitedOk, kExitedFailed };

template <class T>
std::optional<T> Decode(const kafka::ReaderRecord& m) {
  if (!m.payload) return std::nullopt;
  auto decoded = FromJson<T>(*m.payload);
  if (!decoded.ok()) return std::nullopt;
  return std::move(decoded.value());
}

Seen Show(const kafka::ReaderRecord& m, const WatchArgs& args, JobView& view, long long& skipped) {
  const std::vector<HeaderView> headers = m.HeaderViews();
  const std::string_view type = ParseEnvelope(headers).type;
  auto mine = [&](const std::string& job, int attempt) {
    return args.job.empty() || (job == args.job && (args.attempt == 0 || attempt == args.attempt));
  };
  auto skip = [&] {
    ++skipped;
    return Seen::kOther;
  };
  using T = MessageTraits<handlers::ProcessStarted>;
  if (type == T::kType) {
    auto e = Decode<handlers::ProcessStarted>(m);
    if (!e) return skip();
    if (mine(e->job_id, e->attempt)) view.Started(*e);
  } else if (type == MessageTraits<handlers::ProcessProgress>::kType) {
    auto e = Decode<handlers::ProcessProgress>(m);
    if (!e) return skip();
    if (mine(e->job_id, e->attempt)) view.Progress(*e);
  } else if (type == MessageTraits<handlers::ProcessHeartbeat>::kType) {
    auto e = Decode<handlers::ProcessHeartbeat>(m);
    if (!e) return skip();
    if (mine(e->job_id, e->attempt)) view.Heartbeat(*e);
  } else if (type == MessageTraits<handlers::ProcessExited>::kType) {
    auto e = Decode<handlers::ProcessExited>(m);
    if (!e) return skip();
    if (!mine(e->job_id, e->attempt)) return Seen::kOther;
    view.Exited(*e);
    return e->outcome == "succeeded" ? Seen::kExitedOk : Seen::kExitedFailed;
  } else {
    return skip();
  }
  return Seen::kOther;
}

}  // namespace

void PrintWatchHelp(std::ostream& os) {
  WatchArgs args;
  PrintHelp(os, kWatchUsage, kWatchSummary, DescribeWatch(args));
}

int RunWatch(const std::vector<std::string>& argv) {
  WatchArgs args;
  const auto desc = DescribeWatch(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kWatchCommand, parsed.error());
  if (parsed->help()) {
    PrintWatchHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyClientOptions(args.client, *parsed, kWatchCommand, client); !s.ok()) {
    return Report(kWatchCommand, s.error());
  }
  if (args.read.topic.empty()) return ReportUsage(kWatchCommand, parsed->Spelling("topic") + " must not be empty");
  if (parsed->vm.count("job") != 0 && args.job.empty()) {
    return ReportUsage(kWatchCommand, parsed->Spelling("job") + " must not be empty");
  }
  if (parsed->vm.count("attempt") != 0 && (args.attempt < 1 || args.job.empty())) {
    return ReportUsage(kWatchCommand, parsed->Spelling("attempt") + " must be at least 1, with --job");
  }
  if (parsed->vm.count("timeout-ms") != 0 && args.read.timeout_ms < 1) {
    return ReportUsage(kWatchCommand, parsed->Spelling("timeout-ms") + " must be positive");
  }
  JobView view(::isatty(STDOUT_FILENO) == 1);
  Seen end = Seen::kOther;
  bool idle = false;
  long long skipped = 0;
  const Status status = ReadTopic(args.read, client, [&](const kafka::ReaderRecord& m) {
    end = Show(m, args, view, skipped);
    return args.job.empty() || end == Seen::kOther;
  }, &idle);
  if (skipped > 0) Log(LogLevel::kInfo, "records that are not launcher events skipped", {{"count", skipped}});
  if (!status.ok()) return Report(kWatchCommand, status.error());
  if (idle) {
    std::cerr << "kbus watch: no event within " << args.read.timeout_ms << " ms\n";
    return kExitFailure;
  }
  if (!args.job.empty() && end == Seen::kOther) return kExitFailure;  // stopped by a signal
  return end == Seen::kExitedFailed ? kExitFailure : kExitOk;
}

}  // namespace kbus::cli
