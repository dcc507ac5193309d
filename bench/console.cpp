// kbus-bench --console: what `kbus console` costs with a large system behind it, against plain
// librdkafka and against its own cheapest endpoint, in one process on one broker.
//
//   kbus-bench --console                       embedded broker: 100,000 workflow instances,
//                                              100,000 dead letters, 5,000 launcher jobs
//   kbus-bench --console --brokers HOST:PORT   the same on a real Kafka cluster
//   kbus-bench --console --quick               smoke test (ctest label "bench"): 2,000 instances,
//                                              2,000 dead letters, 500 jobs, 8 clients; checks only
//
// The system. Three fresh topics of --console-partitions partitions each, as a video platform
// would have them:
//   <prefix>.encode.state  one state record per workflow instance, in the shape the workflow host
//                          writes (docs/workflows.md "The state record"): envelope, processed
//                          message ids, an outbox (a LaunchProcess while running, the final event
//                          once finished), timeouts (the silence timer; kbus.expire and
//                          kbus.result-expire once finished), the origin record with kbus's
//                          envelope headers, and a DelegatedState (the command's JSON, attempt,
//                          phase, last outcome, history). 20 % running, 70 % completed (one in
//                          five of those with a result and result_expires_ms), 10 % failed.
//   <prefix>.encode.in     the launcher's events for the first --console-jobs instances:
//                          ProcessStarted, then ProcessProgress (running) or ProcessExited.
//   <prefix>-encoder.dlq   dead letters made by kbus::MakeDeadLetter, the function a Worker
//                          dead-letters with: the original EncodeVideo (about --payload-bytes of
//                          JSON, full envelope) plus every kbus-dlq-* header (reason, error,
//                          original topic/partition/offset/timestamp, group, attempts, host, at),
//                          five reasons in turn.
// Records go to partitions in turn. The embedded broker keeps about 5 MiB per partition and drops
// older data silently, so there the partition count is raised until each partition holds at most
// kEmbeddedPartitionBytes (estimated from the records themselves, said in the output). After the
// fill, every partition's low watermark must be 0 and the high watermarks must add up to what
// was written, or the run fails.
//
// 1. Baseline: a raw librdkafka consumer (the console's reader settings: fetch.wait.max.ms 100,
//    fetch.message.max.bytes 1 MiB) assigned every partition of the three topics from the
//    beginning, reading until every partition reported its end. It only counts records and
//    bytes: the least any program that reads what the console reads must do.
// 2. The console: malloc_trim, then VmRSS and the heap in use (mallinfo2) are read; a
//    kbus::console::Console is built (port 0, discovery off, the three topics named) and polled
//    every 10 ms until caught_up() and its stats() equal what was written. Start-up is that
//    time; RSS and heap growth are read then. Stats are checked against /api/workflows,
//    /api/dead-letter-groups and the list totals too. RSS growth includes librdkafka's fetch
//    buffers and freed memory glibc keeps; the heap figure only what is in use.
// 3. The API: --console-clients threads, each with its own httplib::Client on a keep-alive
//    connection, send the same GET back to back for --console-seconds; per request the wall
//    time is kept, from the request's start (the first one connects: a few microseconds on
//    loopback, unless the server makes the connection wait) to its answer. GET /api/status
//    (a few hundred bytes, no index walked) is the baseline of the HTTP layer; every list
//    endpoint's p50 and p99 are also shown divided by the status ones. Any answer other than
//    200 fails the run.
// The program exits 1 when a check fails; never on the figures.

#include "console.hpp"

#include <httplib.h>
#include <librdkafka/rdkafka.h>
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "encode_video.hpp"
#include "kbus/console/console.hpp"
#include "kbus/context.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/log.hpp"
#include "kbus/uuid.hpp"
#include "kbus/workflows/delegated_command.hpp"
#include "bench_topics.hpp"
#include "process_stats.hpp"
#include "raw_client.hpp"

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// What one partition of the embedded broker may hold here: it keeps about 5 MiB, and a record's
// size in its log is only estimated (EstimatedBytes).
constexpr std::int64_t kEmbeddedPartitionBytes = 3 * 1024 * 1024;
constexpr std::int64_t kDay = 24 * 3600 * 1000;
constexpr std::string_view kReasons[] = {kbus::reason::kHandlerError, kbus::reason::kRejected,
                                         kbus::reason::kDecodeError, kbus::reason::kMaxDeliveries,
                                         kbus::reason::kNonRetryable};

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }


double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::vector<std::string> g_problems;

void Problem(std::string what) {
  std::printf("PROBLEM     %s\n", what.c_str());
  std::fflush(stdout);
  g_problems.push_back(std::move(what));
}

struct Env {
  ConsoleOptions o;
  std::string brokers;
  kbus::kafka::EmbeddedBroker* embedded = nullptr;  // null: a real broker
  std::string prefix;
  std::string workflow, state_topic, in_topic, group, dlq_topic;
  std::int64_t base_ms = 0;  // the first instance's creation
};

// ---- the records --------------------------------------------------------------------------------

// A record's size in a broker's log, about: key, value, headers and some framing.
std::int64_t EstimatedBytes(const kbus::OutgoingRecord& r) {
  std::int64_t n = 70 + static_cast<std::int64_t>(r.key.size() + r.payload.size());
  for (const auto& h : r.headers) n += 4 + static_cast<std::int64_t>(h.name.size() + h.value.size());
  return n;
}

