// kbus-bench: how fast a kbus Worker consumes, against a plain librdkafka loop doing the same
// work, in one process, on one broker, over the same records; and, with --latency, how long one
// command takes through a consume -> handle -> produce hop on each (bench/latency.cpp).
//
//   kbus-bench                       embedded broker, 300,000 messages per run, 5 pairs
//   kbus-bench --brokers HOST:PORT   the same against a real Kafka cluster
//   kbus-bench --latency             the latency mode instead (--rate, --seconds, --latency-pairs)
//   kbus-bench --delayed             the delayed messages mode instead: the scheduler's lateness and
//                                    its load time and memory with many pending (bench/delayed.cpp)
//   kbus-bench --lanes               the priority lanes mode instead (bench/lanes.cpp)
//   kbus-bench --console             the console mode instead: its start-up time, memory and API
//                                    latency with 100,000 instances and dead letters (bench/console.cpp)
//   kbus-bench --quick               smoke test: 20,000 messages, 1 pair, then a 1 s latency run
//                                    (ctest label "bench"; checks only that every record is seen)
//
// The two consumers:
//   (a) raw:  rd_kafka_consumer_poll; read the kbus-type header; parse the payload with RapidJSON
//             into a struct (member lookup, type checks, string copies); rd_kafka_offsets_store
//             with one cached 1-element list per partition (raw::OffsetStore says why one list
//             must not serve two partitions); auto-commit. This is the least a hand-written
//             consumer that checks its input and commits what it read does per record.
//   (b) kbus: a Worker with a no-op typed handler for EncodeVideo (encode_video.hpp: 208 bytes
//             of JSON, 8 fields, one of them a nested struct, with kbus's envelope headers), on
//             the default 8 handler threads, ordered per key.
// (e) against (f): the same Worker with its operations port served and /metrics scraped every
// second, against no port at all (--metrics-pairs). Serving metrics should cost a few per cent
// at most; this pair shows how much it does.
// Then (c) against (d): the same Worker with a handler that sleeps 1 ms, on 16 handler threads
// against 1, over the first 4,000 records; the ratio c/d shows what the pool buys for handlers
// that wait.
// Both add one decoded field to a checksum, so each pass proves it saw every produced record.
// Both use the same consumer settings (ConsumerSettings; the raw loop's librdkafka properties
// come from the same WorkerConfig through raw::ConsumerConf): a new group per pass
// (auto.offset.reset=earliest), fetch.wait.max.ms=10, session.timeout.ms=6000 with heartbeats
// every 1.2 s, range assignment, offsets committed every 500 ms (the Worker's default
// commit_interval; the raw loop's auto.commit.interval.ms is set to match), and room to
// prefetch a whole pass (PrefetchProperties explains why).
//
// Measurement: from the first message consumed to the N-th, so the group join (3.1 s on the
// embedded broker) is not counted. CPU is the getrusage(RUSAGE_SELF) delta over that window, so it
// includes librdkafka's threads and, on the embedded broker, the broker's thread; for (a) the
// poll thread's own share (RUSAGE_THREAD) is shown too. Runs go a b, b a, a b, ... (ABBA, so a drift
// of this noisy machine's speed hits both sides alike); the verdict is the median of the
// per-pair ratios b/a. The program exits 1 when a correctness check fails or a pass times out;
// it never fails on the ratio itself (an A/A test on this machine spreads 0.90-1.28).
//
// Retention (embedded broker only). The mock keeps about 5 MiB per partition and silently drops
// older batches. With kbus's envelope (type, kind, id, correlation id, sent-at headers) a record
// is ~420 B in its log, so 300,000 records in 16 partitions (18,750 each, ~7.5 MiB) cannot be kept.
// The design:
//   1. Measure: produce to a 1-partition probe topic until its low watermark moves. How many
//      records it kept is the real capacity, and 5 MiB / capacity the real bytes per record.
//   2. Fill the benchmark topic once with the fewest passes' worth that fits: P passes of
//      ceil(N / P / partitions) records per partition, at most 85 % of the measured capacity
//      (for the defaults P = 2: 9,375 per partition, 150,000 in all). Then check with
//      rd_kafka_query_watermark_offsets that every partition's low watermark is still 0.
//   3. Consume N per run as P passes; each pass is a fresh consumer in a fresh group that reads
//      every partition from offset 0, the same for (a) and (b). A run's rate is its messages over
//      the sum of its pass windows; its CPU is the sum of the pass deltas.
// Why not "laps" (seek every partition back to the start at EOF, so one fill serves any number
// of records)? A Worker cannot seek, so only (a) could lap and the two would no longer read the
// same way. One single pass of the retained records is this same design with half the window
// (~0.5 s), which is noisier. A fresh topic per run would cost a re-fill per run and measure
// nothing more.
// On a real broker there is no such limit: one pass of N records per run.

#include <librdkafka/rdkafka.h>
#include <rapidjson/document.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/program_options.hpp>

#include "console.hpp"
#include "delayed.hpp"
#include "encode_video.hpp"
#include "kbus/context.hpp"
#include "kbus/handler_registry.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/log.hpp"
#include "kbus/message.hpp"
#include "kbus/ops/server.hpp"
#include "lanes.hpp"
#include "latency.hpp"
#include "raw_client.hpp"

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMockPartitionBytes = 5 * 1024 * 1024;  // the mock's retention per partition
constexpr double kFillFraction = 0.85;  // of the measured capacity: batch-size slack

// ---- librdkafka handles -------------------------------------------------------------------------

using raw::RdConfPtr;
using raw::RdKafkaPtr;
using raw::RdMessagePtr;

// ---- the records --------------------------------------------------------------------------------

std::size_t VarintBytes(std::int64_t v) {
  auto u = (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);  // zigzag
  std::size_t n = 1;
  for (; u >= 0x80; u >>= 7) ++n;
  return n;
}

// Size of one record inside a Kafka v2 record batch (no compression); the batch adds 61 B.
std::size_t RecordWireBytes(const kbus::OutgoingRecord& r, std::int64_t offset_delta) {
  std::size_t body = 1 + VarintBytes(0) + VarintBytes(offset_delta);  // attributes, timestamp delta
  body += VarintBytes(static_cast<std::int64_t>(r.key.size())) + r.key.size();
  body += VarintBytes(static_cast<std::int64_t>(r.payload.size())) + r.payload.size();
  body += VarintBytes(static_cast<std::int64_t>(r.headers.size()));
  for (const auto& h : r.headers) {
    body += VarintBytes(static_cast<std::int64_t>(h.name.size())) + h.name.size();
    body += VarintBytes(static_cast<std::int64_t>(h.value.size())) + h.value.size();
  }
  return VarintBytes(static_cast<std::int64_t>(body)) + body;
}

