// kbus tail: prints a topic's records as JSON lines, with the kbus envelope decoded and JSON
// payloads embedded, for people and for scripts (jq). Without --group it reads every partition
// and commits nothing, so it never disturbs a consumer group.
//
// kbus watch: follows launcher jobs on their events topic (docs/launcher.md) the same way: a
// progress bar on a terminal, one line per event otherwise; with --job it ends with the job.
//
// It consumes with librdkafka directly: kbus's Worker runs handlers, it does not hand out raw
// records. Thread safety: everything runs on the main thread; librdkafka's logs are served from
// our poll calls (log.queue), and the signal handler only sets a flag.

#include <librdkafka/rdkafka.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include "commands.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/config.hpp"
#include "kbus/log.hpp"
#include "consumer_errors.hpp"
#include "kbus/cli/options.hpp"
#include "payload_view.hpp"

namespace kbus::cli {

namespace detail {
// Owning wrappers for the librdkafka handles tail uses; nothing else here calls *_destroy.
template <class T, void (*Destroy)(T*)>
struct RdDeleter {
  void operator()(T* p) const noexcept {
    if (p) Destroy(p);
  }
};
using RdKafkaPtr = std::unique_ptr<rd_kafka_t, RdDeleter<rd_kafka_t, &rd_kafka_destroy>>;
using RdConfPtr =
    std::unique_ptr<rd_kafka_conf_t, RdDeleter<rd_kafka_conf_t, &rd_kafka_conf_destroy>>;
using RdTopicPtr =
    std::unique_ptr<rd_kafka_topic_t, RdDeleter<rd_kafka_topic_t, &rd_kafka_topic_destroy>>;
using RdMessagePtr =
    std::unique_ptr<rd_kafka_message_t, RdDeleter<rd_kafka_message_t, &rd_kafka_message_destroy>>;
using RdPartitionListPtr = std::unique_ptr<
    rd_kafka_topic_partition_list_t,
    RdDeleter<rd_kafka_topic_partition_list_t, &rd_kafka_topic_partition_list_destroy>>;
using RdMetadataPtr =
    std::unique_ptr<const rd_kafka_metadata_t,
                    RdDeleter<const rd_kafka_metadata_t, &rd_kafka_metadata_destroy>>;
}  // namespace detail

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

void LogTrampoline(const rd_kafka_t*, int level, const char* facility, const char* text) noexcept {
  try {
    // syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug.
    const LogLevel l = level <= 3   ? LogLevel::kError
                       : level == 4 ? LogLevel::kWarn
                       : level <= 6 ? LogLevel::kInfo
                                    : LogLevel::kDebug;
    Log(l, text, {{"component", "librdkafka"}, {"facility", facility}});
  } catch (...) {
  }
}

std::map<std::string, std::string> ConsumerProperties(const TailArgs& args,
                                                      const kafka::ClientConfig& client) {
  std::map<std::string, std::string> p = {
      {"bootstrap.servers", client.brokers},
      {"client.id", client.client_id},
      {"enable.auto.offset.store", "false"},  // stored after printing: at-least-once
      {"auto.offset.reset", args.from == "end" ? "latest" : "earliest"},
      {"enable.partition.eof", "false"},
      {"fetch.wait.max.ms", "100"},
      {"log.queue", "true"},  // logs are served by our poll calls, on this thread
  };
  if (args.group.empty()) {
    // librdkafka's assign() needs a group id, but nothing joins or commits under it.
    p["group.id"] = "kbus-tail-" + std::to_string(std::random_device{}());
    p["enable.auto.commit"] = "false";
  } else {
    p["group.id"] = args.group;
    p["enable.auto.commit"] = "true";
  }
  for (const auto& [k, v] : client.properties) p[k] = v;
  return p;
}

Result<detail::RdKafkaPtr> NewConsumer(const std::map<std::string, std::string>& properties) {
  detail::RdConfPtr conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : properties) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      return Error(ErrorCode::kInvalidArgument,
                   MaskSecrets("librdkafka property '" + k + "' refused: " + err, properties));
    }
  }
  rd_kafka_conf_set_log_cb(conf.get(), &LogTrampoline);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err);
  if (rk == nullptr) {
    return Error(ErrorCode::kInvalidArgument,
                 MaskSecrets(std::string("cannot create a Kafka consumer: ") + err, properties));
  }
  conf.release();  // owned by rk now, only after success
  detail::RdKafkaPtr handle(rk);
  rd_kafka_set_log_queue(rk, nullptr);  // the main queue, forwarded to the consumer queue below
  rd_kafka_poll_set_consumer(rk);
  return handle;
}