enum class Fate { kRunning, kCompleted, kFailed };

Fate FateOf(std::int64_t i) {
  const std::int64_t k = i % 10;
  return k < 2 ? Fate::kRunning : k == 2 ? Fate::kFailed : Fate::kCompleted;
}

bool HasResult(std::int64_t i) { return FateOf(i) == Fate::kCompleted && i % 5 == 0; }

std::string InstanceId(std::int64_t i) {
  char id[32];
  std::snprintf(id, sizeof id, "clip-%08ld", static_cast<long>(i));
  return id;
}

int AttemptOf(std::int64_t i) { return FateOf(i) == Fate::kFailed ? 3 : 1 + static_cast<int>(i % 3); }

// The command that started instance i: an EncodeVideo of about `bytes` of JSON.
EncodeVideo Command(std::int64_t i, int bytes) {
  EncodeVideo v = MakeVideo(static_cast<std::size_t>(i));
  v.id = InstanceId(i);
  const auto size = static_cast<int>(kbus::ToJson(v).size());
  if (bytes > size + 8) v.url += "?sig=" + std::string(static_cast<std::size_t>(bytes - size - 5), 'f');
  return v;
}

void WriteHeaders(kbus::JsonWriter& w, const std::vector<kbus::Header>& headers) {
  w.StartArray();
  for (const auto& h : headers) {
    w.StartArray();
    w.String(h.name);
    w.String(h.value);
    w.EndArray();
  }
  w.EndArray();
}

void WriteOutgoing(kbus::JsonWriter& w, const kbus::OutgoingRecord& r) {
  w.StartObject();
  w.Key("topic");
  w.String(r.topic);
  w.Key("key");
  w.String(r.key);
  w.Key("payload");
  w.String(r.payload);
  w.Key("headers");
  WriteHeaders(w, r.headers);
  w.EndObject();
}

void WriteTimeout(kbus::JsonWriter& w, const std::string& id, std::string_view name, std::int64_t due_ms) {
  w.StartObject();
  w.Key("id");
  w.String(id);
  w.Key("name");
  w.String(name);
  w.Key("due_ms");
  w.Int64(due_ms);
  w.Key("payload");
  w.String("");
  w.EndObject();
}

struct InstanceTimes {
  std::int64_t created_ms, updated_ms, finished_ms;
};

InstanceTimes TimesOf(const Env& env, std::int64_t i) {
  const std::int64_t created = env.base_ms + i * 20;
  const std::int64_t took = 30000 + (i * 7919) % 600000;
  const bool finished = FateOf(i) != Fate::kRunning;
  return {created, created + (finished ? took : took / 3), finished ? created + took : 0};
}