// ---- producing ----------------------------------------------------------------------------------

struct FillResult {
  std::size_t records = 0;
  double seconds = 0;
  std::int64_t checksum = 0;  // sum of params.bitrate, what every pass must see
  double key_bytes = 0, value_bytes = 0, header_bytes = 0, wire_bytes = 0;  // per record
  std::size_t headers = 0;
  std::uint64_t batches = 0;  // producer batches, from librdkafka statistics
};

// A plain producer with explicit partitions, so every partition gets exactly its share. The
// records are kbus::BuildRecord's, headers and all, so both consumers see what kbus sends.
// Records go out `chunk` at a time per partition with batch.num.messages = chunk: the mock
// answers a fetch with at most one stored batch per partition, so the producer's batch size sets
// how many records a consumer gets per fetch round trip; it is part of the set-up and printed.
class RawProducer {
 public:
  RawProducer(const std::string& brokers, std::size_t chunk) {
    RdConfPtr conf = raw::Conf({{"bootstrap.servers", brokers},
                               {"client.id", "kbus-bench-fill"},
                               {"linger.ms", "5"},
                               {"batch.num.messages", std::to_string(chunk)},
                               {"statistics.interval.ms", "100"}});
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_stats_cb(conf.get(), &RawProducer::StatsTrampoline);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &RawProducer::DeliveryTrampoline);
    rk_ = raw::NewClient(RD_KAFKA_PRODUCER, conf);
  }
  RawProducer(const RawProducer&) = delete;
  RawProducer& operator=(const RawProducer&) = delete;

  rd_kafka_t* handle() const { return rk_.get(); }

  void Produce(const kbus::OutgoingRecord& r, std::int32_t partition) { raw::Produce(rk_.get(), r, partition); }

  void Flush() {
    raw::Flush(rk_.get(), std::chrono::seconds(60));
    if (delivery_errors_ > 0) {
      throw std::runtime_error(std::to_string(delivery_errors_) + " records were not delivered");
    }
  }

  // Producer batches sent so far. Statistics are emitted every 100 ms; wait for one more.
  std::uint64_t Batches(std::size_t records) {
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    while (batched_records_ < records && Clock::now() < deadline) rd_kafka_poll(rk_.get(), 50);
    return batched_records_ == records ? batches_ : 0;  // 0: statistics incomplete
  }

  std::pair<std::int64_t, std::int64_t> Watermarks(const std::string& topic, std::int32_t partition) {
    return raw::Watermarks(rk_.get(), topic, partition);
  }

 private:
  static void DeliveryTrampoline(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) noexcept {
    if (m->err) ++static_cast<RawProducer*>(opaque)->delivery_errors_;
  }

  // librdkafka's per-topic "batchcnt" window (records per batch) is reset at every emission, so
  // summing cnt and sum over emissions counts every batch once.
  static int StatsTrampoline(rd_kafka_t*, char* json, size_t len, void* opaque) noexcept {
    auto* self = static_cast<RawProducer*>(opaque);
    rapidjson::Document doc;
    doc.Parse(json, len);
    if (doc.HasParseError() || !doc.IsObject()) return 0;
    auto topics = doc.FindMember("topics");
    if (topics == doc.MemberEnd() || !topics->value.IsObject()) return 0;
    for (auto t = topics->value.MemberBegin(); t != topics->value.MemberEnd(); ++t) {
      auto bc = t->value.FindMember("batchcnt");
      if (bc == t->value.MemberEnd() || !bc->value.IsObject()) continue;
      auto cnt = bc->value.FindMember("cnt");
      auto sum = bc->value.FindMember("sum");
      if (cnt != bc->value.MemberEnd() && cnt->value.IsInt64()) self->batches_ += cnt->value.GetInt64();
      if (sum != bc->value.MemberEnd() && sum->value.IsInt64()) self->batched_records_ += sum->value.GetInt64();
    }
    return 0;  // librdkafka frees json
  }

  RdKafkaPtr rk_;
  std::uint64_t batches_ = 0;
  std::uint64_t batched_records_ = 0;
  std::uint64_t delivery_errors_ = 0;
};

// Produces `per_partition` records to each partition of `topic`, `chunk` at a time per partition.
FillResult Fill(RawProducer& producer, const std::string& topic, int partitions,
                std::size_t per_partition, std::size_t chunk) {
  FillResult f;
  const auto t0 = Clock::now();
  std::size_t index = 0;
  for (std::size_t base = 0; base < per_partition; base += chunk) {
    const std::size_t n = std::min(chunk, per_partition - base);
    for (int p = 0; p < partitions; ++p) {
      for (std::size_t k = 0; k < n; ++k, ++index) {
        const EncodeVideo v = MakeVideo(index);
        kbus::OutgoingRecord r = kbus::BuildRecord(v, kbus::SendOptions{.topic = topic, .key = v.id});
        f.checksum += v.params.bitrate;
        f.key_bytes += static_cast<double>(r.key.size());
        f.value_bytes += static_cast<double>(r.payload.size());
        for (const auto& h : r.headers) f.header_bytes += static_cast<double>(h.name.size() + h.value.size());
        f.headers = r.headers.size();
        f.wire_bytes += static_cast<double>(RecordWireBytes(r, static_cast<std::int64_t>(k)));
        producer.Produce(r, p);
      }
    }
  }
  producer.Flush();
  f.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  f.records = index;
  const double n = static_cast<double>(std::max<std::size_t>(index, 1));
  f.key_bytes /= n;
  f.value_bytes /= n;
  f.header_bytes /= n;
  f.wire_bytes /= n;
  f.batches = producer.Batches(index);
  return f;
}

// How many records one partition of the embedded broker keeps: fills a 1-partition topic until
// its low watermark moves.
std::int64_t ProbeCapacity(kbus::kafka::EmbeddedBroker& broker, const std::string& brokers,
                           const std::string& topic, std::size_t chunk) {
  if (kbus::Status s = broker.CreateTopic(topic, 1); !s.ok()) {
    throw std::runtime_error(s.error().ToString());
  }
  RawProducer producer(brokers, chunk);
  std::size_t index = 0;
  for (int round = 0; round < 100; ++round) {
    for (std::size_t k = 0; k < 2000; ++k, ++index) {
      const EncodeVideo v = MakeVideo(index);
      producer.Produce(kbus::BuildRecord(v, kbus::SendOptions{.topic = topic, .key = v.id}), 0);
    }
    producer.Flush();
    const auto [low, high] = producer.Watermarks(topic, 0);
    if (low > 0) return high - low;
  }
  throw std::runtime_error("the embedded broker kept 200,000 records without dropping any: "
                           "its retention changed, revisit this benchmark's design");
}

