// kbus watch: follows launcher jobs on their events topic (docs/launcher.md): a progress bar on
// a terminal, one line per event otherwise; with --job it ends with the job. It reads the topic
// as `kbus tail` does (read_topic.hpp). Thread safety: everything runs on the main thread, and
// the signal handler only sets a flag.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
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
    "from the beginning of the topic. On a terminal it draws a progress bar per job; otherwise it\n"
    "prints one line per event. With --job it exits when that job's ProcessExited arrives: 0 when\n"
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

// Draws the events it is given: a bar redrawn in place on a terminal, plain lines otherwise.
class JobView {
 public:
  explicit JobView(bool terminal) : terminal_(terminal) {}

  void Started(const handlers::ProcessStarted& e) {
    Line(e.job_id, e.attempt, "started pid " + std::to_string(e.pid) + (e.host.empty() ? "" : " on " + e.host));
  }
  void Progress(const handlers::ProcessProgress& e) {
    percent_[Id(e.job_id, e.attempt)] = e.percent;
    if (terminal_) return Bar(e.job_id, e.attempt, e.message, -1);
    Line(e.job_id, e.attempt, "progress " + std::to_string(e.percent) + "%" + (e.message.empty() ? "" : " " + e.message));
  }
  void Heartbeat(const handlers::ProcessHeartbeat& e) {
    if (terminal_) return Bar(e.job_id, e.attempt, "", e.elapsed.count());
    Line(e.job_id, e.attempt, "heartbeat " + Clock(e.elapsed));
  }
  void Exited(const handlers::ProcessExited& e) {
    std::string text = "exited " + e.outcome;
    if (e.exit_code >= 0) text += " exit_code " + std::to_string(e.exit_code);
    if (e.signal != 0) text += " signal " + std::to_string(e.signal);
    char secs[32];
    std::snprintf(secs, sizeof secs, " after %.1fs", static_cast<double>(e.duration.count()) / 1000);
    text += secs;
    if (!e.error.empty()) text += ": " + e.error;
    Line(e.job_id, e.attempt, text);
  }

 private:
  static std::string Id(const std::string& job, int attempt) { return job + " attempt " + std::to_string(attempt); }

  void Line(const std::string& job, int attempt, const std::string& text) {
    if (open_bar_) std::cout << '\n';
    open_bar_ = false;
    std::cout << Id(job, attempt) << ' ' << text << std::endl;
  }
  // "job-7 attempt 2 [#########-----------]  45% encoding pass 1  00:12", redrawn in place.
  void Bar(const std::string& job, int attempt, const std::string& message, long long elapsed_ms) {
    const std::string id = Id(job, attempt);
    if (open_bar_ && bar_id_ != id) std::cout << '\n';
    const int percent = percent_.count(id) ? percent_[id] : 0;
    if (!message.empty()) message_[id] = message;
    if (elapsed_ms >= 0) elapsed_[id] = elapsed_ms;
    constexpr int kWidth = 30;
    const int filled = percent * kWidth / 100;
    std::cout << '\r' << id << " [" << std::string(static_cast<std::size_t>(filled), '#')
              << std::string(static_cast<std::size_t>(kWidth - filled), '-') << "] ";
    std::printf("%3d%%", percent);
    std::fflush(stdout);
    std::cout << ' ' << message_[id] << "  " << Clock(std::chrono::milliseconds(elapsed_[id])) << "\x1b[K"
              << std::flush;
    open_bar_ = true;
    bar_id_ = id;
  }

  bool terminal_;
  bool open_bar_ = false;
  std::string bar_id_;
  std::map<std::string, int> percent_;
  std::map<std::string, std::string> message_;
  std::map<std::string, long long> elapsed_;
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