// Instance i's state record, as the workflow host writes it (workflows/src/record.cpp).
kbus::OutgoingRecord StateRecord(const Env& env, std::int64_t i) {
  const std::string id = InstanceId(i);
  const Fate fate = FateOf(i);
  const int attempt = AttemptOf(i);
  const InstanceTimes t = TimesOf(env, i);
  const int version = 2 + 3 * attempt;  // launch, started, a heartbeat or two, exit, per attempt

  const EncodeVideo command = Command(i, 208);
  kbus::SendOptions origin_options{.topic = env.in_topic, .key = id, .workflow_id = id};
  const kbus::OutgoingRecord origin = kbus::BuildRecord(command, origin_options);

  kbus::workflows::DelegatedState state;
  state.command = origin.payload;
  state.job_id = id;
  state.attempt = attempt;
  for (int a = 1; a < attempt; ++a) state.history.push_back(std::to_string(a) + ":failed exit 1");
  switch (fate) {
    case Fate::kRunning:
      state.phase = i % 4 == 0 ? "waiting" : "running";
      state.silence_timer = id + "#" + std::to_string(version);
      state.silence_due_ms = t.updated_ms + 60000;
      if (attempt > 1) {
        state.last_outcome = "failed";
        state.last_exit_code = 1;
        state.last_error = "exit 1";
      }
      break;
    case Fate::kCompleted:
      state.phase = "succeeded";
      state.last_outcome = "succeeded";
      state.last_exit_code = 0;
      state.history.push_back(std::to_string(attempt) + ":succeeded");
      break;
    case Fate::kFailed:
      state.phase = "failed";
      state.last_outcome = "failed";
      state.last_exit_code = 1;
      state.last_error = "exit 1: Invalid data found when processing input";
      state.history.push_back(std::to_string(attempt) + ":failed exit 1");
      break;
  }

  kbus::OutgoingRecord out;
  if (fate == Fate::kRunning) {
    kbus::handlers::LaunchProcess launch;
    launch.job_id = id;
    launch.attempt = attempt;
    launch.program = "ffmpeg-encode";
    launch.args = {"--input", command.url, "--height", "720", "--output", id + ".mp4"};
    launch.heartbeat_interval = 5s;
    launch.reply_to = env.in_topic;
    out = kbus::BuildRecord(launch, kbus::SendOptions{.topic = std::string(kbus::handlers::kLauncherTopic), .key = id,
                                                      .workflow_id = id});
  } else if (fate == Fate::kCompleted) {
    out = kbus::BuildRecord("video.VideoEncoded", kbus::MessageKind::kEvent, "video.events",
                            "{\"video_id\":\"" + id + "\",\"output\":\"" + id + ".mp4\",\"height\":720}",
                            kbus::SendOptions{.key = id, .workflow_id = id}, nullptr, 0);
  } else {
    out = kbus::BuildRecord("kbus.DelegatedCommandFailed", kbus::MessageKind::kEvent, "kbus.workflows.events",
                            "{\"workflow\":\"" + env.workflow + "\",\"workflow_id\":\"" + id +
                                "\",\"command_type\":\"bench.EncodeVideo\",\"attempts\":3,\"reason\":\"exit 1\","
                                "\"outcome\":\"failed\"}",
                            kbus::SendOptions{.key = id, .workflow_id = id}, nullptr, 0);
  }

  kbus::JsonWriter w;
  w.StartObject();
  w.Key("workflow");
  w.String(env.workflow);
  w.Key("id");
  w.String(id);
  w.Key("schema");
  w.Int64(1);
  w.Key("version");
  w.Int64(version);
  w.Key("run");
  w.Int64(1);
  w.Key("status");
  w.String(fate == Fate::kRunning ? "running" : fate == Fate::kCompleted ? "completed" : "failed");
  w.Key("created_ms");
  w.Int64(t.created_ms);
  w.Key("updated_ms");
  w.Int64(t.updated_ms);
  w.Key("finished_ms");
  w.Int64(t.finished_ms);
  w.Key("correlation_id");
  w.String(*origin.FindHeader(kbus::header::kCorrelationId));
  w.Key("processed");
  w.StartArray();
  for (int v = 0; v < std::min(version, 16); ++v) w.String(kbus::NameUuid(id + "/" + std::to_string(v)));
  w.EndArray();
  w.Key("last_message");
  w.String(kbus::NameUuid(id + "/" + std::to_string(version - 1)));
  w.Key("outbox");
  w.StartArray();
  WriteOutgoing(w, out);
  w.EndArray();
  w.Key("timeouts");
  w.StartArray();
  if (fate == Fate::kRunning) {
    WriteTimeout(w, state.silence_timer, "silence", state.silence_due_ms);
  } else {
    WriteTimeout(w, id + "#expire", "kbus.expire", t.finished_ms + 7 * kDay);
    if (HasResult(i)) WriteTimeout(w, id + "#result-expire", "kbus.result-expire", t.finished_ms + kDay);
  }
  w.EndArray();
  w.Key("origin");
  w.StartObject();
  w.Key("topic");
  w.String(env.in_topic);
  w.Key("partition");
  w.Int64(i % 8);
  w.Key("offset");
  w.Int64(i / 8);
  w.Key("timestamp_ms");
  w.Int64(t.created_ms);
  w.Key("key");
  w.String(id);
  w.Key("payload");
  w.String(origin.payload);
  w.Key("headers");
  WriteHeaders(w, origin.headers);
  w.EndObject();
  w.Key("state");
  w.RawValue(kbus::ToJson(state));
  if (HasResult(i)) {
    w.Key("result");
    w.RawValue("{\"output\":\"s3://videos/out/" + id + ".mp4\",\"frames\":" + std::to_string(1000 + i % 9000) +
               ",\"bytes\":" + std::to_string(10000000 + i) + "}");
    w.Key("result_expires_ms");
    w.Int64(t.finished_ms + kDay);
  }
  w.EndObject();

  kbus::OutgoingRecord r;
  r.topic = env.state_topic;
  r.key = id;
  r.payload = w.Take();
  return r;
}

// Dead letter i: what a Worker of `group` sends when it gives EncodeVideo i up.
kbus::OutgoingRecord DeadLetter(const Env& env, std::int64_t i) {
  const std::string id = InstanceId(i);
  const kbus::OutgoingRecord original =
      kbus::BuildRecord(Command(i, env.o.payload_bytes), kbus::SendOptions{.topic = env.in_topic, .key = id});
  std::vector<kbus::HeaderView> views;
  for (const auto& h : original.headers) views.push_back({h.name, h.value});
  kbus::InboundRecord in;
  in.topic = env.in_topic;
  in.partition = static_cast<std::int32_t>(i % 8);
  in.offset = i / 8;
  in.timestamp_ms = env.base_ms + i * 20;
  in.key = original.key;
  in.payload = original.payload;
  in.headers = views;
  const std::string_view reason = kReasons[i % std::size(kReasons)];
  const std::string error =
      reason == kbus::reason::kDecodeError
          ? "field 'params.bitrate': expected an integer, got a string"
          : "ffmpeg exited 1 after " + std::to_string(3 + i % 50) + " s: [h264 @ 0x55d0c8] " + id +
                ": Invalid data found when processing input; moov atom not found";
  const std::string host = "encoder-" + std::to_string(i % 4);
  return kbus::MakeDeadLetter(in, kbus::DeadLetterInfo{.group = env.group,
                                                       .reason = reason,
                                                       .error = error,
                                                       .attempts = reason == kbus::reason::kRejected ? 1 : 5,
                                                       .host = host});
}

