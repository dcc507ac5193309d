// kbus send: one message with a full kbus envelope, from the command line or stdin, so shell
// scripts and operators can talk to kbus workers. Prints the new message's id.

#include <array>
#include <chrono>
#include <exception>
#include <iostream>
#include <stdexcept>

#include "commands.hpp"
#include "stdin_payload.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/context.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/log.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kCommand = "send";
constexpr std::string_view kUsage =
    "kbus send --brokers B --type TYPE --topic TOPIC [--delay D | --at TIME] [options] [PAYLOAD | -]";
constexpr std::string_view kSummary =
    "Sends one message with a kbus envelope (kbus-type, kbus-id, kbus-correlation-id,\n"
    "kbus-sent-at, ...) and waits for the broker's acknowledgement, then prints the\n"
    "message id. PAYLOAD must be JSON; without it, or with -, it is read from stdin\n"
    "(trailing whitespace dropped). With --delay or --at the message waits in the pending\n"
    "topic and a kbus-scheduler delivers it to TOPIC at its time, with the same id\n"
    "(docs/schedules.md). Exit codes: 0 sent, 1 not sent, 2 bad usage.";

// librdkafka refuses a message.timeout.ms below linger.ms; 100 ms is more than a CLI needs.
constexpr int kMinTimeoutMs = 100;

struct SendArgs {
  ClientOptions client;
  std::string type;
  std::string topic;
  std::string key;
  std::string kind;
  std::vector<std::string> headers;
  std::string workflow_id;
  std::string correlation_id;
  int timeout_ms = 30000;
  std::string delay;
  std::string at;
  std::string pending_topic;
  std::string payload;
};

po::options_description Describe(SendArgs& args) {
  po::options_description desc("kbus send options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("type", po::value(&args.type),
                     "message type, e.g. shop.PlaceOrder (required)")(
      "topic", po::value(&args.topic), "topic to send to (required)")(
      "key", po::value(&args.key),
      "record key (default: the workflow id, else the correlation id)")(
      "kind", po::value(&args.kind)->default_value("command"), "command or event")(
      "header", po::value(&args.headers)->value_name("name=value"),
      "an extra header; repeatable (KBUS_HEADER: one per line)")(
      "workflow-id", po::value(&args.workflow_id), "kbus-workflow-id header")(
      "correlation-id", po::value(&args.correlation_id),
      "kbus-correlation-id header (default: the new message's id)")(
      "timeout-ms", po::value(&args.timeout_ms)->default_value(args.timeout_ms),
      "how long the record may take to be acknowledged (librdkafka's message.timeout.ms)")(
      "delay", po::value(&args.delay)->value_name("D"),
      "deliver it this long from now: 500ms, 10s, 5m, 1h, 2d (at most 365d)")(
      "at", po::value(&args.at)->value_name("TIME"),
      "deliver it at this time: 2026-12-24T18:00:00Z or with an offset, +01:00")(
      "pending-topic", po::value(&args.pending_topic)->default_value(std::string(kDefaultPendingTopic)),
      "where a delayed message waits (the scheduler's --pending-topic)");
  return desc;
}

// Envelope headers kbus send writes itself, and the flag that sets each instead.
constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kOwnHeaders = {{
    {header::kType, "--type"},
    {header::kKind, "--kind"},
    {header::kId, "nothing: every message gets a fresh id"},
    {header::kCorrelationId, "--correlation-id"},
    {header::kWorkflowId, "--workflow-id"},
    {header::kSentAt, "nothing: it is the time of sending"},
}};

Result<std::vector<Header>> ParseHeaders(const SendArgs& args, const ParsedArgs& parsed) {
  std::vector<Header> out;
  for (const auto& spec : args.headers) {
    auto h = ParseKeyValue(spec, parsed.Spelling("header"));
    if (!h.ok()) return h.error();
    for (const auto& [name, flag] : kOwnHeaders) {
      if (h->name == name) {
        return Error(ErrorCode::kInvalidArgument, parsed.Spelling("header") + " '" + spec +
                                                      "': kbus send writes " + std::string(name) +
                                                      " itself; use " + std::string(flag));
      }
    }
    out.push_back(std::move(h.value()));
  }
  return out;
}


}  // namespace

void PrintSendHelp(std::ostream& os) {
  SendArgs args;
  PrintHelp(os, kUsage, kSummary, Describe(args));
}