// ---- timing -------------------------------------------------------------------------------------

struct CpuTimes {
  double process = 0;  // every thread of this process, the embedded broker's included
  double thread = 0;   // the calling (poll) thread
};

double Seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; }

CpuTimes ReadCpu() {
  rusage self{}, thread{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_THREAD, &thread);
  return {Seconds(self.ru_utime) + Seconds(self.ru_stime), Seconds(thread.ru_utime) + Seconds(thread.ru_stime)};
}

// From the first message to the N-th.
struct Window {
  Clock::time_point t0, t1;
  CpuTimes c0, c1;
  void Start() {
    t0 = Clock::now();
    c0 = ReadCpu();
  }
  void Stop() {
    t1 = Clock::now();
    c1 = ReadCpu();
  }
};

struct PassResult {
  std::size_t messages = 0;
  double seconds = 0, cpu = 0, poll_cpu = 0;
  std::int64_t checksum = 0;
  std::size_t wrong_type = 0, decode_errors = 0, store_errors = 0, consumer_errors = 0;
  bool timed_out = false;

  void Take(const Window& w) {
    seconds = std::chrono::duration<double>(w.t1 - w.t0).count();
    cpu = w.c1.process - w.c0.process;
    poll_cpu = w.c1.thread - w.c0.thread;
  }
};

struct Settings {
  std::string brokers;
  std::string topic;
  int partitions = 16;
  std::size_t per_pass = 0;  // records in the topic, all read by every pass
  int passes = 1;
  std::int64_t checksum = 0;  // of one pass
  std::chrono::milliseconds fetch_wait{10};
  std::chrono::milliseconds session_timeout{6000};
  std::chrono::milliseconds commit_interval{500};
  std::chrono::seconds pass_timeout{120};
};

// ---- (a) the plain librdkafka loop --------------------------------------------------------------

// Given to both consumers. With a pre-filled topic the fetcher races ahead of the application
// by the whole backlog; once the consumer queue holds queued.min.messages (default 100,000, and
// librdkafka counts the one queue all partitions forward to), it stops fetching and looks again
// only up to a second later, so the last partitions of a pass arrive after a 0.4-0.7 s stall
// (measured with debug=fetch: "queued.min.messages exceeded"). That stall is the harness, not the
// consumer, and hit (a) and (b) at random; room for a whole pass removes it.
raw::Properties PrefetchProperties() {
  return {{"queued.min.messages", "10000000"}, {"queued.max.messages.kbytes", "1048576"}};
}

// The consumer settings of both sides: the Worker's config, from which the raw loop's consumer
// takes the same librdkafka properties (raw::ConsumerConf).
kbus::kafka::WorkerConfig ConsumerSettings(const Settings& s, const std::string& group, const char* client_id) {
  kbus::kafka::WorkerConfig config;
  config.client.brokers = s.brokers;
  config.client.client_id = client_id;
  config.group = group;
  config.session_timeout = s.session_timeout;
  config.fetch_wait_max = s.fetch_wait;
  config.commit_interval = s.commit_interval;
  for (const auto& [k, v] : PrefetchProperties()) config.client.properties[k] = v;
  return config;
}

PassResult RunRawPass(const Settings& s, const std::string& group, std::size_t target) {
  RdConfPtr conf = raw::ConsumerConf(ConsumerSettings(s, group, "kbus-bench-raw"));
  RdKafkaPtr rk = raw::NewClient(RD_KAFKA_CONSUMER, conf);
  raw::Subscribe(rk.get(), s.topic);

  raw::OffsetStore store;
  const std::string_view type = kbus::MessageTraits<EncodeVideo>::kType;
  PassResult r;
  Window w;
  const auto deadline = Clock::now() + s.pass_timeout;
  while (r.messages < target) {
    // The deadline is checked when idle and every 4096 messages: a clock read per message would
    // be a cost that a lean hand-written loop does not have.
    if (r.messages % 4096 == 0 && Clock::now() > deadline) {
      r.timed_out = true;
      break;
    }
    RdMessagePtr m(rd_kafka_consumer_poll(rk.get(), 100));
    if (!m) {
      if (Clock::now() > deadline) {
        r.timed_out = true;
        break;
      }
      continue;
    }
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) ++r.consumer_errors;
      continue;
    }
    if (r.messages == 0) w.Start();

    if (raw::Header(m.get(), "kbus-type") != type) ++r.wrong_type;

    EncodeVideo v;
    if (DecodeRaw(m->payload, m->len, v)) {
      r.checksum += v.params.bitrate;
    } else {
      ++r.decode_errors;
    }

    if (store.Store(rk.get(), s.topic.c_str(), m->partition, m->offset + 1) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++r.store_errors;
    }

    if (++r.messages == target) w.Stop();
  }
  if (!r.timed_out) r.Take(w);
  store.Clear();  // drops the cached partition references before the handle goes
  raw::Close(rk.get());
  return r;
}

// ---- (b) the kbus Worker ------------------------------------------------------------------------

// The operations port during a pass, for (e) against (f): served on a free port and scraped
// every `interval` from the first moment, or not served at all.
struct Scraping {
  bool on = false;
  std::chrono::milliseconds interval{1000};
  std::size_t scrapes = 0;    // out: answered 200
  std::size_t failures = 0;   // out: anything else
  std::size_t in_window = 0;  // out: scrapes that began inside the measured window
  std::vector<double> scrape_us;  // out: each answered scrape's wall time, as the client saw it
  std::size_t bytes = 0;          // out: the last answer's size
};