// Job j's launcher events: started, then progress while it runs or its exit.
std::vector<kbus::OutgoingRecord> JobEvents(const Env& env, std::int64_t j) {
  const std::string id = InstanceId(j);
  const kbus::SendOptions options{.topic = env.in_topic, .key = id, .workflow_id = id};
  std::vector<kbus::OutgoingRecord> out;
  kbus::handlers::ProcessStarted started{.job_id = id, .attempt = AttemptOf(j), .program = "ffmpeg-encode",
                                         .pid = 10000 + j, .host = "launcher-" + std::to_string(j % 3)};
  out.push_back(kbus::BuildRecord(started, options));
  const Fate fate = FateOf(j);
  if (fate == Fate::kRunning) {
    kbus::handlers::ProcessProgress progress{
        .job_id = id, .attempt = started.attempt, .percent = static_cast<int>(j % 100), .message = "frame 1200/3000"};
    out.push_back(kbus::BuildRecord(progress, options));
  } else {
    kbus::handlers::ProcessExited exited;
    exited.job_id = id;
    exited.attempt = started.attempt;
    exited.outcome = fate == Fate::kCompleted ? "succeeded" : "failed";
    exited.exit_code = fate == Fate::kCompleted ? 0 : 1;
    exited.duration = std::chrono::milliseconds(30000 + j % 600000);
    if (fate == Fate::kFailed) exited.stderr_tail = "[h264 @ 0x55d0c8] Invalid data found when processing input\n";
    out.push_back(kbus::BuildRecord(exited, options));
  }
  return out;
}

// ---- the fill -----------------------------------------------------------------------------------

struct Fill {
  std::int64_t states = 0, dead_letters = 0, events = 0;
  std::int64_t running = 0, completed = 0, failed = 0, with_result = 0;
  std::int64_t jobs_running = 0, jobs_finished = 0;
  std::map<std::string, std::int64_t> reasons;
  std::int64_t state_bytes = 0, dlq_bytes = 0, event_bytes = 0;
};

void CreateTopic(const Env& env, const std::string& name, int partitions, bool compact) {
  CreateBenchTopic(env.embedded, env.brokers, name, partitions, compact);
}

// The partitions a topic of `count` records like those of `make` needs; on a real broker, as given.
template <class Make>
int PartitionsFor(const Env& env, std::int64_t count, Make make) {
  if (!env.embedded || count == 0) return env.o.partitions;
  const std::int64_t sample = std::min<std::int64_t>(count, 200);
  std::int64_t bytes = 0;
  for (std::int64_t i = 0; i < sample; ++i) {
    for (const auto& r : make(i)) bytes += EstimatedBytes(r);
  }
  const double total = static_cast<double>(bytes) / static_cast<double>(sample) * static_cast<double>(count);
  const auto need = static_cast<int>(std::ceil(total / static_cast<double>(kEmbeddedPartitionBytes)));
  return std::max(env.o.partitions, need);
}

// Checks that every record written is in the topic; false (and a problem) when not.
bool CheckKept(const Env& env, rd_kafka_t* rk, const std::string& topic, int partitions, std::int64_t written) {
  std::int64_t kept = 0;
  bool ok = true;
  for (int p = 0; p < partitions; ++p) {
    const auto [low, high] = raw::Watermarks(rk, topic, p);
    if (low != 0) {
      Problem(topic + "[" + std::to_string(p) + "] dropped records (low watermark " + std::to_string(low) +
              (env.embedded ? "): the embedded broker keeps about 5 MiB per partition" : ")"));
      ok = false;
    }
    kept += high - low;
  }
  if (kept != written) {
    Problem(topic + " holds " + std::to_string(kept) + " records, not the " + std::to_string(written) + " written");
    ok = false;
  }
  return ok;
}

struct Topology {
  int state_partitions = 0, dlq_partitions = 0, event_partitions = 0;
  int total() const { return state_partitions + dlq_partitions + event_partitions; }
};

Fill FillTopics(const Env& env, const Topology& top) {
  Fill f;
  kbus::kafka::ProducerConfig pc;
  pc.client.brokers = env.brokers;
  pc.client.client_id = "kbus-bench-console-fill";
  pc.linger = 20ms;
  raw::RdConfPtr conf = raw::ProducerConf(pc);
  raw::RdKafkaPtr producer = raw::NewClient(RD_KAFKA_PRODUCER, conf);
  std::int64_t n = 0;
  auto produce = [&](const kbus::OutgoingRecord& r, int partitions, std::int64_t i) {
    raw::Produce(producer.get(), r, static_cast<std::int32_t>(i % partitions));
    if (++n % 1024 == 0) rd_kafka_poll(producer.get(), 0);
  };
  for (std::int64_t i = 0; i < env.o.instances; ++i) {
    const kbus::OutgoingRecord r = StateRecord(env, i);
    f.state_bytes += static_cast<std::int64_t>(r.payload.size());
    produce(r, top.state_partitions, i);
    ++f.states;
    switch (FateOf(i)) {
      case Fate::kRunning: ++f.running; break;
      case Fate::kCompleted: ++f.completed; break;
      case Fate::kFailed: ++f.failed; break;
    }
    if (HasResult(i)) ++f.with_result;
  }
  for (std::int64_t i = 0; i < env.o.dead_letters; ++i) {
    const kbus::OutgoingRecord r = DeadLetter(env, i);
    f.dlq_bytes += EstimatedBytes(r);
    produce(r, top.dlq_partitions, i);
    ++f.dead_letters;
    ++f.reasons[std::string(kReasons[i % std::size(kReasons)])];
  }
  std::int64_t e = 0;
  for (std::int64_t j = 0; j < env.o.jobs; ++j) {
    for (const auto& r : JobEvents(env, j)) {
      f.event_bytes += EstimatedBytes(r);
      produce(r, top.event_partitions, e++);
      ++f.events;
    }
    (FateOf(j) == Fate::kRunning ? f.jobs_running : f.jobs_finished)++;
  }
  raw::Flush(producer.get(), 300s);
  return f;
}