int RunSend(const std::vector<std::string>& argv) {
  SendArgs args;
  const auto desc = Describe(args);
  po::options_description hidden;
  hidden.add_options()("payload", po::value(&args.payload));
  po::positional_options_description positional;
  positional.add("payload", 1);
  auto parsed = ParseArgs(argv, desc, hidden, positional);
  if (!parsed.ok()) return Report(kCommand, parsed.error());
  if (parsed->help()) {
    PrintSendHelp(std::cout);
    return kExitOk;
  }

  kafka::ProducerConfig config;
  if (Status s = ApplyClientOptions(args.client, *parsed, kCommand, config.client); !s.ok()) {
    return Report(kCommand, s.error());
  }
  if (args.type.empty()) return ReportUsage(kCommand, "--type is required (or set KBUS_TYPE)");
  if (args.topic.empty()) return ReportUsage(kCommand, "--topic is required (or set KBUS_TOPIC)");
  MessageKind kind;
  if (args.kind == "command") {
    kind = MessageKind::kCommand;
  } else if (args.kind == "event") {
    kind = MessageKind::kEvent;
  } else {
    return ReportUsage(
        kCommand, parsed->Spelling("kind") + " '" + args.kind + "' is not one of command, event");
  }
  if (args.timeout_ms < kMinTimeoutMs) {
    return ReportUsage(kCommand, parsed->Spelling("timeout-ms") + " must be at least " +
                                     std::to_string(kMinTimeoutMs));
  }
  auto headers = ParseHeaders(args, *parsed);
  if (!headers.ok()) return Report(kCommand, headers.error());

  std::string payload = args.payload;
  if (parsed->vm.count("payload") == 0 || payload == "-") {
    auto in = ReadPayloadFromStdin();
    if (!in.ok()) return Report(kCommand, in.error());
    payload = std::move(in.value());
  }
  // Checked here so that nothing malformed reaches the topic: workers would dead-letter it. Valid
  // UTF-8 and kbus's depth limit included (json.hpp).
  if (Status s = ValidateJson(payload); !s.ok()) {
    return Report(kCommand,
                  Error(ErrorCode::kDecode,
                        "the payload is not JSON, nothing was sent: " + s.error().message()));
  }

  SendOptions options;
  options.topic = args.topic;
  options.key = args.key;
  options.workflow_id = args.workflow_id;
  options.correlation_id = args.correlation_id;  // also the default key, as for any message
  options.headers = std::move(headers.value());
  if (!args.delay.empty() && !args.at.empty()) {
    return ReportUsage(kCommand, "give --delay or --at, not both");
  }
  if (!args.delay.empty()) {
    auto delay = ParseDelay(args.delay, parsed->Spelling("delay"));
    if (!delay.ok()) return Report(kCommand, delay.error());
    options.delay = *delay;
  }
  if (!args.at.empty()) {
    auto at = ParseTime(args.at, parsed->Spelling("at"));
    if (!at.ok()) return Report(kCommand, at.error());
    options.deliver_at = *at;
  }
  options.pending_topic = args.pending_topic;
  OutgoingRecord record;
  try {
    record = BuildRecord(args.type, kind, args.topic, std::move(payload), std::move(options),
                         nullptr, 0);
  } catch (const EncodeError& e) {  // a kbus-* header value that is not UTF-8, a delay too long
    return Report(kCommand, e.error());
  }

  // librdkafka's delivery timeout decides, so that a record reported as not sent is never
  // delivered later (which a retrying script would duplicate) and the producer closes at once.
  // SendSync waits a little longer, for librdkafka's verdict. An -X message.timeout.ms wins.
  config.client.properties.try_emplace("message.timeout.ms", std::to_string(args.timeout_ms));
  auto properties = kafka::ProducerProperties(config);
  for (const auto& [k, v] : config.client.properties) properties[k] = v;
  Log(LogLevel::kDebug, "producer configuration",
      {{"properties", kafka::DescribeProperties(properties)}});
  try {
    kafka::Producer producer(config);
    const auto verdict_margin = std::chrono::seconds(5);
    if (Status s =
            producer.SendSync(record, std::chrono::milliseconds(args.timeout_ms) + verdict_margin);
        !s.ok()) {
      return Report(kCommand, s.error());
    }
  } catch (const std::invalid_argument& e) {
    // A -X property librdkafka refused; its message may quote the value.
    return ReportUsage(kCommand, MaskSecrets(e.what(), config.client.properties));
  } catch (const std::exception& e) {
    return Report(kCommand,
                  Error(ErrorCode::kTransport, MaskSecrets(e.what(), config.client.properties)));
  }
  std::cout << record.FindHeader(header::kId).value_or("") << std::endl;
  return kExitOk;
}

}  // namespace kbus::cli
