// kbus tail: prints a topic's records as JSON lines, with the kbus envelope decoded and JSON
// payloads embedded, for people and for scripts (jq). Without --group it reads every partition
// and commits nothing, so it never disturbs a consumer group.
//
// kbus watch: follows launcher jobs on their events topic (docs/launcher.md) the same way: a
// progress bar on a terminal, one line per event otherwise; with --job it ends with the job.
//
// Both read with kafka::PartitionReader (kbus's Worker runs handlers, it does not hand out raw
// records). Thread safety: everything runs on the main thread; librdkafka's logs are served from
// the reader's calls, and the signal handler only sets a flag.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <thread>

#include "commands.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/config.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/log.hpp"
#include "kbus/cli/options.hpp"
#include "payload_view.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kCommand = "tail";
constexpr std::string_view kUsage = "kbus tail --brokers B --topic TOPIC [options]";
constexpr std::string_view kSummary =
    "Prints the records of a topic, one JSON object per line:\n"
    "  {\"topic\", \"partition\", \"offset\", \"timestamp\", \"key\", \"headers\": {name: value},\n"
    "   \"envelope\": {\"type\", \"kind\", \"id\", \"correlation_id\", \"causation_id\",\n"
    "   \"workflow_id\", \"sent_at\"} (the fields present),\n"
    "   \"payload\": the payload as JSON when it parses, else as a string (the first 64 KiB)\n"
    "   and \"payload_note\" saying why}\n"
    "Runs until SIGINT/SIGTERM, --count records or --timeout-ms without a record.\n"
    "Without --group it reads every partition the topic has at start and commits nothing.";

constexpr auto kPollInterval = std::chrono::milliseconds(100);
constexpr auto kMetadataTimeout = std::chrono::seconds(10);

struct TailArgs {
  ClientOptions client;
  std::string topic;
  std::string from;
  long long count = 0;       // 0: no limit
  long long timeout_ms = 0;  // 0: no idle limit
  std::string group;
};

po::options_description Describe(TailArgs& args) {
  po::options_description desc("kbus tail options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("topic", po::value(&args.topic), "topic to read (required)")(
      "from", po::value(&args.from)->default_value("beginning"),
      "beginning or end: where to start (with --group: only without a committed offset)")(
      "count", po::value(&args.count), "stop after N records")(
      "timeout-ms", po::value(&args.timeout_ms),
      "stop after T ms without a new record (default: run until a signal)")(
      "group", po::value(&args.group),
      "join this consumer group and commit what was printed (default: no group)");
  return desc;
}