// ---- 1. the raw read ----------------------------------------------------------------------------

struct RawRead {
  double seconds = -1, cpu_s = 0;
  std::int64_t records = 0, bytes = 0;
};

RawRead ReadRaw(const Env& env, const Topology& top, std::int64_t expected) {
  RawRead r;
  const double cpu0 = CpuSeconds();
  const auto start = Clock::now();
  raw::RdKafkaPtr consumer = raw::NewClient(RD_KAFKA_CONSUMER,
                                            raw::Properties{{"bootstrap.servers", env.brokers},
                                                            {"client.id", "kbus-bench-console-raw"},
                                                            {"group.id", env.prefix + "-raw"},
                                                            {"enable.auto.commit", "false"},
                                                            {"enable.auto.offset.store", "false"},
                                                            {"enable.partition.eof", "true"},
                                                            {"auto.offset.reset", "earliest"},
                                                            {"fetch.wait.max.ms", "100"},
                                                            {"fetch.message.max.bytes", "1048588"}});
  rd_kafka_poll_set_consumer(consumer.get());
  raw::RdListPtr list(rd_kafka_topic_partition_list_new(top.total()));
  const std::pair<const std::string*, int> topics[] = {
      {&env.state_topic, top.state_partitions}, {&env.dlq_topic, top.dlq_partitions}, {&env.in_topic, top.event_partitions}};
  for (const auto& [topic, partitions] : topics) {
    for (int p = 0; p < partitions; ++p) {
      rd_kafka_topic_partition_list_add(list.get(), topic->c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
  }
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), list.get())) {
    throw std::runtime_error(std::string("cannot assign the raw reader: ") + rd_kafka_err2str(err));
  }
  std::size_t at_end = 0;
  std::map<std::pair<std::string, std::int32_t>, bool> ended;
  while (at_end < static_cast<std::size_t>(top.total())) {
    raw::RdMessagePtr m(rd_kafka_consumer_poll(consumer.get(), 100));
    if (Seconds(Clock::now() - start) > 600) {
      Problem("the raw read had not finished after 600 s");
      break;
    }
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (!ended[{rd_kafka_topic_name(m->rkt), m->partition}]) {
        ended[{rd_kafka_topic_name(m->rkt), m->partition}] = true;
        ++at_end;
      }
    } else if (m->err) {
      Problem(std::string("the raw read failed: ") + rd_kafka_message_errstr(m.get()));
      break;
    } else {
      ++r.records;
      r.bytes += static_cast<std::int64_t>(m->len + m->key_len);
    }
  }
  r.seconds = Seconds(Clock::now() - start);
  r.cpu_s = CpuSeconds() - cpu0;
  raw::Close(consumer.get());
  if (r.records != expected) {
    Problem("the raw read saw " + std::to_string(r.records) + " records of " + std::to_string(expected));
  }
  return r;
}

// ---- 2. the console's start-up ------------------------------------------------------------------

struct Startup {
  double caught_up_s = -1, counted_s = -1, cpu_s = 0;
  std::int64_t rss_kb = 0, heap_bytes = 0, rss_before_kb = 0;
};

