// kbus dlq list / show / redrive: a consumer group's dead-letter topic ("<group>.dlq"), read
// and redriven through kbus::kafka's dead-letter functions (kbus/kafka/dead_letters.hpp).
//
// list and show read without joining a group and commit nothing. redrive keeps its cursor as the
// committed offsets of the group "<group>.dlq.redrive" (docs/delivery.md, "Redrive").
// Thread safety: everything runs on the main thread; the signal handler only sets a flag, which a
// watcher thread copies into the flag Redrive reads.

#include <atomic>
#include <charconv>
#include <chrono>
#include <iostream>
#include <optional>
#include <thread>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/dead_letters.hpp"
#include "payload_view.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kList = "dlq list";
constexpr std::string_view kListUsage = "kbus dlq list --brokers B --group G [filters]";
constexpr std::string_view kListSummary =
    "Prints the dead letters of consumer group G (topic G.dlq), one JSON object per line,\n"
    "in partition and offset order, up to the end of the topic at start:\n"
    "  {\"partition\", \"offset\", \"at\", \"reason\", \"type\", \"id\", \"original_topic\",\n"
    "   \"original_partition\", \"original_offset\", \"attempts\", \"error\" (at most 200\n"
    "   bytes), \"key\"}\n"
    "Reads without joining a group; commits nothing.";
constexpr std::string_view kShow = "dlq show";
constexpr std::string_view kShowUsage = "kbus dlq show --brokers B --group G PARTITION:OFFSET";
constexpr std::string_view kShowSummary =
    "Prints one dead letter of group G as a JSON object: where it is, the diagnostics, every\n"
    "header, and the payload (embedded when it is JSON, else as a string of its first 64 KiB\n"
    "with \"payload_note\" saying why). Bytes that are not UTF-8 show as U+FFFD.";
constexpr std::string_view kRedrive = "dlq redrive";
constexpr std::string_view kRedriveUsage =
    "kbus dlq redrive --brokers B --group G [filters] [--to TOPIC] [--rate N] [--dry-run]";
constexpr std::string_view kRedriveSummary =
    "Re-sends the dead letters of group G that match the filters to their original topics\n"
    "(or --to), without the kbus-dlq-* headers and kbus-delivery-count, with kbus-redrive-of.\n"
    "Continues from the cursor of group G.dlq.redrive, up to the end of G.dlq at start, and\n"
    "commits a record only after its copy was acknowledged. Records the filters skip are\n"
    "passed over for good (until --from-beginning). A copy keeps its kbus-id, so idempotent\n"
    "handlers drop one that is redriven twice. Prints `redriven N, skipped M`. SIGINT/SIGTERM\n"
    "stop it after the re-sends in flight; the next run continues.";

constexpr std::size_t kMaxErrorBytes = 200;

struct FilterOptions {
  std::vector<std::string> reasons;
  std::vector<std::string> types;
  std::int64_t since = 0;
  std::int64_t until = 0;
  long long limit = 0;
};

struct CommonArgs {
  ClientOptions client;
  std::string group;
  long long timeout_ms = 30000;
};

void AddCommon(po::options_description& desc, CommonArgs& args) {
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("group,g", po::value(&args.group),
                     "the consumer group whose dead letters (topic <group>.dlq) to read; required")(
      "timeout-ms", po::value(&args.timeout_ms)->default_value(args.timeout_ms),
      "how long the broker may take to answer");
}

void AddFilters(po::options_description& desc, FilterOptions& f, std::string_view limit_meaning) {
  desc.add_options()("reason", po::value(&f.reasons)->value_name("R"),
                     "only records with this kbus-dlq-reason; repeatable, any of (KBUS_REASON: one "
                     "per line)")(
      "type", po::value(&f.types)->value_name("T"),
      "only records of this kbus-type; repeatable, any of")(
      "since", po::value(&f.since)->value_name("MS"),
      "only records dead-lettered at or after MS (Unix epoch milliseconds)")(
      "until", po::value(&f.until)->value_name("MS"), "only records dead-lettered before MS")(
      "limit", po::value(&f.limit)->value_name("N"), std::string(limit_meaning).c_str());
}

// Checks the options every dlq command shares and fills `client`; a usage error names the flag.
Status ApplyCommon(const CommonArgs& args, const ParsedArgs& parsed, std::string_view command,
                   kafka::ClientConfig& client) {
  if (Status s = ApplyClientOptions(args.client, parsed, command, client); !s.ok()) return s;
  if (args.group.empty()) {
    return Error(ErrorCode::kInvalidArgument, "--group is required (or set KBUS_GROUP)");
  }
  if (args.timeout_ms < 1) {
    return Error(ErrorCode::kInvalidArgument, parsed.Spelling("timeout-ms") + " must be positive");
  }
  return Ok();
}

