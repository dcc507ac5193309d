// kbus delayed list / cancel: the delayed messages waiting in the pending topic
// (docs/schedules.md). The topic is compacted and keyed by message id; a tombstone removes a
// message (cancelled, or delivered by the scheduler). Both commands read it to its end without
// joining a group; cancel then writes a tombstone (kbus::CancelDelayed) per id still waiting.
// Thread safety: everything runs on the main thread.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <iostream>
#include <map>
#include <stdexcept>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/context.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/kafka/producer.hpp"
#include "schedule_format.hpp"

namespace kbus::cli {

namespace {

using std::chrono::milliseconds;

constexpr std::string_view kList = "delayed list";
constexpr std::string_view kListUsage = "kbus delayed list --brokers B [--pending-topic T] [--limit N] [--json]";
constexpr std::string_view kListSummary =
    "Prints the delayed messages waiting in the pending topic (read to its end), soonest due\n"
    "first: id, type, destination topic and due time (UTC). --json prints a JSON object per\n"
    "line instead: {\"id\", \"type\", \"topic\", \"due\", \"due_ms\"}.";
constexpr std::string_view kCancel = "delayed cancel";
constexpr std::string_view kCancelUsage = "kbus delayed cancel --brokers B [--pending-topic T] ID...";
constexpr std::string_view kCancelSummary =
    "Cancels delayed messages by id (as `kbus send --delay` printed it): reads the pending topic,\n"
    "then writes a tombstone for each id still waiting. Prints `cancelled ID`, or `ID not pending\n"
    "(...)` for an id that was delivered, cancelled or never sent (not an error). A message due\n"
    "within moments may be delivered before the tombstone reaches the scheduler.";

struct CommonArgs {
  ClientOptions client;
  std::string pending_topic = std::string(kDefaultPendingTopic);
  long long timeout_ms = 30000;
};

void AddCommon(po::options_description& desc, CommonArgs& args) {
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("pending-topic",
                     po::value(&args.pending_topic)->default_value(args.pending_topic)->value_name("T"),
                     "where delayed messages wait (the scheduler's --pending-topic)")(
      "timeout-ms", po::value(&args.timeout_ms)->default_value(args.timeout_ms)->value_name("MS"),
      "how long reading the topic and sending may take");
}

Status ApplyCommon(const CommonArgs& args, const ParsedArgs& parsed, std::string_view command,
                   kafka::ClientConfig& client) {
  if (Status s = ApplyClientOptions(args.client, parsed, command, client); !s.ok()) return s;
  if (args.pending_topic.empty()) {
    return Error(ErrorCode::kInvalidArgument, parsed.Spelling("pending-topic") + " is empty: name a topic");
  }
  if (args.timeout_ms < 1) {
    return Error(ErrorCode::kInvalidArgument, parsed.Spelling("timeout-ms") + " must be positive");
  }
  return Ok();
}

int Fail(std::string_view command, const Error& error, const kafka::ClientConfig& client) {
  return Report(command, Error(error.code(), MaskSecrets(error.message(), client.properties), error.retriable()));
}

// A delayed message as the pending topic holds it.
struct Pending {
  std::string id;
  std::string type;
  std::string topic;        // where it goes
  std::int64_t due_ms = -1;  // -1: no valid kbus-deliver-at
};

std::string HeaderValue(const kafka::ReaderRecord& r, std::string_view name) {
  std::string out;
  for (const auto& h : r.headers) {
    if (h.name == name) out = h.value.value_or("");
  }
  return out;
}

// The messages waiting now, soonest due first.
Result<std::vector<Pending>> ReadPending(const kafka::ClientConfig& client, const std::string& topic,
                                         milliseconds timeout) {
  auto reader = kafka::PartitionReader::Open(client, {.topic = topic});
  if (!reader.ok()) return reader.error();
  auto parts = (*reader)->Partitions(timeout);
  if (!parts.ok()) {
    if (parts.error().code() == ErrorCode::kNotFound) {
      return Error(ErrorCode::kNotFound, "the pending topic '" + topic +
                                             "' does not exist: name the scheduler's topic with --pending-topic");
    }
    return parts.error();
  }
  std::vector<kafka::PartitionSpan> spans;
  for (const auto& p : *parts) {
    if (p.high > p.low) spans.push_back({.partition = p.partition, .from = p.low, .to = p.high});
  }
  std::map<std::string, Pending> waiting;
  if (!spans.empty()) {
    if (Status s = (*reader)->Assign(spans); !s.ok()) return s.error();
    if (Status s = (*reader)->ReadToEnd(timeout, [&](kafka::ReaderRecord&& r) {
          if (!r.key || r.key->empty()) return true;
          if (!r.payload) {
            waiting.erase(*r.key);
            return true;
          }
          Pending p;
          p.id = *r.key;
          p.type = HeaderValue(r, header::kType);
          p.topic = HeaderValue(r, header::kDeliverTopic);
          const std::string due = HeaderValue(r, header::kDeliverAt);
          std::int64_t ms = 0;
          if (auto [end, ec] = std::from_chars(due.data(), due.data() + due.size(), ms);
              ec == std::errc() && end == due.data() + due.size()) {
            p.due_ms = ms;
          }
          waiting[*r.key] = std::move(p);
          return true;
        });
        !s.ok()) {
      return s.error();
    }
  }
  std::vector<Pending> out;
  for (auto& [id, p] : waiting) out.push_back(std::move(p));
  std::stable_sort(out.begin(), out.end(), [](const Pending& a, const Pending& b) { return a.due_ms < b.due_ms; });
  return out;
}

std::string DueText(const Pending& p) {
  if (p.due_ms < 0) return "-";
  return FormatTime(std::chrono::sys_time<milliseconds>(milliseconds(p.due_ms)));
}

struct ListArgs {
  CommonArgs common;
  long long limit = 0;
  bool json = false;
};

po::options_description DescribeList(ListArgs& args) {
  po::options_description desc("kbus delayed list options", kHelpWidth, kHelpWidth / 2);
  AddCommon(desc, args.common);
  desc.add_options()("limit", po::value(&args.limit)->value_name("N"), "print at most N messages, the soonest due")(
      "json", po::bool_switch(&args.json), "print a JSON object per message instead of a table");
  return desc;
}

struct CancelArgs {
  CommonArgs common;
  std::vector<std::string> ids;
};

po::options_description DescribeCancel(CancelArgs& args) {
  po::options_description desc("kbus delayed cancel options", kHelpWidth, kHelpWidth / 2);
  AddCommon(desc, args.common);
  return desc;
}

}  // namespace

void PrintDelayedListHelp(std::ostream& os) {
  ListArgs args;
  PrintHelp(os, kListUsage, kListSummary, DescribeList(args));
}

void PrintDelayedCancelHelp(std::ostream& os) {
  CancelArgs args;
  PrintHelp(os, kCancelUsage, kCancelSummary, DescribeCancel(args));
}

int RunDelayedList(const std::vector<std::string>& argv) {
  ListArgs args;
  const auto desc = DescribeList(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kList, parsed.error());
  if (parsed->help()) {
    PrintDelayedListHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyCommon(args.common, *parsed, kList, client); !s.ok()) return Report(kList, s.error());
  if (parsed->vm.count("limit") != 0 && args.limit < 1) {
    return ReportUsage(kList, parsed->Spelling("limit") + " must be at least 1");
  }
  auto pending = ReadPending(client, args.common.pending_topic, milliseconds(args.common.timeout_ms));
  if (!pending.ok()) return Fail(kList, pending.error(), client);
  if (args.limit > 0 && pending->size() > static_cast<std::size_t>(args.limit)) {
    pending->resize(static_cast<std::size_t>(args.limit));
  }
  if (args.json) {
    for (const auto& p : *pending) {
      JsonWriter w(InvalidUtf8::kReplace);  // the topic may hold any bytes
      w.StartObject();
      w.Key("id");
      w.String(p.id);
      w.Key("type");
      w.String(p.type);
      w.Key("topic");
      w.String(p.topic);
      w.Key("due");
      if (p.due_ms < 0) {
        w.Null();
      } else {
        w.String(DueText(p));
      }
      w.Key("due_ms");
      w.Int64(p.due_ms);
      w.EndObject();
      std::cout << w.Take() << '\n';
    }
    std::cout << std::flush;
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows{{"ID", "TYPE", "TOPIC", "DUE"}};
  for (const auto& p : *pending) rows.push_back({p.id, p.type, p.topic, DueText(p)});
  PrintTable(std::cout, rows);
  std::cout << std::flush;
  return kExitOk;
}

int RunDelayedCancel(const std::vector<std::string>& argv) {
  CancelArgs args;
  const auto desc = DescribeCancel(args);
  po::options_description hidden;
  hidden.add_options()("id", po::value(&args.ids));
  po::positional_options_description positional;
  positional.add("id", -1);
  auto parsed = ParseArgs(argv, desc, hidden, positional);
  if (!parsed.ok()) return Report(kCancel, parsed.error());
  if (parsed->help()) {
    PrintDelayedCancelHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyCommon(args.common, *parsed, kCancel, client); !s.ok()) return Report(kCancel, s.error());
  if (args.ids.empty()) return ReportUsage(kCancel, "name the messages: ID... (as `kbus send` printed them)");
  const milliseconds timeout(args.common.timeout_ms);
  auto pending = ReadPending(client, args.common.pending_topic, timeout);
  if (!pending.ok()) return Fail(kCancel, pending.error(), client);
  try {
    kafka::ProducerConfig config;
    config.client = client;
    kafka::Producer producer(config);
    for (const auto& id : args.ids) {
      const bool waiting =
          std::any_of(pending->begin(), pending->end(), [&](const Pending& p) { return p.id == id; });
      if (!waiting) {
        std::cout << id << " not pending (delivered, cancelled or never sent)" << std::endl;
        continue;
      }
      if (Status s = producer.SendSync(CancelDelayed(id, args.common.pending_topic), timeout); !s.ok()) {
        return Fail(kCancel, s.error(), client);
      }
      std::cout << "cancelled " << id << std::endl;
    }
  } catch (const std::invalid_argument& e) {
    return ReportUsage(kCancel, MaskSecrets(e.what(), client.properties));
  } catch (const std::exception& e) {
    return Report(kCancel, Error(ErrorCode::kTransport, MaskSecrets(e.what(), client.properties)));
  }
  return kExitOk;
}

}  // namespace kbus::cli