// `threads` handler threads; each handler sleeps `sleep` (0: a no-op handler).
PassResult RunKbusPass(const Settings& s, const std::string& group, std::size_t target, int threads = 8,
                       std::chrono::microseconds sleep = std::chrono::microseconds(0),
                       Scraping* scraping = nullptr) {
  // Handlers run on the worker's pool threads: the counters are atomic, and the thread that
  // counts the first (last) message starts (stops) the window.
  struct Progress {
    std::size_t target = 0;
    std::atomic<std::size_t> messages{0};
    std::atomic<std::int64_t> checksum{0};
    Window window;
    kbus::kafka::Worker* worker = nullptr;
    std::function<void()> on_first;  // called once the window opens, if set
  } progress;
  progress.target = target;

  kbus::HandlerRegistry handlers;
  handlers.Handle<EncodeVideo>(
      [&progress, sleep](const EncodeVideo& v, kbus::Context&) {
        if (sleep.count() > 0) std::this_thread::sleep_for(sleep);
        const std::size_t n = progress.messages.fetch_add(1, std::memory_order_relaxed);
        if (n >= progress.target) return;  // past the target: the pass is stopping
        if (n == 0) {
          progress.window.Start();
          if (progress.on_first) progress.on_first();
        }
        progress.checksum.fetch_add(v.params.bitrate, std::memory_order_relaxed);
        if (n + 1 == progress.target) {
          progress.window.Stop();
          progress.worker->Stop();
        }
      },
      {.topic = s.topic});

  kbus::kafka::WorkerConfig config = ConsumerSettings(s, group, "kbus-bench-worker");
  config.handler_threads = threads;
  if (scraping && scraping->on) {
    config.http_port = -1;
    config.http_bind_address = "127.0.0.1";
  }
  kbus::kafka::Worker worker(config, handlers);
  progress.worker = &worker;

  // A Prometheus stand-in: GET /metrics at once, then every interval, until the pass ends. The
  // group join takes about 3 s and a pass's window about 0.5 s, so a free-running 1 s cadence
  // would never scrape inside a window: the cadence restarts when the window opens, which puts
  // one scrape in every window (more often than 1 s, so the figure errs against metrics).
  std::mutex scrape_mu;
  std::condition_variable scrape_cv;
  bool scrape_stop = false;
  bool window_opened = false;
  std::vector<Clock::time_point> scrape_times;
  std::thread scraper;
  if (scraping && scraping->on) {
    progress.on_first = [&] {
      {
        std::lock_guard lock(scrape_mu);
        window_opened = true;
      }
      scrape_cv.notify_all();
    };
    scraper = std::thread([&, port = worker.http_port()] {
      std::unique_lock lock(scrape_mu);
      bool aligned = false;
      while (!scrape_stop) {
        lock.unlock();
        const auto began = Clock::now();
        const kbus::ops::ProbeResult got = kbus::ops::Get("127.0.0.1", port, "/metrics");
        const double us = std::chrono::duration<double, std::micro>(Clock::now() - began).count();
        const bool ok = got.status == 200;
        lock.lock();
        ++(ok ? scraping->scrapes : scraping->failures);
        if (ok) {
          scraping->scrape_us.push_back(us);
          scraping->bytes = got.body.size();
        }
        scrape_times.push_back(began);
        scrape_cv.wait_for(lock, scraping->interval, [&] { return scrape_stop || (window_opened && !aligned); });
        aligned = aligned || window_opened;
      }
    });
  }

  // Stops a pass that does not finish in time, so a broken run fails instead of hanging.
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  bool timed_out = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, s.pass_timeout, [&] { return finished; })) {
      timed_out = true;
      worker.Stop();
    }
  });
  worker.Run();
  {
    std::lock_guard lock(mu);
    finished = true;
  }
  cv.notify_all();
  watchdog.join();
  if (scraper.joinable()) {
    {
      std::lock_guard lock(scrape_mu);
      scrape_stop = true;
    }
    scrape_cv.notify_all();
    scraper.join();
    for (const auto t : scrape_times) {
      scraping->in_window += t >= progress.window.t0 && t <= progress.window.t1;
    }
  }

  PassResult r;
  r.messages = std::min(progress.messages.load(), target);
  r.checksum = progress.checksum.load();
  r.timed_out = timed_out || progress.messages.load() < target;
  const kbus::kafka::WorkerStats stats = worker.Stats();
  r.decode_errors = static_cast<std::size_t>(stats.dead_lettered + stats.retried);
  r.wrong_type = static_cast<std::size_t>(stats.skipped);
  if (!r.timed_out) r.Take(progress.window);
  r.poll_cpu = 0;  // the window opens and closes on handler threads: no one thread to measure
  return r;
}

// ---- runs ---------------------------------------------------------------------------------------

enum class Side { kRaw, kKbus };
const char* Name(Side side) { return side == Side::kRaw ? "a raw" : "b kbus"; }

struct RunResult {
  std::size_t messages = 0;
  double seconds = 0, cpu = 0, poll_cpu = 0;
  double Rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
  double CpuUs() const { return messages ? cpu * 1e6 / static_cast<double>(messages) : 0; }
  double PollCpuUs() const { return messages ? poll_cpu * 1e6 / static_cast<double>(messages) : 0; }
};

// Problems found by the checks; any makes the program exit 1.
std::vector<std::string> g_problems;

RunResult RunOnce(Side side, const Settings& s, int run) {
  RunResult total;
  for (int pass = 1; pass <= s.passes; ++pass) {
    const std::string group = "kbus-bench-" + std::to_string(getpid()) + "-" +
                              (side == Side::kRaw ? "a" : "b") + "-r" + std::to_string(run) +
                              "-p" + std::to_string(pass);
    const PassResult p = side == Side::kRaw ? RunRawPass(s, group, s.per_pass)
                                            : RunKbusPass(s, group, s.per_pass);
    const std::string where = std::string(Name(side)) + " run " + std::to_string(run) + " pass " +
                              std::to_string(pass) + ": ";
    if (p.timed_out) {
      g_problems.push_back(where + "timed out after " + std::to_string(p.messages) + " of " +
                           std::to_string(s.per_pass) + " messages");
      continue;
    }
    if (p.checksum != s.checksum) g_problems.push_back(where + "checksum differs from the produced records");
    if (p.wrong_type) g_problems.push_back(where + std::to_string(p.wrong_type) + " records with a wrong kbus-type");
    if (p.decode_errors) g_problems.push_back(where + std::to_string(p.decode_errors) + " records failed to decode");
    if (p.store_errors) g_problems.push_back(where + std::to_string(p.store_errors) + " offset stores failed");
    if (p.consumer_errors) g_problems.push_back(where + std::to_string(p.consumer_errors) + " consumer errors");
    total.messages += p.messages;
    total.seconds += p.seconds;
    total.cpu += p.cpu;
    total.poll_cpu += p.poll_cpu;
  }
  return total;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Thousands(double value) {
  std::string digits = std::to_string(static_cast<long long>(value + 0.5));
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<std::size_t>(i), ",");
  return digits;
}

// ---- main ---------------------------------------------------------------------------------------

struct Options {
  int pairs = 5;
  std::size_t messages = 300000;
  int partitions = 16;
  std::string brokers = "embedded";
  std::size_t batch = 500;
  std::string only;  // "a" or "b": run one side only, for profiling
  std::size_t sleep_messages = 4000;  // for (c) and (d); 0: skip them
  int sleep_pairs = 3;
  int metrics_pairs = 5;  // (e) metrics on against (f) off; 0: skip them
  std::chrono::milliseconds scrape_interval{1000};
};