Result<kafka::DeadLetterFilter> MakeFilter(const FilterOptions& f, const ParsedArgs& parsed) {
  kafka::DeadLetterFilter filter;
  filter.reasons = f.reasons;
  filter.types = f.types;
  if (parsed.vm.count("since") != 0) filter.since_ms = f.since;
  if (parsed.vm.count("until") != 0) filter.until_ms = f.until;
  if (parsed.vm.count("limit") != 0) {
    if (f.limit < 1) {
      return Error(ErrorCode::kInvalidArgument, parsed.Spelling("limit") + " must be at least 1");
    }
    filter.limit = static_cast<std::size_t>(f.limit);
  }
  if (filter.since_ms && filter.until_ms && *filter.until_ms <= *filter.since_ms) {
    return Error(ErrorCode::kInvalidArgument,
                 parsed.Spelling("until") + " must be after " + parsed.Spelling("since"));
  }
  return filter;
}

// A library error; refused -X values may quote a secret.
int Fail(std::string_view command, const Error& error, const kafka::ClientConfig& client) {
  return Report(command, Error(error.code(), MaskSecrets(error.message(), client.properties),
                               error.retriable()));
}

// At most `max` bytes, not cutting a UTF-8 sequence; "..." marks a cut.
std::string Truncate(const std::string& text, std::size_t max) {
  if (text.size() <= max) return text;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "...";
}

void OptionalString(JsonWriter& w, std::string_view key, const std::string& value) {
  w.Key(key);
  if (value.empty()) {
    w.Null();
  } else {
    w.String(value);
  }
}

void OptionalNumber(JsonWriter& w, std::string_view key, std::int64_t value) {
  w.Key(key);
  if (value < 0) {
    w.Null();
  } else {
    w.Int64(value);
  }
}

std::string ListLine(const kafka::DeadLetterRecord& r) {
  JsonWriter w(InvalidUtf8::kReplace);  // a dead letter may hold any bytes
  w.StartObject();
  w.Key("partition");
  w.Int64(r.partition);
  w.Key("offset");
  w.Int64(r.offset);
  OptionalNumber(w, "at", r.at_ms);
  OptionalString(w, "reason", r.reason);
  OptionalString(w, "type", r.type);
  OptionalString(w, "id", r.id);
  OptionalString(w, "original_topic", r.original_topic);
  OptionalNumber(w, "original_partition", r.original_partition);
  OptionalNumber(w, "original_offset", r.original_offset);
  w.Key("attempts");
  w.Int64(r.attempts);
  w.Key("error");
  w.String(Truncate(r.error, kMaxErrorBytes));
  OptionalString(w, "key", r.key);
  w.EndObject();
  return w.Take();
}

// One JSON object, a member per line, so a person can read it and jq can parse it.
std::string ShowObject(const kafka::DeadLetterRecord& r, const std::string& group) {
  std::vector<std::pair<std::string, std::string>> members;
  auto add = [&](std::string_view key, auto write) {
    JsonWriter w(InvalidUtf8::kReplace);  // a dead letter may hold any bytes
    write(w);
    members.emplace_back(std::string(key), w.Take());
  };
  auto string = [&](std::string_view key, const std::string& value) {
    add(key, [&](JsonWriter& w) {
      if (value.empty()) {
        w.Null();
      } else {
        w.String(value);
      }
    });
  };
  auto number = [&](std::string_view key, std::int64_t value) {
    add(key, [&](JsonWriter& w) {
      if (value < 0) {
        w.Null();
      } else {
        w.Int64(value);
      }
    });
  };
  string("topic", group + ".dlq");
  number("partition", r.partition);
  number("offset", r.offset);
  string("reason", r.reason);
  string("error", r.error);
  string("type", r.type);
  string("id", r.id);
  string("original_topic", r.original_topic);
  number("original_partition", r.original_partition);
  number("original_offset", r.original_offset);
  number("original_timestamp", r.original_timestamp_ms);
  number("attempts", r.attempts);
  number("at", r.at_ms);
  string("key", r.key);
  add("headers", [&](JsonWriter& w) {
    // An object keeps one value per name: the last, as FindHeader reads it.
    w.StartObject();
    for (std::size_t i = 0; i < r.headers.size(); ++i) {
      bool repeated_later = false;
      for (std::size_t j = i + 1; j < r.headers.size() && !repeated_later; ++j) {
        repeated_later = r.headers[j].name == r.headers[i].name;
      }
      if (repeated_later) continue;
      w.Key(r.headers[i].name);
      w.String(r.headers[i].value);
    }
    w.EndObject();
  });
  const PayloadView payload = ViewPayload(r.payload);
  add("payload", [&](JsonWriter& w) { w.RawValue(payload.json); });
  if (!payload.note.empty()) string("payload_note", payload.note);
  std::string out = "{\n";
  for (std::size_t i = 0; i < members.size(); ++i) {
    JsonWriter key(InvalidUtf8::kReplace);
    key.String(members[i].first);
    out += "  " + std::string(key.View()) + ": " + members[i].second +
           (i + 1 < members.size() ? ",\n" : "\n");
  }
  return out + "}";
}