std::unique_ptr<kbus::console::Console> StartConsole(const Env& env, const Fill& f, Startup* out) {
  malloc_trim(0);
  out->rss_before_kb = StatusKb("VmRSS");
  const std::int64_t heap0 = HeapInUse();
  const double cpu0 = CpuSeconds();
  const auto start = Clock::now();
  kbus::console::ConsoleConfig config;
  config.client.brokers = env.brokers;
  config.client.client_id = "kbus-bench-console";
  config.port = 0;
  config.discover = false;  // a shared broker's other topics are not this run's
  config.state_topics = {env.state_topic};
  config.event_topics = {env.in_topic};
  config.dlq_groups = {env.group};
  auto console = std::make_unique<kbus::console::Console>(config);
  const auto expected_jobs =
      static_cast<std::size_t>(f.jobs_running + std::min<std::int64_t>(f.jobs_finished, static_cast<std::int64_t>(config.finished_jobs)));
  kbus::console::Console::Stats s;
  while (true) {
    const bool caught = console->caught_up();
    s = console->stats();
    const double t = Seconds(Clock::now() - start);
    if (caught && out->caught_up_s < 0) out->caught_up_s = t;
    if (caught && s.instances == static_cast<std::size_t>(f.states) &&
        s.dead_letters == static_cast<std::size_t>(f.dead_letters) && s.jobs == expected_jobs) {
      out->counted_s = t;
      break;
    }
    if (out->caught_up_s >= 0 && t > out->caught_up_s + 10) {
      Problem("the console caught up but counts " + std::to_string(s.instances) + " instances (wrote " +
              std::to_string(f.states) + "), " + std::to_string(s.dead_letters) + " dead letters (wrote " +
              std::to_string(f.dead_letters) + "), " + std::to_string(s.jobs) + " jobs (expected " +
              std::to_string(expected_jobs) + ")");
      break;
    }
    if (t > 900) {
      Problem("the console had not caught up after 900 s (" + std::to_string(s.records_read) + " records read)");
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  out->cpu_s = CpuSeconds() - cpu0;
  out->rss_kb = StatusKb("VmRSS") - out->rss_before_kb;
  out->heap_bytes = HeapInUse() - heap0;
  if (s.records_read != static_cast<std::size_t>(f.states + f.dead_letters + f.events)) {
    Problem("the console read " + std::to_string(s.records_read) + " records of " +
            std::to_string(f.states + f.dead_letters + f.events));
  }
  return console;
}

// ---- 3. the API ---------------------------------------------------------------------------------

// GET `path` once; the parsed answer, or a problem.
std::optional<kbus::JsonDocument> GetJson(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30, 0);
  auto res = client.Get(path);
  if (!res || res->status != 200) {
    Problem("GET " + path + ": " + (res ? "status " + std::to_string(res->status) + " " + res->body : "no answer"));
    return std::nullopt;
  }
  kbus::JsonDocument doc;
  if (!doc.Parse(res->body).ok() || !doc.Root().IsObject()) {
    Problem("GET " + path + ": the answer does not parse");
    return std::nullopt;
  }
  return doc;
}

std::int64_t IntAt(const kbus::JsonValue& v, std::string_view name) {
  auto m = v.Find(name);
  return m ? m->AsInt64().value_or(-1) : -1;
}

void ExpectTotal(int port, const std::string& path, std::int64_t expected, std::size_t items) {
  auto doc = GetJson(port, path);
  if (!doc) return;
  const std::int64_t total = IntAt(doc->Root(), "total");
  auto list = doc->Root().Find("items");
  const std::size_t got = list && list->IsArray() ? list->Size() : 0;
  if (total != expected || got != items) {
    Problem("GET " + path + ": total " + std::to_string(total) + " with " + std::to_string(got) + " items, expected " +
            std::to_string(expected) + " with " + std::to_string(items));
  }
}

// What the console says against what was written, through the API.
void CheckApi(const Env& env, int port, const Fill& f) {
  if (auto doc = GetJson(port, "/api/workflows")) {
    auto items = doc->Root().Find("items");
    bool found = false;
    for (std::size_t i = 0; items && items->IsArray() && i < items->Size(); ++i) {
      const kbus::JsonValue w = items->At(i);
      auto name = w.Find("name");
      if (!name || name->AsString().value_or("") != env.workflow) continue;
      found = true;
      if (IntAt(w, "running") != f.running || IntAt(w, "completed") != f.completed || IntAt(w, "failed") != f.failed ||
          IntAt(w, "total") != f.states) {
        Problem("/api/workflows: " + std::string(w.ToJson()) + "; wrote running " + std::to_string(f.running) +
                ", completed " + std::to_string(f.completed) + ", failed " + std::to_string(f.failed));
      }
    }
    if (!found) Problem("/api/workflows does not list " + env.workflow);
  }
  if (auto doc = GetJson(port, "/api/dead-letter-groups")) {
    auto items = doc->Root().Find("items");
    const bool one = items && items->IsArray() && items->Size() == 1;
    if (!one || IntAt(items->At(0), "count") != f.dead_letters) {
      Problem("/api/dead-letter-groups: " + std::string(doc->Root().ToJson()) + "; wrote " +
              std::to_string(f.dead_letters));
    }
  }
  const auto page = [](std::int64_t total, std::int64_t offset) {
    return static_cast<std::size_t>(std::clamp<std::int64_t>(total - offset, 0, 50));
  };
  const std::string wf = "/api/instances?workflow=" + env.workflow + "&limit=50";
  ExpectTotal(port, wf, f.states, page(f.states, 0));
  ExpectTotal(port, wf + "&status=running", f.running, page(f.running, 0));
  ExpectTotal(port, wf + "&status=failed", f.failed, page(f.failed, 0));
  const std::int64_t deep = f.states * 9 / 10;
  ExpectTotal(port, wf + "&offset=" + std::to_string(deep), f.states, page(f.states, deep));
  const std::string dl = "/api/dead-letters?group=" + env.group + "&limit=50";
  ExpectTotal(port, dl, f.dead_letters, page(f.dead_letters, 0));
  const std::int64_t rejected = f.reasons.count("rejected") ? f.reasons.at("rejected") : 0;
  ExpectTotal(port, dl + "&reason=rejected", rejected, page(rejected, 0));
  ExpectTotal(port, "/api/jobs?state=running&limit=50", f.jobs_running, page(f.jobs_running, 0));
}

struct Load {
  std::string label, path;
  std::int64_t requests = 0, errors = 0;
  double seconds = 0, p50 = -1, p99 = -1, max = -1, mean_bytes = 0;
  std::string first_error;
};

// `clients` threads, each on its own keep-alive connection, GET `path` back to back for `seconds`.
Load Hammer(int port, std::string label, std::string path, int clients, double seconds) {
  Load out{.label = std::move(label), .path = std::move(path)};
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(clients));
  std::vector<std::int64_t> errors(static_cast<std::size_t>(clients), 0), bytes(static_cast<std::size_t>(clients), 0);
  std::vector<std::string> first_error(static_cast<std::size_t>(clients));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  Clock::time_point deadline;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      const auto k = static_cast<std::size_t>(c);
      httplib::Client client("127.0.0.1", port);
      client.set_keep_alive(true);
      client.set_read_timeout(60, 0);
      client.set_connection_timeout(10, 0);
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::sleep_for(100us);
      while (Clock::now() < deadline) {
        const auto t0 = Clock::now();
        auto res = client.Get(out.path);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (!res || res->status != 200) {
          if (first_error[k].empty()) {
            first_error[k] = res ? "status " + std::to_string(res->status) : httplib::to_string(res.error());
          }
          ++errors[k];
          continue;
        }
        lat[k].push_back(ms);
        bytes[k] += static_cast<std::int64_t>(res->body.size());
      }
    });
  }
  while (ready.load() < clients) std::this_thread::sleep_for(1ms);
  const auto start = Clock::now();
  deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  go.store(true);
  for (auto& t : threads) t.join();
  out.seconds = Seconds(Clock::now() - start);
  std::vector<double> all;
  std::int64_t total_bytes = 0;
  for (std::size_t k = 0; k < lat.size(); ++k) {
    all.insert(all.end(), lat[k].begin(), lat[k].end());
    out.errors += errors[k];
    total_bytes += bytes[k];
    if (out.first_error.empty()) out.first_error = first_error[k];
  }
  std::sort(all.begin(), all.end());
  out.requests = static_cast<std::int64_t>(all.size());
  out.p50 = SortedPercentile(all, 0.50);
  out.p99 = SortedPercentile(all, 0.99);
  out.max = all.empty() ? -1 : all.back();
  out.mean_bytes = all.empty() ? 0 : static_cast<double>(total_bytes) / static_cast<double>(all.size());
  return out;
}