// Every partition the topic has now, from its beginning or its end, with no end. A broker that
// just started may not know the topic yet: asks again for up to kMetadataTimeout.
Status AssignAll(kafka::PartitionReader& reader, bool from_end) {
  const auto deadline = std::chrono::steady_clock::now() + kMetadataTimeout;
  for (;;) {
    auto partitions = reader.Partitions(kMetadataTimeout);
    if (partitions.ok()) {
      std::vector<kafka::PartitionSpan> spans;
      for (const auto& p : *partitions) {
        spans.push_back({.partition = p.partition,
                         .from = from_end ? kafka::PartitionSpan::kEnd : kafka::PartitionSpan::kBeginning});
      }
      return reader.Assign(spans);
    }
    if (partitions.error().code() != ErrorCode::kNotFound) return partitions.error();
    if (std::chrono::steady_clock::now() >= deadline || StopRequested()) {
      return Error(ErrorCode::kNotFound, partitions.error().message() +
                                             ": create it with `kbus topics create` (or `kbus broker --topic` on "
                                             "an embedded broker)");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

// One record as a JSON line (without the newline).
std::string FormatRecord(std::string_view topic, const kafka::ReaderRecord& m) {
  // A null value reads as empty for the envelope.
  const std::vector<HeaderView> headers = m.HeaderViews();

  JsonWriter w(InvalidUtf8::kReplace);  // headers and keys may hold any bytes
  w.StartObject();
  w.Key("topic");
  w.String(topic);
  w.Key("partition");
  w.Int64(m.partition);
  w.Key("offset");
  w.Int64(m.offset);
  w.Key("timestamp");
  if (m.timestamp_ms >= 0) {
    w.Int64(m.timestamp_ms);
  } else {
    w.Null();
  }
  w.Key("key");
  if (m.key) {
    w.String(*m.key);
  } else {
    w.Null();
  }

  // An object keeps one value per name: the last, as InboundRecord::FindHeader reads it.
  w.Key("headers");
  w.StartObject();
  for (std::size_t i = 0; i < headers.size(); ++i) {
    bool repeated_later = false;
    for (std::size_t j = i + 1; j < headers.size() && !repeated_later; ++j) {
      repeated_later = headers[j].name == headers[i].name;
    }
    if (repeated_later) continue;
    w.Key(headers[i].name);
    if (!m.headers[i].value) {
      w.Null();
    } else {
      w.String(headers[i].value);
    }
  }
  w.EndObject();

  const Envelope e = ParseEnvelope(headers);
  w.Key("envelope");
  w.StartObject();
  auto field = [&](std::string_view key, std::string_view value) {
    if (value.empty()) return;
    w.Key(key);
    w.String(value);
  };
  field("type", e.type);
  field("kind", e.kind);
  field("id", e.message_id);
  field("correlation_id", e.correlation_id);
  field("causation_id", e.causation_id);
  field("workflow_id", e.workflow_id);
  if (e.sent_at_ms >= 0) {
    w.Key("sent_at");
    w.Int64(e.sent_at_ms);
  }
  w.EndObject();

  const PayloadView payload =
      ViewPayload(m.payload ? std::optional<std::string_view>(*m.payload) : std::nullopt);
  w.Key("payload");
  w.RawValue(payload.json);
  if (!payload.note.empty()) field("payload_note", payload.note);
  w.EndObject();
  return w.Take();
}

// Reads the topic and hands each record to `on_record` until it returns false, a signal, or
// --timeout-ms without a record (then *idle is set, if given). Without --group it reads every
// partition and commits nothing; with it, it joins the group and commits what `on_record` saw.
Status Read(const TailArgs& args, const kafka::ClientConfig& client,
            const std::function<bool(const kafka::ReaderRecord&)>& on_record, bool* idle = nullptr) {
  InstallStopSignals();
  const bool from_end = args.from == "end";
  auto opened = kafka::PartitionReader::Open(
      client, {.topic = args.topic,
               .group = args.group,
               // With --group: where a partition without a committed offset starts.
               .reset = from_end ? kafka::OffsetReset::kLatest : kafka::OffsetReset::kEarliest});
  if (!opened.ok()) return opened.error();
  kafka::PartitionReader& reader = **opened;
  if (Status s = args.group.empty() ? AssignAll(reader, from_end) : reader.Subscribe(); !s.ok()) return s;
  auto last_record = std::chrono::steady_clock::now();
  while (!StopRequested()) {
    if (args.timeout_ms > 0 && std::chrono::steady_clock::now() - last_record >=
                                   std::chrono::milliseconds(args.timeout_ms)) {
      if (idle != nullptr) *idle = true;
      break;
    }
    auto next = reader.Next(kPollInterval);
    if (!next.ok()) return next.error();
    if (!*next) continue;
    const bool more = on_record(**next);
    last_record = std::chrono::steady_clock::now();
    reader.Done(**next);  // after printing: at-least-once output
    if (!more) break;
  }
  if (Status s = reader.Close(); !s.ok()) {
    return Error(ErrorCode::kTransport, "cannot commit the printed records' offsets: " + s.error().message(), true);
  }
  return Ok();
}

// ---- kbus watch ------------------------------------------------------------------------------

constexpr std::string_view kWatchCommand = "watch";
constexpr std::string_view kWatchUsage = "kbus watch --brokers B [--job ID] [--topic TOPIC] [options]";
constexpr std::string_view kWatchSummary =
    "Follows launcher jobs through their events (kbus.ProcessStarted, Progress, Heartbeat, Exited)\n"
    "from the beginning of the topic. On a terminal it draws a progress bar per job; otherwise it\n"
    "prints one line per event. With --job it exits when that job's ProcessExited arrives: 0 when\n"
    "it succeeded, 1 otherwise. Records that are not launcher events are skipped.";

struct WatchArgs {
  TailArgs read;
  std::string job;
  int attempt = 0;  // 0: any
};

po::options_description DescribeWatch(WatchArgs& args) {
  po::options_description desc("kbus watch options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.read.client);
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

void PrintTailHelp(std::ostream& os) {
  TailArgs args;
  PrintHelp(os, kUsage, kSummary, Describe(args));
}

int RunTail(const std::vector<std::string>& argv) {
  TailArgs args;
  const auto desc = Describe(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kCommand, parsed.error());
  if (parsed->help()) {
    PrintTailHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyClientOptions(args.client, *parsed, kCommand, client); !s.ok()) {
    return Report(kCommand, s.error());
  }
  if (args.topic.empty()) return ReportUsage(kCommand, "--topic is required (or set KBUS_TOPIC)");
  if (args.from != "beginning" && args.from != "end") {
    return ReportUsage(
        kCommand, parsed->Spelling("from") + " '" + args.from + "' is not one of beginning, end");
  }
  if (parsed->vm.count("count") != 0 && args.count < 1) {
    return ReportUsage(kCommand, parsed->Spelling("count") + " must be at least 1");
  }
  if (parsed->vm.count("timeout-ms") != 0 && args.timeout_ms < 1) {
    return ReportUsage(kCommand, parsed->Spelling("timeout-ms") + " must be positive");
  }

  long long printed = 0;
  const Status status = Read(args, client, [&](const kafka::ReaderRecord& m) {
    std::cout << FormatRecord(args.topic, m) << std::endl;  // flushed: a pipe reader sees it at once
    return args.count == 0 || ++printed < args.count;
  });
  if (!status.ok()) return Report(kCommand, status.error());
  return kExitOk;
}

}  // namespace kbus::cli

namespace kbus::cli {

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
  if (Status s = ApplyClientOptions(args.read.client, *parsed, kWatchCommand, client); !s.ok()) {
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
  const Status status = Read(args.read, client, [&](const kafka::ReaderRecord& m) {
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