// "PARTITION:OFFSET", both non-negative integers.
Result<std::pair<std::int32_t, std::int64_t>> ParseRecordRef(const std::string& spec) {
  auto bad = [&] {
    return Error(ErrorCode::kInvalidArgument,
                 "'" + spec + "' does not name a record: expected PARTITION:OFFSET, e.g. 0:17");
  };
  const auto colon = spec.find(':');
  if (colon == std::string::npos) return bad();
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  const char* begin = spec.data();
  const char* mid = begin + colon;
  const char* end = begin + spec.size();
  const auto p = std::from_chars(begin, mid, partition);
  const auto o = std::from_chars(mid + 1, end, offset);
  if (p.ec != std::errc() || p.ptr != mid || o.ec != std::errc() || o.ptr != end ||
      partition < 0 || offset < 0) {
    return bad();
  }
  return std::pair{partition, offset};
}

struct ListArgs {
  CommonArgs common;
  FilterOptions filter;
};

po::options_description DescribeList(ListArgs& args) {
  po::options_description desc("kbus dlq list options", kHelpWidth, kHelpWidth / 2);
  AddCommon(desc, args.common);
  AddFilters(desc, args.filter, "print at most N records");
  return desc;
}

struct ShowArgs {
  CommonArgs common;
  std::string record;
};

po::options_description DescribeShow(ShowArgs& args) {
  po::options_description desc("kbus dlq show options", kHelpWidth, kHelpWidth / 2);
  AddCommon(desc, args.common);
  return desc;
}

struct RedriveArgs {
  CommonArgs common;
  FilterOptions filter;
  std::string to;
  double rate = 0;
  bool dry_run = false;
  bool from_beginning = false;
  bool verbose = false;
};

po::options_description DescribeRedrive(RedriveArgs& args) {
  po::options_description desc("kbus dlq redrive options", kHelpWidth, kHelpWidth / 2);
  AddCommon(desc, args.common);
  AddFilters(desc, args.filter, "re-send at most N records; the cursor stops after the last");
  desc.add_options()("to", po::value(&args.to)->value_name("TOPIC"),
                     "re-send to TOPIC instead of each record's original topic")(
      "rate", po::value(&args.rate)->value_name("N"),
      "re-send at most N records per second (default: no limit)")(
      "dry-run", po::bool_switch(&args.dry_run),
      "print what would be re-sent; send nothing, leave the cursor")(
      "from-beginning", po::bool_switch(&args.from_beginning),
      "start at the beginning of G.dlq instead of the cursor (records redriven before are "
      "sent again)")(
      "verbose,v", po::bool_switch(&args.verbose),
      "print a line per record: `redriven|skipped <G.dlq>/<partition>/<offset> ...`");
  return desc;
}