void RunApi(const Env& env, int port, const Fill& f) {
  const std::string wf = "/api/instances?workflow=" + env.workflow + "&limit=50";
  const std::string dl = "/api/dead-letters?group=" + env.group + "&limit=50";
  const std::vector<std::pair<std::string, std::string>> endpoints = {
      {"status (baseline)", "/api/status"},
      {"workflows", "/api/workflows"},
      {"totals", "/api/totals"},
      {"jobs (running)", "/api/jobs?limit=50"},
      {"jobs (finished)", "/api/jobs?state=finished&limit=50"},
      {"instances", wf},
      {"instances running", wf + "&status=running"},
      {"instances offset 90%", wf + "&offset=" + std::to_string(f.states * 9 / 10)},
      {"dead-letters", dl},
      {"dead-letters reason", dl + "&reason=rejected"},
      {"dead-letters offset 90%", dl + "&offset=" + std::to_string(f.dead_letters * 9 / 10)},
  };
  std::printf("\nAPI: %d concurrent clients (own keep-alive connection each), %.1f s per endpoint\n", env.o.clients,
              env.o.seconds);
  std::printf("%-24s %8s %8s %9s %9s %9s %8s %8s %9s %6s\n", "endpoint", "requests", "req/s", "p50 ms", "p99 ms",
              "max ms", "p50/st", "p99/st", "body B", "errors");
  std::fflush(stdout);
  Load base;
  for (const auto& [label, path] : endpoints) {
    Load l = Hammer(port, label, path, env.o.clients, env.o.seconds);
    if (base.requests == 0) base = l;
    std::printf("%-24s %8ld %8.0f %9.2f %9.2f %9.2f %8.2f %8.2f %9.0f %6ld\n", l.label.c_str(),
                static_cast<long>(l.requests), static_cast<double>(l.requests) / l.seconds, l.p50, l.p99, l.max,
                base.p50 > 0 ? l.p50 / base.p50 : -1, base.p99 > 0 ? l.p99 / base.p99 : -1, l.mean_bytes,
                static_cast<long>(l.errors));
    std::fflush(stdout);
    if (l.errors > 0) Problem("GET " + l.path + ": " + std::to_string(l.errors) + " failed requests (" + l.first_error + ")");
    if (l.requests == 0) Problem("GET " + l.path + ": no request answered");
    std::printf("RESULT console-api endpoint=\"%s\" clients=%d requests=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
                "p99_over_status=%.2f\n",
                l.label.c_str(), env.o.clients, static_cast<long>(l.requests), l.p50, l.p99, l.max,
                base.p99 > 0 ? l.p99 / base.p99 : -1);
  }
  std::fflush(stdout);
}

}  // namespace