// The topic's partition count from metadata; retried because a broker that just started may not
// know the topic yet.
Result<int> PartitionCount(rd_kafka_t* rk, const std::string& topic) {
  const auto deadline = std::chrono::steady_clock::now() + kMetadataTimeout;
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
  while (!StopRequested()) {
    detail::RdTopicPtr rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
    const rd_kafka_metadata_t* md = nullptr;
    last = rd_kafka_metadata(rk, 0, rkt.get(), &md, 5000);
    if (last == RD_KAFKA_RESP_ERR_NO_ERROR) {
      detail::RdMetadataPtr owned(md);
      if (md->topic_cnt == 1) {
        last = md->topics[0].err;
        if (last == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
          return md->topics[0].partition_cnt;
        }
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  if (last == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return Error(ErrorCode::kNotFound, "topic '" + topic +
                                           "' does not exist: create it with `kbus topics create` "
                                           "(or `kbus broker --topic` on an embedded broker)");
  }
  return Error(ErrorCode::kTransport,
               "cannot read metadata of topic '" + topic + "': " + rd_kafka_err2str(last), true);
}

Status Subscribe(rd_kafka_t* rk, const TailArgs& args) {
  rd_kafka_resp_err_t err;
  if (!args.group.empty()) {
    detail::RdPartitionListPtr topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), args.topic.c_str(), RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(rk, topics.get());
  } else {
    auto partitions = PartitionCount(rk, args.topic);
    if (!partitions.ok()) return partitions.error();
    detail::RdPartitionListPtr list(rd_kafka_topic_partition_list_new(*partitions));
    for (int p = 0; p < *partitions; ++p) {
      rd_kafka_topic_partition_list_add(list.get(), args.topic.c_str(), p)->offset =
          args.from == "end" ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
    }
    err = rd_kafka_assign(rk, list.get());
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Error(ErrorCode::kTransport,
                 "cannot read topic '" + args.topic + "': " + rd_kafka_err2str(err));
  }
  return Ok();
}

// One record as a JSON line (without the newline).
std::string FormatRecord(const rd_kafka_message_t& m) {
  // Headers as views into the message; a null value reads as empty for the envelope.
  std::vector<HeaderView> headers;
  std::vector<bool> is_null;
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(&m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      headers.push_back({name, value ? std::string_view(static_cast<const char*>(value), size)
                                     : std::string_view()});
      is_null.push_back(value == nullptr);
    }
  }

  JsonWriter w(InvalidUtf8::kReplace);  // headers and keys may hold any bytes
  w.StartObject();
  w.Key("topic");
  w.String(rd_kafka_topic_name(m.rkt));
  w.Key("partition");
  w.Int64(m.partition);
  w.Key("offset");
  w.Int64(m.offset);
  w.Key("timestamp");
  if (const std::int64_t ts = rd_kafka_message_timestamp(&m, nullptr); ts >= 0) {
    w.Int64(ts);
  } else {
    w.Null();
  }
  w.Key("key");
  if (m.key != nullptr) {
    w.String({static_cast<const char*>(m.key), m.key_len});
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
    if (is_null[i]) {
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

  const PayloadView payload = ViewPayload(
      m.payload ? std::optional<std::string_view>({static_cast<const char*>(m.payload), m.len})
                : std::nullopt);
  w.Key("payload");
  w.RawValue(payload.json);
  if (!payload.note.empty()) field("payload_note", payload.note);
  w.EndObject();
  return w.Take();
}

using kafka::detail::CheckConsumerError;

// Reads the topic and hands each record to `on_record` until it returns false, a signal, or
// --timeout-ms without a record (then *idle is set, if given).
Status Read(rd_kafka_t* rk, const TailArgs& args,
            const std::function<bool(const rd_kafka_message_t&)>& on_record, bool* idle = nullptr) {
  if (Status s = Subscribe(rk, args); !s.ok()) return s;
  const bool committing = !args.group.empty();
  auto last_record = std::chrono::steady_clock::now();
  while (!StopRequested()) {
    if (args.timeout_ms > 0 && std::chrono::steady_clock::now() - last_record >=
                                   std::chrono::milliseconds(args.timeout_ms)) {
      if (idle != nullptr) *idle = true;
      break;
    }
    detail::RdMessagePtr m(rd_kafka_consumer_poll(rk, static_cast<int>(kPollInterval.count())));
    if (!m) continue;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (Status s = CheckConsumerError(rk, *m, args.topic); !s.ok()) return s;
      continue;
    }
    const bool more = on_record(*m);
    last_record = std::chrono::steady_clock::now();
    if (committing) {
      // Stored after printing, committed by auto-commit and at exit: at-least-once output.
      const rd_kafka_resp_err_t err = rd_kafka_offset_store(m->rkt, m->partition, m->offset);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        Log(LogLevel::kWarn, "cannot store offset (partition revoked?)",
            {{"topic", args.topic},
             {"partition", m->partition},
             {"offset", m->offset},
             {"error", rd_kafka_err2str(err)}});
      }
    }
    if (!more) break;
  }
  if (committing) {
    const rd_kafka_resp_err_t err = rd_kafka_commit(rk, nullptr, 0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
      return Error(
          ErrorCode::kTransport,
          std::string("cannot commit the printed records' offsets: ") + rd_kafka_err2str(err),
          true);
    }
  }
  return Ok();
}

// Creates the consumer, runs `body` with it, and closes it (leaving the group, when in one, at
// once instead of after the session timeout).
Status WithConsumer(const TailArgs& args, const kafka::ClientConfig& client,
                    const std::function<Status(rd_kafka_t*)>& body) {
  const auto properties = ConsumerProperties(args, client);
  Log(LogLevel::kDebug, "consumer configuration",
      {{"properties", kafka::DescribeProperties(properties)}});
  InstallStopSignals();
  auto consumer = NewConsumer(properties);
  if (!consumer.ok()) return consumer.error();
  const Status status = body(consumer->get());
  if (const rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer->get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Log(LogLevel::kWarn, "consumer close failed", {{"error", rd_kafka_err2str(err)}});
  }
  return status;
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
std::optional<T> Decode(const rd_kafka_message_t& m) {
  if (m.payload == nullptr) return std::nullopt;
  auto decoded = FromJson<T>({static_cast<const char*>(m.payload), m.len});
  if (!decoded.ok()) return std::nullopt;
  return std::move(decoded.value());
}

Seen Show(const rd_kafka_message_t& m, const WatchArgs& args, JobView& view, long long& skipped) {
  std::vector<HeaderView> headers;
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(&m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      if (value != nullptr) headers.push_back({name, std::string_view(static_cast<const char*>(value), size)});
    }
  }
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
  const Status status = WithConsumer(args, client, [&](rd_kafka_t* rk) {
    return Read(rk, args, [&](const rd_kafka_message_t& m) {
      std::cout << FormatRecord(m) << std::endl;  // flushed: a pipe reader sees it at once
      return args.count == 0 || ++printed < args.count;
    });
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
  const Status status = WithConsumer(args.read, client, [&](rd_kafka_t* rk) {
    return Read(rk, args.read, [&](const rd_kafka_message_t& m) {
      end = Show(m, args, view, skipped);
      return args.job.empty() || end == Seen::kOther;
    }, &idle);
  });
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