// Copies the signal flag (set by InstallStopSignals' handler) into `stop` until `done`.
class StopWatcher {
 public:
  explicit StopWatcher(std::atomic<bool>& stop)
      : thread_([this, &stop] {
          while (!done_.load()) {
            if (StopRequested()) stop = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
        }) {}
  ~StopWatcher() {
    done_ = true;
    thread_.join();
  }
  StopWatcher(const StopWatcher&) = delete;
  StopWatcher& operator=(const StopWatcher&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

void PrintDlqListHelp(std::ostream& os) {
  ListArgs args;
  PrintHelp(os, kListUsage, kListSummary, DescribeList(args));
}

void PrintDlqShowHelp(std::ostream& os) {
  ShowArgs args;
  PrintHelp(os, kShowUsage, kShowSummary, DescribeShow(args));
}

void PrintDlqRedriveHelp(std::ostream& os) {
  RedriveArgs args;
  PrintHelp(os, kRedriveUsage, kRedriveSummary, DescribeRedrive(args));
}

int RunDlqList(const std::vector<std::string>& argv) {
  ListArgs args;
  const auto desc = DescribeList(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kList, parsed.error());
  if (parsed->help()) {
    PrintDlqListHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyCommon(args.common, *parsed, kList, client); !s.ok()) {
    return Report(kList, s.error());
  }
  auto filter = MakeFilter(args.filter, *parsed);
  if (!filter.ok()) return Report(kList, filter.error());
  auto records = kafka::ListDeadLetters(client, args.common.group, *filter,
                                        std::chrono::milliseconds(args.common.timeout_ms));
  if (!records.ok()) return Fail(kList, records.error(), client);
  for (const auto& r : *records) std::cout << ListLine(r) << '\n';
  std::cout << std::flush;
  return kExitOk;
}

int RunDlqShow(const std::vector<std::string>& argv) {
  ShowArgs args;
  const auto desc = DescribeShow(args);
  po::options_description hidden;
  hidden.add_options()("record", po::value(&args.record));
  po::positional_options_description positional;
  positional.add("record", 1);
  auto parsed = ParseArgs(argv, desc, hidden, positional);
  if (!parsed.ok()) return Report(kShow, parsed.error());
  if (parsed->help()) {
    PrintDlqShowHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyCommon(args.common, *parsed, kShow, client); !s.ok()) {
    return Report(kShow, s.error());
  }
  if (args.record.empty()) {
    return ReportUsage(kShow, "name the record as PARTITION:OFFSET (as `kbus dlq list` prints)");
  }
  auto ref = ParseRecordRef(args.record);
  if (!ref.ok()) return Report(kShow, ref.error());
  auto record = kafka::ReadDeadLetter(client, args.common.group, ref->first, ref->second,
                                      std::chrono::milliseconds(args.common.timeout_ms));
  if (!record.ok()) return Fail(kShow, record.error(), client);
  std::cout << ShowObject(*record, args.common.group) << std::endl;
  return kExitOk;
}

int RunDlqRedrive(const std::vector<std::string>& argv) {
  RedriveArgs args;
  const auto desc = DescribeRedrive(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kRedrive, parsed.error());
  if (parsed->help()) {
    PrintDlqRedriveHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyCommon(args.common, *parsed, kRedrive, client); !s.ok()) {
    return Report(kRedrive, s.error());
  }
  auto filter = MakeFilter(args.filter, *parsed);
  if (!filter.ok()) return Report(kRedrive, filter.error());
  if (parsed->vm.count("rate") != 0 && !(args.rate > 0)) {
    return ReportUsage(kRedrive, parsed->Spelling("rate") + " must be a positive number of records "
                                                            "per second");
  }
  if (parsed->vm.count("to") != 0 && args.to.empty()) {
    return ReportUsage(kRedrive, parsed->Spelling("to") + " is empty: name a topic");
  }

  kafka::RedriveOptions options;
  options.filter = std::move(*filter);
  options.to_topic = args.to;
  options.max_per_second = args.rate;
  options.dry_run = args.dry_run;
  options.from_beginning = args.from_beginning;
  options.timeout = std::chrono::milliseconds(args.common.timeout_ms);
  const std::string dlq_topic = args.common.group + ".dlq";
  if (args.verbose) {
    options.on_record = [&](const kafka::DeadLetterRecord& r, bool redriven,
                            const kafka::RedriveReport&) {
      std::cout << (redriven ? "redriven " : "skipped ") << dlq_topic << '/' << r.partition << '/'
                << r.offset;
      if (redriven) {
        std::cout << " -> " << (args.to.empty() ? r.original_topic : args.to);
      } else {
        std::cout << " (" << (r.reason.empty() ? "no reason" : r.reason) << ", "
                  << (r.type.empty() ? "no type" : r.type) << ")";
      }
      std::cout << std::endl;
    };
  }
  InstallStopSignals();
  std::atomic<bool> stop{false};
  Result<kafka::RedriveReport> report = [&] {
    StopWatcher watcher(stop);
    return kafka::Redrive(client, args.common.group, options, &stop);
  }();
  if (!report.ok()) return Fail(kRedrive, report.error(), client);
  std::cout << "redriven " << report->redriven << ", skipped " << report->skipped;
  if (args.dry_run) std::cout << " (dry run: nothing sent, the cursor did not move)";
  if (report->stopped) std::cout << " (stopped: the next run continues from here)";
  std::cout << std::endl;
  return kExitOk;
}

}  // namespace kbus::cli