int RunConsole(const ConsoleOptions& options) {
  Env env{.o = options, .brokers = options.brokers};
  env.prefix = "kbus-bench-console-" + std::to_string(getpid());
  env.workflow = env.prefix + ".encode";
  env.state_topic = env.workflow + ".state";
  env.in_topic = env.workflow + ".in";
  env.group = env.prefix + "-encoder";
  env.dlq_topic = kbus::DeadLetterTopic(env.group);
  env.base_ms = NowMs() - 3 * kDay;
  std::unique_ptr<kbus::kafka::EmbeddedBroker> broker;
  if (env.o.brokers == "embedded") {
    broker = std::make_unique<kbus::kafka::EmbeddedBroker>();
    env.embedded = broker.get();
    env.brokers = broker->bootstrap();
  }
  if (!kbus::LogEnabled(kbus::LogLevel::kDebug)) kbus::SetLogLevel(kbus::LogLevel::kWarn);

  Topology top;
  top.state_partitions =
      PartitionsFor(env, env.o.instances, [&](std::int64_t i) { return std::vector{StateRecord(env, i)}; });
  top.dlq_partitions =
      PartitionsFor(env, env.o.dead_letters, [&](std::int64_t i) { return std::vector{DeadLetter(env, i)}; });
  top.event_partitions = PartitionsFor(env, env.o.jobs, [&](std::int64_t j) { return JobEvents(env, j); });
  CreateTopic(env, env.state_topic, top.state_partitions, true);
  CreateTopic(env, env.dlq_topic, top.dlq_partitions, false);
  CreateTopic(env, env.in_topic, top.event_partitions, false);

  std::printf("kbus-bench --console on %s\n", env.embedded ? "the embedded broker" : env.brokers.c_str());
  std::fflush(stdout);
  const auto fill_start = Clock::now();
  const Fill f = FillTopics(env, top);
  const double fill_s = Seconds(Clock::now() - fill_start);
  std::printf("fill: %ld instances (running %ld, completed %ld of which %ld with a result, failed %ld) in %s, "
              "%d partitions, %.0f B of JSON each on average\n",
              static_cast<long>(f.states), static_cast<long>(f.running), static_cast<long>(f.completed),
              static_cast<long>(f.with_result), static_cast<long>(f.failed), env.state_topic.c_str(),
              top.state_partitions, f.states ? static_cast<double>(f.state_bytes) / static_cast<double>(f.states) : 0);
  std::printf("      %ld dead letters in %s, %d partitions, ~%.0f B each with headers; %ld events of %ld jobs "
              "(%ld running) in %s, %d partitions; produced in %.1f s\n",
              static_cast<long>(f.dead_letters), env.dlq_topic.c_str(), top.dlq_partitions,
              f.dead_letters ? static_cast<double>(f.dlq_bytes) / static_cast<double>(f.dead_letters) : 0,
              static_cast<long>(f.events), static_cast<long>(env.o.jobs), static_cast<long>(f.jobs_running),
              env.in_topic.c_str(), top.event_partitions, fill_s);
  std::fflush(stdout);
  {
    raw::RdKafkaPtr probe =
        raw::NewClient(RD_KAFKA_PRODUCER, raw::Properties{{"bootstrap.servers", env.brokers}});
    const bool kept = CheckKept(env, probe.get(), env.state_topic, top.state_partitions, f.states) &
                      CheckKept(env, probe.get(), env.dlq_topic, top.dlq_partitions, f.dead_letters) &
                      CheckKept(env, probe.get(), env.in_topic, top.event_partitions, f.events);
    if (!kept) return 1;
  }

  const std::int64_t total = f.states + f.dead_letters + f.events;
  const RawRead raw_read = ReadRaw(env, top, total);
  std::printf("\nstart-up (%ld records, %.1f MiB of keys and values)\n", static_cast<long>(total),
              static_cast<double>(raw_read.bytes) / 1048576.0);
  std::printf("  raw librdkafka read to the end   %7.2f s  %6.2f s CPU  %8.0f records/s\n", raw_read.seconds,
              raw_read.cpu_s, static_cast<double>(raw_read.records) / raw_read.seconds);
  std::fflush(stdout);

  Startup s;
  auto console = StartConsole(env, f, &s);
  const double per_item = static_cast<double>(f.states + f.dead_letters);
  std::printf("  console caught_up()              %7.2f s\n", s.caught_up_s);
  std::printf("  console counts match             %7.2f s  %6.2f s CPU  %8.0f records/s\n", s.counted_s, s.cpu_s,
              static_cast<double>(total) / s.counted_s);
  std::printf("  console / raw                    %7.2f\n", s.counted_s / raw_read.seconds);
  std::printf("  RSS %.1f MiB before, +%.1f MiB (%.0f B per instance or dead letter); heap in use +%.1f MiB (%.0f B "
              "each)\n",
              static_cast<double>(s.rss_before_kb) / 1024.0, static_cast<double>(s.rss_kb) / 1024.0,
              static_cast<double>(s.rss_kb) * 1024.0 / per_item, static_cast<double>(s.heap_bytes) / 1048576.0,
              static_cast<double>(s.heap_bytes) / per_item);
  std::printf("RESULT console-startup instances=%ld dead_letters=%ld events=%ld raw_s=%.2f console_s=%.2f "
              "ratio=%.2f rss_mib=%.1f rss_b_per_item=%.0f heap_mib=%.1f heap_b_per_item=%.0f\n",
              static_cast<long>(f.states), static_cast<long>(f.dead_letters), static_cast<long>(f.events),
              raw_read.seconds, s.counted_s, s.counted_s / raw_read.seconds, static_cast<double>(s.rss_kb) / 1024.0,
              static_cast<double>(s.rss_kb) * 1024.0 / per_item, static_cast<double>(s.heap_bytes) / 1048576.0,
              static_cast<double>(s.heap_bytes) / per_item);
  std::fflush(stdout);

  if (g_problems.empty()) {
    CheckApi(env, console->port(), f);
    RunApi(env, console->port(), f);
  }
  console.reset();
  if (!env.embedded) {
    raw::RdKafkaPtr admin = raw::NewClient(RD_KAFKA_PRODUCER, raw::Properties{{"bootstrap.servers", env.brokers}});
    for (const auto* t : {&env.state_topic, &env.dlq_topic, &env.in_topic}) raw::DeleteTopic(admin.get(), *t);
  }
  for (const auto& p : g_problems) std::printf("PROBLEM     %s\n", p.c_str());
  std::fflush(stdout);
  return g_problems.empty() ? 0 : 1;
}

}  // namespace bench
