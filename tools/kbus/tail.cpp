// kbus tail: prints a topic's records as JSON lines, with the kbus envelope decoded and JSON
// payloads embedded, for people and for scripts (jq). Without --group it reads every partition
// and commits nothing, so it never disturbs a consumer group.
//
// It reads with kafka::PartitionReader (read_topic.hpp; kbus's Worker runs handlers, it does
// not hand out raw records). Thread safety: everything runs on the main thread; librdkafka's
// logs are served from the reader's calls, and the signal handler only sets a flag.

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/config.hpp"
#include "payload_view.hpp"
#include "read_topic.hpp"

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
  const ReadOptions read{.topic = args.topic, .from_end = args.from == "end", .group = args.group,
                         .timeout_ms = args.timeout_ms};
  const Status status = ReadTopic(read, client, [&](const kafka::ReaderRecord& m) {
    std::cout << FormatRecord(args.topic, m) << std::endl;  // flushed: a pipe reader sees it at once
    return args.count == 0 || ++printed < args.count;
  });
  if (!status.ok()) return Report(kCommand, status.error());
  return kExitOk;
}

}  // namespace kbus::cli