int Run(const Options& o) {
  // kError: the Worker passes client.properties to its internal producer too, and librdkafka
  // warns there about the consumer-only prefetch properties once per pass.
  kbus::SetLogLevel(kbus::LogLevel::kError);
  const bool embedded = o.brokers == "embedded";
  std::unique_ptr<kbus::kafka::EmbeddedBroker> broker;
  Settings s;
  s.partitions = o.partitions;
  s.brokers = o.brokers;
  s.topic = "kbus-bench-" + std::to_string(getpid()) + "-" +
            std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000);
  if (embedded) {
    broker = std::make_unique<kbus::kafka::EmbeddedBroker>();
    s.brokers = broker->bootstrap();
  }

  std::printf("kbus-bench: kbus Worker (b) against a plain librdkafka loop (a), %s\n", rd_kafka_version_str());
  std::printf("broker      %s (%s)\n",
              embedded ? "embedded: librdkafka's mock cluster, in this process" : "real Kafka",
              s.brokers.c_str());

  std::size_t per_partition = (o.messages + static_cast<std::size_t>(o.partitions) - 1) /
                              static_cast<std::size_t>(o.partitions);
  if (embedded) {
    const std::int64_t capacity = ProbeCapacity(*broker, s.brokers, s.topic + "-probe", o.batch);
    const auto cap = static_cast<std::size_t>(kFillFraction * static_cast<double>(capacity));
    s.passes = static_cast<int>((per_partition + cap - 1) / cap);
    per_partition = (o.messages + static_cast<std::size_t>(s.passes * o.partitions) - 1) /
                    static_cast<std::size_t>(s.passes * o.partitions);
    std::printf("retention   probe: one partition keeps %s records of this shape -> %.0f B per record "
                "in the mock's 5 MiB log\n",
                Thousands(static_cast<double>(capacity)).c_str(),
                static_cast<double>(kMockPartitionBytes) / static_cast<double>(capacity));
    std::printf("            fill %s per partition (%.0f %% of that), consumed %d time(s) per run, each "
                "pass a fresh group from offset 0\n",
                Thousands(static_cast<double>(per_partition)).c_str(),
                100.0 * static_cast<double>(per_partition) / static_cast<double>(capacity), s.passes);
    if (kbus::Status st = broker->CreateTopic(s.topic, o.partitions); !st.ok()) {
      throw std::runtime_error(st.error().ToString());
    }
  } else {
    kbus::kafka::ClientConfig client;
    client.brokers = s.brokers;
    if (kbus::Status st = kbus::kafka::CreateTopics(client, {{.name = s.topic, .partitions = o.partitions}});
        !st.ok()) {
      throw std::runtime_error(st.error().ToString());
    }
    std::printf("retention   no limit on a real broker: one pass of %s records per run\n",
                Thousands(static_cast<double>(per_partition * static_cast<std::size_t>(o.partitions))).c_str());
  }

  RawProducer producer(s.brokers, o.batch);
  const FillResult fill = Fill(producer, s.topic, o.partitions, per_partition, o.batch);
  s.per_pass = fill.records;
  s.checksum = fill.checksum;
  std::printf("topic       %s: %d partitions x %s = %s records, produced in %.2f s (%s msg/s)\n",
              s.topic.c_str(), o.partitions, Thousands(static_cast<double>(per_partition)).c_str(),
              Thousands(static_cast<double>(fill.records)).c_str(), fill.seconds,
              Thousands(static_cast<double>(fill.records) / fill.seconds).c_str());
  std::printf("record      key %.0f B, value %.0f B (JSON), %zu kbus headers %.0f B -> %.0f B in a v2 "
              "batch (+61 B per batch)\n",
              fill.key_bytes, fill.value_bytes, fill.headers, fill.header_bytes, fill.wire_bytes);
  if (fill.batches > 0) {
    std::printf("batches     %s producer batches, %.0f records each on average\n",
                Thousands(static_cast<double>(fill.batches)).c_str(),
                static_cast<double>(fill.records) / static_cast<double>(fill.batches));
  }

  int low_zero = 0, high_full = 0;
  std::int64_t max_low = 0;
  for (int p = 0; p < o.partitions; ++p) {
    const auto [low, high] = producer.Watermarks(s.topic, p);
    low_zero += low == 0;
    high_full += high == static_cast<std::int64_t>(per_partition);
    max_low = std::max(max_low, low);
  }
  std::printf("watermarks  low = 0 on %d/%d partitions, high = %s on %d/%d\n", low_zero, o.partitions,
              Thousands(static_cast<double>(per_partition)).c_str(), high_full, o.partitions);
  if (low_zero != o.partitions || high_full != o.partitions) {
    throw std::runtime_error("the broker dropped records (highest low watermark " +
                             std::to_string(max_low) + "): the results would be meaningless");
  }
  std::printf("consumers   fetch.wait.max.ms=%lld, session.timeout.ms=%lld, commits every %lld ms, "
              "new group per pass,\n            queued.min.messages=10000000 and "
              "queued.max.messages.kbytes=1048576 (room to prefetch a whole pass)\n",
              static_cast<long long>(s.fetch_wait.count()), static_cast<long long>(s.session_timeout.count()),
              static_cast<long long>(s.commit_interval.count()));
  std::printf("per run     %d pass(es) x %s = %s messages; window = first to last message of each "
              "pass; CPU = getrusage deltas over the windows\n\n",
              s.passes, Thousands(static_cast<double>(s.per_pass)).c_str(),
              Thousands(static_cast<double>(s.per_pass) * s.passes).c_str());

  std::printf("%-4s %-7s %9s %9s %10s %13s %13s\n", "pair", "side", "messages", "window s", "msgs/s",
              "CPU us/msg", "poll us/msg");
  std::vector<double> ratios, a_rates, b_rates, a_cpu, b_cpu;
  for (int pair = 1; pair <= o.pairs; ++pair) {
    // a b, b a, a b, ...: a slow minute of this shared machine hits both sides.
    const Side first = pair % 2 ? Side::kRaw : Side::kKbus;
    const Side second = first == Side::kRaw ? Side::kKbus : Side::kRaw;
    RunResult results[2];
    for (Side side : {first, second}) {
      if (!o.only.empty() && o.only != (side == Side::kRaw ? "a" : "b")) continue;
      const RunResult r = RunOnce(side, s, pair);
      results[side == Side::kRaw ? 0 : 1] = r;
      std::printf("%-4d %-7s %9zu %9.3f %10s %13.2f %13.2f\n", pair, Name(side), r.messages, r.seconds,
                  Thousands(r.Rate()).c_str(), r.CpuUs(), r.PollCpuUs());
      std::fflush(stdout);
    }
    const RunResult& a = results[0];
    const RunResult& b = results[1];
    if (a.Rate() > 0 && b.Rate() > 0) {
      ratios.push_back(b.Rate() / a.Rate());
      std::printf("     b/a = %.3f\n", ratios.back());
    }
    a_rates.push_back(a.Rate());
    b_rates.push_back(b.Rate());
    a_cpu.push_back(a.CpuUs());
    b_cpu.push_back(b.CpuUs());
  }

  if (o.pairs > 0) {  // --pairs 0 runs only the other comparisons
    std::printf("\nmedian      a %s msg/s, %.2f CPU us/msg | b %s msg/s, %.2f CPU us/msg | b/a %.3f "
                "(pairs: ",
                Thousands(Median(a_rates)).c_str(), Median(a_cpu), Thousands(Median(b_rates)).c_str(),
                Median(b_cpu), Median(ratios));
    for (std::size_t i = 0; i < ratios.size(); ++i) std::printf("%s%.3f", i ? " " : "", ratios[i]);
    std::printf(")\n");
    std::printf("RESULT b/a median=%.3f a_msgs_per_s=%.0f b_msgs_per_s=%.0f a_cpu_us=%.2f b_cpu_us=%.2f\n",
                Median(ratios), Median(a_rates), Median(b_rates), Median(a_cpu), Median(b_cpu));
  }

  // (e) against (f): the operations port on, served and scraped, against off. The worker always
  // counts its metrics (the series are updated whether or not anyone serves them), so "off" is
  // the same worker with no port and no scraper: what (e) adds is the HTTP server, the scrapes
  // and the collector they run (lag, partitions).
  if (o.metrics_pairs > 0) {
    std::printf("\n(e) metrics on: the worker serving /metrics, scraped every %lld ms, against (f) off: no port, "
                "no scrapes\n", static_cast<long long>(o.scrape_interval.count()));
    std::vector<double> ef, ef_cpu, e_cpu, f_cpu, scrape_us;
    std::size_t scrapes = 0, failures = 0, in_window = 0, bytes = 0;
    for (int pair = 1; pair <= o.metrics_pairs; ++pair) {
      double rate[2] = {0, 0}, cpu[2] = {0, 0};
      const bool on_first = pair % 2 == 1;  // e f, f e, ...: drift hits both sides
      for (bool on : {on_first, !on_first}) {
        RunResult total;
        for (int pass = 1; pass <= s.passes; ++pass) {
          const std::string group = "kbus-bench-" + std::to_string(getpid()) + (on ? "-e" : "-f") + "-r" +
                                    std::to_string(pair) + "-p" + std::to_string(pass);
          Scraping scraping{.on = on, .interval = o.scrape_interval};
          const PassResult p = RunKbusPass(s, group, s.per_pass, 8, std::chrono::microseconds(0), &scraping);
          scrapes += scraping.scrapes;
          failures += scraping.failures;
          in_window += scraping.in_window;
          scrape_us.insert(scrape_us.end(), scraping.scrape_us.begin(), scraping.scrape_us.end());
          bytes = std::max(bytes, scraping.bytes);
          if (p.timed_out || p.checksum != s.checksum) {
            g_problems.push_back(std::string("metrics ") + (on ? "on" : "off") + " run " + std::to_string(pair) +
                                 (p.timed_out ? " timed out" : ": checksum differs from the produced records"));
            total = {};
            break;
          }
          total.messages += p.messages;
          total.seconds += p.seconds;
          total.cpu += p.cpu;
        }
        rate[on ? 0 : 1] = total.Rate();
        cpu[on ? 0 : 1] = total.CpuUs();
        (on ? e_cpu : f_cpu).push_back(total.CpuUs());
        std::printf("%-4d %-7s %9zu %9.3f %10s %13.2f\n", pair, on ? "e on" : "f off", total.messages, total.seconds,
                    Thousands(total.Rate()).c_str(), total.CpuUs());
        std::fflush(stdout);
      }
      if (rate[0] > 0 && rate[1] > 0) {
        ef.push_back(rate[0] / rate[1]);
        ef_cpu.push_back(cpu[0] / cpu[1]);
        std::printf("     e/f = %.3f, CPU per message e/f = %.3f\n", ef.back(), ef_cpu.back());
      }
    }
    if (failures > 0) g_problems.push_back(std::to_string(failures) + " scrapes of /metrics failed");
    std::printf("RESULT e/f median=%.3f (metrics on / off; pairs: ", Median(ef));
    for (std::size_t i = 0; i < ef.size(); ++i) std::printf("%s%.3f", i ? " " : "", ef[i]);
    std::printf(") cpu_e/f=%.3f e_cpu_us=%.2f f_cpu_us=%.2f scrapes=%zu in_windows=%zu scrape_us=%.0f bytes=%zu\n",
                Median(ef_cpu), Median(e_cpu), Median(f_cpu), scrapes, in_window, Median(scrape_us), bytes);
  }

  // (c) against (d): handlers that wait 1 ms (a call to another service, say), on 16 handler
  // threads against 1, on the same records. Ordered per key, and every record has its own key.
  if (o.sleep_messages > 0) {
    const std::size_t n = std::min(o.sleep_messages, s.per_pass);
    std::printf("\n(c) 16 handler threads against (d) 1, each handler sleeping 1 ms, the first %s records "
                "of the topic\n", Thousands(static_cast<double>(n)).c_str());
    std::vector<double> cd;
    for (int pair = 1; pair <= o.sleep_pairs; ++pair) {
      double rate[2] = {0, 0};
      for (int threads : {16, 1}) {
        const std::string group = "kbus-bench-" + std::to_string(getpid()) + "-sleep" +
                                  std::to_string(threads) + "-r" + std::to_string(pair);
        const PassResult p = RunKbusPass(s, group, n, threads, std::chrono::microseconds(1000));
        if (p.timed_out) {
          g_problems.push_back("sleep pass with " + std::to_string(threads) + " threads timed out after " +
                               std::to_string(p.messages) + " messages");
          continue;
        }
        const double r = p.seconds > 0 ? static_cast<double>(p.messages) / p.seconds : 0;
        rate[threads == 16 ? 0 : 1] = r;
        std::printf("%-4d %-7s %9zu %9.3f %10s %13.2f\n", pair, threads == 16 ? "c 16" : "d 1", p.messages,
                    p.seconds, Thousands(r).c_str(), p.messages ? p.cpu * 1e6 / static_cast<double>(p.messages) : 0);
        std::fflush(stdout);
      }
      if (rate[0] > 0 && rate[1] > 0) {
        cd.push_back(rate[0] / rate[1]);
        std::printf("     c/d = %.2f\n", cd.back());
      }
    }
    std::printf("RESULT c/d median=%.2f (16 threads against 1; the ideal is 16)\n", Median(cd));
  }
  for (const auto& problem : g_problems) std::printf("PROBLEM     %s\n", problem.c_str());
  std::fflush(stdout);

  if (!embedded) raw::DeleteTopic(producer.handle(), s.topic);
  return g_problems.empty() ? 0 : 1;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  bench::Options o;
  bench::LatencyOptions lo;
  bench::DelayedOptions delayed_o;
  bench::LanesOptions lanes_o;
  bench::ConsoleOptions console_o;
  bool quick = false;
  bool console = false;
  bool latency = false;
  bool delayed = false;
  bool lanes = false;
  long scrape_ms = 1000;
  po::options_description desc(
      "kbus-bench: a kbus Worker's consumer throughput against a plain librdkafka loop\nOptions");
  desc.add_options()("help,h", "this help")
      ("pairs", po::value(&o.pairs)->default_value(o.pairs), "alternating a/b pairs")
      ("messages", po::value(&o.messages)->default_value(o.messages), "messages consumed per run")
      ("partitions", po::value(&o.partitions)->default_value(o.partitions), "partitions of the topic")
      ("brokers", po::value(&o.brokers)->default_value(o.brokers),
       "\"embedded\" (an in-process mock cluster) or HOST:PORT of a real Kafka cluster")
      ("batch", po::value(&o.batch)->default_value(o.batch), "records per producer batch when filling")
      ("only", po::value(&o.only), "a or b: run one side only (for profilers); no ratio")
      ("sleep-messages", po::value(&o.sleep_messages)->default_value(o.sleep_messages),
       "records for (c) 16 handler threads against (d) 1, each handler sleeping 1 ms; 0 skips them")
      ("sleep-pairs", po::value(&o.sleep_pairs)->default_value(o.sleep_pairs), "c/d pairs")
      ("metrics-pairs", po::value(&o.metrics_pairs)->default_value(o.metrics_pairs),
       "pairs of (e) the worker serving /metrics, scraped every --scrape-interval-ms, against (f) no port; "
       "0 skips them")
      ("scrape-interval-ms", po::value(&scrape_ms)->default_value(scrape_ms), "scrape interval for (e)")
      ("quick", po::bool_switch(&quick),
       "smoke test: 20,000 messages and 1 pair unless given, then a 1 s latency run (correctness only)")
      ("latency", po::bool_switch(&latency),
       "the latency mode instead: commands at a fixed rate through consume -> handle -> produce, raw (a) "
       "against a Worker (b); see bench/latency.cpp")
      ("rate", po::value(&lo.rate)->default_value(lo.rate), "latency mode: commands per second")
      ("seconds", po::value(&lo.seconds)->default_value(lo.seconds), "latency mode: measured seconds per pass")
      ("warmup-seconds", po::value(&lo.warmup_seconds)->default_value(lo.warmup_seconds),
       "latency mode: seconds sent before the measured ones, reported apart")
      ("latency-pairs", po::value(&lo.pairs)->default_value(lo.pairs), "latency mode: alternating a/b pairs")
      ("latency-partitions", po::value(&lo.partitions)->default_value(lo.partitions),
       "latency mode: partitions of the input and output topics")
      ("fetch-wait-ms", po::value(&lo.fetch_wait_ms)->default_value(lo.fetch_wait_ms),
       "latency mode: both hops' fetch.wait.max.ms; 0: the Worker's default (also for --lanes)")
      ("lanes", po::bool_switch(&lanes),
       "the priority lanes mode instead: urgent latency behind a bulk backlog, and bulk throughput with and "
       "without urgent traffic; see bench/lanes.cpp")
      ("lanes-pairs", po::value(&lanes_o.pairs)->default_value(lanes_o.pairs), "lanes mode: base/lanes pairs")
      ("backlog", po::value(&lanes_o.backlog)->default_value(lanes_o.backlog), "lanes mode: bulk commands waiting")
      ("bulk-partitions", po::value(&lanes_o.bulk_partitions)->default_value(lanes_o.bulk_partitions),
       "lanes mode: partitions of the bulk lane")
      ("urgent-rate", po::value(&lanes_o.urgent_rate)->default_value(lanes_o.urgent_rate),
       "lanes mode: urgent commands per second")
      ("work-ms", po::value(&lanes_o.work_ms)->default_value(lanes_o.work_ms),
       "lanes mode: milliseconds each handler sleeps")
      ("weight", po::value(&lanes_o.weight)->default_value(lanes_o.weight), "lanes mode: the urgent lane's weight");
  po::options_description delayed_desc("Delayed messages mode (bench/delayed.cpp)");
  delayed_desc.add_options()
      ("delayed", po::bool_switch(&delayed),
       "the delayed messages mode instead: how late the scheduler fires under many pending messages, and its "
       "load time and memory with a large backlog, against plain librdkafka; --quick: a smoke run of it alone")
      ("delayed-messages", po::value(&delayed_o.messages)->default_value(delayed_o.messages),
       "delayed mode: messages fired (0 skips firing)")
      ("min-delay", po::value(&delayed_o.min_delay_s)->default_value(delayed_o.min_delay_s),
       "delayed mode: shortest delay, seconds")
      ("max-delay", po::value(&delayed_o.max_delay_s)->default_value(delayed_o.max_delay_s),
       "delayed mode: longest delay, seconds")
      ("load-messages", po::value(&delayed_o.load_messages)->default_value(delayed_o.load_messages),
       "delayed mode: pending messages loaded (0 skips loading; capped on the embedded broker)")
      ("load-pairs", po::value(&delayed_o.load_pairs)->default_value(delayed_o.load_pairs),
       "delayed mode: scheduler/raw load pairs")
      ("delayed-partitions", po::value(&delayed_o.partitions)->default_value(delayed_o.partitions),
       "delayed mode: partitions of every topic")
      ("payload-bytes", po::value(&delayed_o.payload_bytes)->default_value(delayed_o.payload_bytes),
       "delayed mode: JSON payload per message, about")
      ("prefetch-ms", po::value(&delayed_o.prefetch_ms)->default_value(delayed_o.prefetch_ms),
       "delayed mode: the scheduler's prefetch; 0: its default (5 s)");
  desc.add(delayed_desc);
  po::options_description console_desc("Console mode (bench/console.cpp)");
  console_desc.add_options()
      ("console", po::bool_switch(&console),
       "the console mode instead: kbus console's start-up time and memory with many workflow instances and dead "
       "letters against a plain librdkafka read, and its list endpoints' latency under concurrent clients; "
       "--quick: a smoke run of it alone")
      ("console-instances", po::value(&console_o.instances)->default_value(console_o.instances),
       "console mode: workflow instances (state records)")
      ("console-dead-letters", po::value(&console_o.dead_letters)->default_value(console_o.dead_letters),
       "console mode: dead letters")
      ("console-jobs", po::value(&console_o.jobs)->default_value(console_o.jobs),
       "console mode: launcher jobs (at most one per instance)")
      ("console-partitions", po::value(&console_o.partitions)->default_value(console_o.partitions),
       "console mode: partitions of every topic (raised on the embedded broker as its retention needs)")
      ("console-clients", po::value(&console_o.clients)->default_value(console_o.clients),
       "console mode: concurrent HTTP clients")
      ("console-seconds", po::value(&console_o.seconds)->default_value(console_o.seconds),
       "console mode: seconds of requests per endpoint")
      ("console-payload-bytes", po::value(&console_o.payload_bytes)->default_value(console_o.payload_bytes),
       "console mode: JSON payload of each dead letter, about");
  desc.add(console_desc);
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kbus-bench: %s (see --help)\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << '\n';
    return 0;
  }
  if (quick) {
    if (vm["messages"].defaulted()) o.messages = 20000;
    if (vm["pairs"].defaulted()) o.pairs = 1;
    if (vm["sleep-messages"].defaulted()) o.sleep_messages = 500;
    if (vm["sleep-pairs"].defaulted()) o.sleep_pairs = 1;
    if (vm["metrics-pairs"].defaulted()) o.metrics_pairs = 1;
    if (vm["latency-pairs"].defaulted()) lo.pairs = 1;
    if (vm["seconds"].defaulted()) lo.seconds = 1;
    if (vm["warmup-seconds"].defaulted()) lo.warmup_seconds = 0.2;
  }
  lo.brokers = o.brokers;
  delayed_o.brokers = o.brokers;
  delayed_o.load_given = !vm["load-messages"].defaulted();
  if (quick && delayed) {
    if (vm["delayed-messages"].defaulted()) delayed_o.messages = 300;
    // Time for the sends first, on a loaded machine (CI runs several suites at once on 2 cores).
    if (vm["min-delay"].defaulted()) delayed_o.min_delay_s = 4;
    if (vm["max-delay"].defaulted()) delayed_o.max_delay_s = 6;
    if (vm["load-messages"].defaulted()) delayed_o.load_messages = 4000;
    if (vm["load-pairs"].defaulted()) delayed_o.load_pairs = 1;
  }
  if (delayed_o.messages < 0 || !(delayed_o.min_delay_s > 0) || delayed_o.max_delay_s < delayed_o.min_delay_s ||
      delayed_o.load_messages < 0 || delayed_o.load_pairs < 1 || delayed_o.partitions < 1 ||
      delayed_o.payload_bytes < 21 || (delayed_o.prefetch_ms != 0 && delayed_o.prefetch_ms < 100)) {
    std::fprintf(stderr, "kbus-bench: need --delayed-messages >= 0, 0 < --min-delay <= --max-delay, "
                 "--load-messages >= 0, --load-pairs >= 1, --delayed-partitions >= 1, --payload-bytes >= 21, --prefetch-ms 0 or >= 100\n");
    return 2;
  }
  console_o.brokers = o.brokers;
  if (quick && console) {
    if (vm["console-instances"].defaulted()) console_o.instances = 2000;
    if (vm["console-dead-letters"].defaulted()) console_o.dead_letters = 2000;
    if (vm["console-jobs"].defaulted()) console_o.jobs = 500;
    if (vm["console-seconds"].defaulted()) console_o.seconds = 0.3;
    // Fewer clients than the console's 16 HTTP threads: 50 keep-alive connections queue for a
    // thread, for seconds on a loaded machine, which a smoke run need not wait out.
    if (vm["console-clients"].defaulted()) console_o.clients = 8;
  }
  if (console_o.instances < 1 || console_o.dead_letters < 1 || console_o.jobs < 0 ||
      console_o.jobs > console_o.instances || console_o.partitions < 1 || console_o.clients < 1 ||
      !(console_o.seconds > 0) || console_o.payload_bytes < 0) {
    std::fprintf(stderr, "kbus-bench: need --console-instances >= 1, --console-dead-letters >= 1, "
                 "0 <= --console-jobs <= --console-instances, --console-partitions >= 1, --console-clients >= 1, "
                 "--console-seconds > 0, --console-payload-bytes >= 0\n");
    return 2;
  }
  lanes_o.brokers = o.brokers;
  lanes_o.fetch_wait_ms = lo.fetch_wait_ms;
  o.scrape_interval = std::chrono::milliseconds(scrape_ms);
  if (o.pairs < 0 || o.metrics_pairs < 0 || scrape_ms < 1 || o.partitions < 1 || o.messages < static_cast<std::size_t>(o.partitions) || o.batch < 1 ||
      (!o.only.empty() && o.only != "a" && o.only != "b")) {
    std::fprintf(stderr, "kbus-bench: need --pairs >= 0, --metrics-pairs >= 0, --scrape-interval-ms >= 1, --partitions >= 1, --messages >= partitions, "
                 "--batch >= 1, --only a|b\n");
    return 2;
  }
  if (lo.pairs < 1 || !(lo.rate > 0) || lo.seconds < 0 || lo.warmup_seconds < 0 || lo.partitions < 1 ||
      lo.fetch_wait_ms < 0) {
    std::fprintf(stderr, "kbus-bench: need --latency-pairs >= 1, --rate > 0, --seconds >= 0, --warmup-seconds >= 0, "
                 "--latency-partitions >= 1, --fetch-wait-ms >= 0\n");
    return 2;
  }
  if (lanes_o.pairs < 1 || lanes_o.backlog < 100 || lanes_o.bulk_partitions < 1 || !(lanes_o.urgent_rate > 0) ||
      lanes_o.work_ms < 0 || lanes_o.weight < 1) {
    std::fprintf(stderr, "kbus-bench: need --lanes-pairs >= 1, --backlog >= 100, --bulk-partitions >= 1, "
                 "--urgent-rate > 0, --work-ms >= 0, --weight >= 1\n");
    return 2;
  }
  try {
    if (console) return bench::RunConsole(console_o);
    if (lanes) return bench::RunLanes(lanes_o);
    if (delayed) return bench::RunDelayed(delayed_o);
    if (latency) return bench::RunLatency(lo);
    const int throughput = bench::Run(o);
    if (!quick) return throughput;
    std::printf("\n");
    const int latencies = bench::RunLatency(lo);
    return throughput != 0 ? throughput : latencies;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kbus-bench: %s\n", e.what());
    return 1;
  }
}
