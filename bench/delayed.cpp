// kbus-bench --delayed: how late kbus's scheduler delivers delayed messages, and what a large
// backlog of pending ones costs it, each against plain librdkafka in the same process on the
// same broker.
//
//   kbus-bench --delayed                          embedded broker: firing with 10,000 messages;
//                                                 loading scaled down to what the broker keeps
//   kbus-bench --delayed --brokers HOST:PORT      real Kafka: firing, then 1,000,000 pending
//   kbus-bench --delayed --quick                  smoke test (ctest label "bench"): 300 messages
//                                                 due in 4-6 s, 4,000 pending; checks only
//
// Part 1, firing. Fresh topics (pending, schedules, target, baseline; --delayed-partitions each;
// the pending topic compacted on a real broker) and a Scheduler (its defaults: prefetch 5 s
// unless --prefetch-ms) running on its own thread, which owns every partition and has read them
// to their end (empty) before anything is sent. One consumer, assigned to the target and baseline topics outside any group
// (fetch.wait.max.ms 1 on the embedded broker, whose fetches wait that long even when data
// arrives; 100 on a real one, which answers at once), notes each record's arrival on the system
// clock. Then --delayed-messages messages (about --payload-bytes of JSON, kbus's full envelope)
// are produced to the pending topic as SendOptions::deliver_at makes them, due uniformly at
// random over [--min-delay, --max-delay] seconds from now. Meanwhile the baseline: a raw
// librdkafka producer with the scheduler's producer settings (kbus's ProducerProperties,
// linger.ms 1) produces one record of the same size to the baseline topic at each of the same
// due times, with its send time in a header: the same load, at the same moments, with no delay
// machinery in between. For every delivered copy:
//   lateness    its record timestamp (CreateTime: when the scheduler produced it) minus its
//               kbus-deliver-at header. Never negative: an early one is counted, printed and
//               fails the run.
//   end to end  its arrival at the consumer minus its due time; the baseline's is its arrival
//               minus its send time. The difference and ratio of the two, at p50 and p99, is
//               what delaying costs over sending at that moment directly.
// Every message must arrive exactly once (by kbus-id); a missing or duplicate one fails the run.
//
// Part 2, loading. --load-messages delayed messages due in a day (nothing fires) are produced
// to a fresh pending topic of --delayed-partitions partitions, then checked with the watermarks
// (beside it, a one-partition schedules topic the scheduler also owns). Then
// --load-pairs pairs of:
//   scheduler  malloc_trim, then VmRSS (/proc/self/status) and the heap in use (mallinfo2:
//              in-use plus mmapped chunks) are read; a Scheduler is built and run in a fresh
//              group; Stats() is polled every 10 ms until it owns every partition ("join") and
//              then until loading == 0 ("load"; pending must then equal the backlog); VmRSS and
//              the heap are read again. Their increase over the backlog is the memory per pending
//              message. VmRSS also counts freed memory glibc keeps, and librdkafka's fetch
//              buffers; the heap figure counts neither of the freed.
//   raw        a librdkafka consumer with the scheduler consumer's settings (fresh group,
//              earliest, partition EOF, fetch.wait.max.ms 20) subscribes to the same topic and
//              reads every record, looking its kbus-deliver-at header up, until every
//              partition has reported its end: the least any loader must do. Its "join" ends
//              at its first record.
// The ratio is scheduler / raw over the whole (join + load) and over the load alone (from
// owning the partitions to loaded), per pair, then the median. Memory is reported per pass; the
// first scheduler pass is the one in a process that has not yet held such a backlog.
// The embedded broker keeps about 5 MiB per partition and drops older records silently, so it
// cannot hold 1,000,000 of these records: there the backlog is capped at kEmbeddedPerPartition
// per partition (said in the output), and a larger --load-messages given explicitly is refused.
//
// The program exits 1 when a check fails; never on the figures.

#include "delayed.hpp"

#include <librdkafka/rdkafka.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "kbus/context.hpp"
#include "kbus/envelope.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/log.hpp"
#include "kbus/message.hpp"
#include "kbus/schedules/scheduler.hpp"
#include "bench_topics.hpp"
#include "process_stats.hpp"
#include "raw_client.hpp"

namespace bench {

// The delayed message: a sequence number and some text, about --payload-bytes of JSON.
struct Reminder {
  std::int64_t seq = 0;
  std::string note;
};

}  // namespace bench

template <>
struct kbus::MessageTraits<bench::Reminder> {
  static constexpr std::string_view kType = "bench.Reminder";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "bench.reminders";  // each run sends to its own topic
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("seq", &bench::Reminder::seq), kbus::Field("note", &bench::Reminder::note));
};

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// What the embedded broker keeps of these records per partition: ~5 MiB at ~450 B each is
// ~11,500; this leaves room for batch overhead, and the watermarks are checked after the fill.
constexpr std::int64_t kEmbeddedPerPartition = 8000;
constexpr const char* kSentHeader = "bench-sent-us";  // the baseline's send time

std::int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t NowMs() { return NowUs() / 1000; }

std::optional<std::int64_t> ParseI64(std::string_view text) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return SortedPercentile(v, p);
}

double Median(std::vector<double> v) { return Percentile(std::move(v), 0.5); }

struct Env {
  DelayedOptions o;
  std::string brokers;
  kbus::kafka::EmbeddedBroker* embedded = nullptr;  // null: a real broker
  std::string prefix;                               // of every topic and group of this run
};

std::vector<std::string> g_problems;

void Problem(std::string what) {
  std::printf("PROBLEM     %s\n", what.c_str());
  std::fflush(stdout);
  g_problems.push_back(std::move(what));
}

void CreateTopic(const Env& env, const std::string& name, bool compact, int partitions) {
  CreateBenchTopic(env.embedded, env.brokers, name, partitions, compact);
}

Reminder MakeReminder(std::int64_t seq, int payload_bytes) {
  // {"seq":N,"note":"..."}: 20 bytes of frame and number.
  return Reminder{seq, std::string(static_cast<std::size_t>(std::max(1, payload_bytes - 20)), 'x')};
}

// A producer with exactly the settings of kbus's Producer (and so of the scheduler's), but
// `linger`. The baseline sends with it; the fills use it with a longer linger.
raw::RdKafkaPtr NewProducer(const std::string& brokers, std::chrono::milliseconds linger) {
  kbus::kafka::ProducerConfig pc;
  pc.client.brokers = brokers;
  pc.client.client_id = "kbus-bench-delayed";
  pc.linger = linger;
  raw::RdConfPtr conf = raw::ProducerConf(pc);
  return raw::NewClient(RD_KAFKA_PRODUCER, conf);
}

// Produces `count` delayed messages due at dues[i] (ms since the epoch) to `target` through
// `pending`. Returns the seconds it took, flush included.
double FillPending(const Env& env, const std::string& pending, const std::string& target,
                   const std::vector<std::int64_t>& dues) {
  raw::RdKafkaPtr producer = NewProducer(env.brokers, 20ms);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < dues.size(); ++i) {
    kbus::SendOptions options;
    options.topic = target;
    options.deliver_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(dues[i]));
    options.pending_topic = pending;
    const kbus::OutgoingRecord r =
        kbus::BuildRecord(MakeReminder(static_cast<std::int64_t>(i), env.o.payload_bytes), std::move(options));
    raw::Produce(producer.get(), r, RD_KAFKA_PARTITION_UA);
    if (i % 1024 == 0) rd_kafka_poll(producer.get(), 0);
  }
  raw::Flush(producer.get(), 120s);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A Scheduler on its own thread until Stop() or destruction.
class RunningScheduler {
 public:
  explicit RunningScheduler(kbus::schedules::SchedulerConfig config)
      : scheduler_(std::make_unique<kbus::schedules::Scheduler>(std::move(config))),
        thread_([this] {
          try {
            scheduler_->Run();
          } catch (const std::exception& e) {
            std::fprintf(stderr, "kbus-bench: scheduler: %s\n", e.what());
          }
        }) {}
  RunningScheduler(const RunningScheduler&) = delete;
  RunningScheduler& operator=(const RunningScheduler&) = delete;
  ~RunningScheduler() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    scheduler_->Stop();
    thread_.join();
  }
  kbus::schedules::SchedulerStats Stats() const { return scheduler_->Stats(); }

 private:
  std::unique_ptr<kbus::schedules::Scheduler> scheduler_;
  std::thread thread_;
};

kbus::schedules::SchedulerConfig SchedulerFor(const Env& env, const std::string& pending, const std::string& schedules,
                                              const std::string& group) {
  kbus::schedules::SchedulerConfig c;
  c.client.brokers = env.brokers;
  c.client.client_id = "kbus-bench-delayed";
  c.group = group;
  c.pending_topic = pending;
  c.schedules_topic = schedules;
  c.run_topics = {};
  c.session_timeout = 6s;
  if (env.o.prefetch_ms > 0) c.prefetch = std::chrono::milliseconds(env.o.prefetch_ms);
  return c;
}

// ---- part 1: firing -----------------------------------------------------------------------------

// Reads the target and baseline topics from their beginning on its own thread and keeps, per
// record, what the figures need. Thread safety: counts from any thread; the rest after Stop().
class Arrivals {
 public:
  Arrivals(const Env& env, std::string target, std::string baseline)
      : target_(std::move(target)), baseline_(std::move(baseline)) {
    consumer_ = raw::NewClient(RD_KAFKA_CONSUMER,
                               raw::Properties{{"bootstrap.servers", env.brokers},
                                               {"client.id", "kbus-bench-delayed-receiver"},
                                               {"group.id", env.prefix + "-receiver"},
                                               {"enable.auto.commit", "false"},
                                               {"fetch.wait.max.ms", env.embedded ? "1" : "100"}});
    rd_kafka_poll_set_consumer(consumer_.get());
    raw::RdListPtr list(rd_kafka_topic_partition_list_new(2 * env.o.partitions));
    for (const auto* topic : {&target_, &baseline_}) {
      for (int p = 0; p < env.o.partitions; ++p) {
        rd_kafka_topic_partition_list_add(list.get(), topic->c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
      }
    }
    if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer_.get(), list.get())) {
      throw std::runtime_error(std::string("cannot assign the receiver: ") + rd_kafka_err2str(err));
    }
    thread_ = std::thread([this] { Loop(); });
  }
  Arrivals(const Arrivals&) = delete;
  Arrivals& operator=(const Arrivals&) = delete;
  ~Arrivals() { Stop(); }

  void Stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    thread_.join();
    raw::Close(consumer_.get());
  }
  std::size_t delayed() const { return delayed_count_.load(); }
  std::size_t baseline() const { return baseline_count_.load(); }

  std::vector<double> lateness_ms, delayed_e2e_ms, baseline_e2e_ms;
  std::size_t duplicates = 0, unreadable = 0, errors = 0;

 private:
  void Loop() {
    while (!stop_.load(std::memory_order_relaxed)) {
      raw::RdMessagePtr m(rd_kafka_consumer_poll(consumer_.get(), 50));
      if (!m) continue;
      const std::int64_t seen_us = NowUs();
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) ++errors;
        continue;
      }
      const std::string_view topic = rd_kafka_topic_name(m->rkt);
      if (topic == target_) {
        const auto due = ParseI64(raw::Header(m.get(), std::string(kbus::header::kDeliverAt).c_str()));
        const std::string id(raw::Header(m.get(), std::string(kbus::header::kId).c_str()));
        rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        const std::int64_t ts = rd_kafka_message_timestamp(m.get(), &type);
        if (!due || id.empty() || type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
          ++unreadable;
          continue;
        }
        if (!ids_.insert(id).second) {
          ++duplicates;
          continue;
        }
        lateness_ms.push_back(static_cast<double>(ts - *due));
        delayed_e2e_ms.push_back(static_cast<double>(seen_us - *due * 1000) / 1000.0);
        delayed_count_.fetch_add(1);
      } else if (topic == baseline_) {
        const auto sent = ParseI64(raw::Header(m.get(), kSentHeader));
        if (!sent) {
          ++unreadable;
          continue;
        }
        baseline_e2e_ms.push_back(static_cast<double>(seen_us - *sent) / 1000.0);
        baseline_count_.fetch_add(1);
      }
    }
  }

  std::string target_, baseline_;
  raw::RdKafkaPtr consumer_;
  std::unordered_set<std::string> ids_;
  std::atomic<std::size_t> delayed_count_{0}, baseline_count_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Produces one record to `topic` at each of `dues` (sorted, ms since the epoch), on its own
// thread, with its send time in a header.
class BaselineSender {
 public:
  BaselineSender(const Env& env, std::string topic, std::vector<std::int64_t> dues)
      : topic_(std::move(topic)), dues_(std::move(dues)), producer_(NewProducer(env.brokers, 1ms)) {
    raw::LearnTopic(producer_.get(), topic_);
    value_ = kbus::EncodeJson(MakeReminder(0, env.o.payload_bytes)).value();
    thread_ = std::thread([this] { Loop(); });
  }
  BaselineSender(const BaselineSender&) = delete;
  BaselineSender& operator=(const BaselineSender&) = delete;
  ~BaselineSender() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    thread_.join();
  }

 private:
  void Loop() {
    for (std::size_t i = 0; i < dues_.size() && !stop_.load(); ++i) {
      while (NowMs() < dues_[i] && !stop_.load()) {
        rd_kafka_poll(producer_.get(), 0);
        std::this_thread::sleep_until(std::chrono::system_clock::time_point(std::chrono::milliseconds(dues_[i])));
      }
      const std::string sent = std::to_string(NowUs());
      raw::RdHeadersPtr headers(rd_kafka_headers_new(1));
      rd_kafka_header_add(headers.get(), kSentHeader, -1, sent.data(), static_cast<ssize_t>(sent.size()));
      raw::Produce(producer_.get(), topic_.c_str(), RD_KAFKA_PARTITION_UA, "b-" + std::to_string(i), value_,
                   std::move(headers));
      rd_kafka_poll(producer_.get(), 0);
    }
    try {
      raw::Flush(producer_.get(), 30s);
    } catch (const std::exception& e) {
      Problem(std::string("baseline sender: ") + e.what());
    }
  }

  std::string topic_;
  std::vector<std::int64_t> dues_;
  raw::RdKafkaPtr producer_;
  std::string value_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

void RunFiring(const Env& env) {
  const DelayedOptions& o = env.o;
  const std::string pending = env.prefix + "-fire-pending", schedules = env.prefix + "-fire-schedules";
  const std::string target = env.prefix + "-fire-target", baseline = env.prefix + "-fire-baseline";
  CreateTopic(env, pending, true, o.partitions);
  CreateTopic(env, schedules, true, o.partitions);
  CreateTopic(env, target, false, o.partitions);
  CreateTopic(env, baseline, false, o.partitions);

  std::printf("firing: %d delayed messages due %.0f-%.0f s after sending, ~%d B payload, %d partitions, prefetch %s\n",
              o.messages, o.min_delay_s, o.max_delay_s, o.payload_bytes, o.partitions,
              o.prefetch_ms > 0 ? (std::to_string(o.prefetch_ms) + " ms").c_str() : "default");
  const auto start = Clock::now();
  RunningScheduler scheduler(SchedulerFor(env, pending, schedules, env.prefix + "-fire-scheduler"));
  const auto owned = static_cast<std::uint32_t>(2 * o.partitions);
  while (true) {
    const auto s = scheduler.Stats();
    if (s.partitions == owned && s.loading == 0) break;
    if (Clock::now() - start > 120s) {
      Problem("firing: the scheduler did not own and load its partitions within 120 s");
      return;
    }
    std::this_thread::sleep_for(10ms);
  }
  std::printf("  scheduler ready (owns %u partitions, all read) after %.2f s\n", owned,
              std::chrono::duration<double>(Clock::now() - start).count());

  Arrivals arrivals(env, target, baseline);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::int64_t> delay_ms(static_cast<std::int64_t>(o.min_delay_s * 1000),
                                                       static_cast<std::int64_t>(o.max_delay_s * 1000));
  const std::int64_t now = NowMs();
  std::vector<std::int64_t> dues(static_cast<std::size_t>(o.messages));
  for (auto& d : dues) d = now + delay_ms(rng);
  const double fill_s = FillPending(env, pending, target, dues);
  const std::int64_t first_due = *std::min_element(dues.begin(), dues.end());
  std::printf("  sent in %.2f s; the first falls due %.2f s after the send began\n", fill_s,
              static_cast<double>(first_due - now) / 1000.0);
  if (NowMs() > first_due) Problem("firing: sending took longer than the shortest delay; raise --min-delay");

  std::vector<std::int64_t> sorted = dues;
  std::sort(sorted.begin(), sorted.end());
  const std::int64_t last_due = sorted.back();
  BaselineSender sender(env, baseline, std::move(sorted));
  const auto expected = static_cast<std::size_t>(o.messages);
  std::uint64_t max_pending = 0;
  while (arrivals.delayed() < expected || arrivals.baseline() < expected) {
    max_pending = std::max(max_pending, scheduler.Stats().pending);
    if (NowMs() > last_due + 30000) break;
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(500ms);  // a duplicate right behind the last one
  sender.Stop();
  arrivals.Stop();
  const auto stats = scheduler.Stats();
  scheduler.Stop();

  const auto& late = arrivals.lateness_ms;
  const auto early = static_cast<std::size_t>(std::count_if(late.begin(), late.end(), [](double v) { return v < 0; }));
  const double late_max = Percentile(late, 1);
  const double e2e_max = Percentile(arrivals.delayed_e2e_ms, 1);
  const double base_max = Percentile(arrivals.baseline_e2e_ms, 1);
  const double l50 = Percentile(late, 0.5), l99 = Percentile(late, 0.99);
  const double d50 = Percentile(arrivals.delayed_e2e_ms, 0.5), d99 = Percentile(arrivals.delayed_e2e_ms, 0.99);
  const double b50 = Percentile(arrivals.baseline_e2e_ms, 0.5), b99 = Percentile(arrivals.baseline_e2e_ms, 0.99);
  std::printf("  delivered %zu/%zu (scheduler: delivered %lu, pending %lu now, at most %lu seen), baseline %zu/%zu\n",
              arrivals.delayed(), expected, static_cast<unsigned long>(stats.delivered),
              static_cast<unsigned long>(stats.pending), static_cast<unsigned long>(max_pending), arrivals.baseline(),
              expected);
  std::printf("  lateness (timestamp - deliver-at)  p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  early: %zu\n", l50, l99,
              late_max, early);
  std::printf("  delayed end to end (seen - due)    p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms\n", d50, d99, e2e_max);
  std::printf("  raw baseline (seen - sent)         p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms\n", b50, b99, base_max);
  std::printf("  delayed - raw                      p50 %+8.2f ms  p99 %+8.2f ms; delayed / raw p50 %.2f, p99 %.2f\n",
              d50 - b50, d99 - b99, b50 > 0 ? d50 / b50 : -1, b99 > 0 ? d99 / b99 : -1);
  std::printf("RESULT delayed-firing messages=%zu lateness_p50_ms=%.2f lateness_p99_ms=%.2f lateness_max_ms=%.2f "
              "early=%zu e2e_p50_ms=%.2f e2e_p99_ms=%.2f raw_p50_ms=%.2f raw_p99_ms=%.2f added_p50_ms=%.2f "
              "added_p99_ms=%.2f ratio_p50=%.2f ratio_p99=%.2f\n",
              expected, l50, l99, late_max, early, d50, d99, b50, b99, d50 - b50, d99 - b99, b50 > 0 ? d50 / b50 : -1,
              b99 > 0 ? d99 / b99 : -1);
  std::fflush(stdout);
  if (early > 0) Problem("firing: " + std::to_string(early) + " messages delivered before their time");
  if (arrivals.delayed() != expected) {
    Problem("firing: " + std::to_string(arrivals.delayed()) + " of " + std::to_string(expected) +
            " delayed messages arrived within 30 s of the last due time");
  }
  if (arrivals.baseline() != expected) Problem("firing: the baseline lost records");
  if (arrivals.duplicates > 0) Problem("firing: " + std::to_string(arrivals.duplicates) + " messages delivered twice");
  if (arrivals.unreadable > 0 || arrivals.errors > 0) {
    Problem("firing: " + std::to_string(arrivals.unreadable) + " unreadable records, " +
            std::to_string(arrivals.errors) + " consumer errors");
  }
}

// ---- part 2: loading ----------------------------------------------------------------------------

struct LoadPass {
  double join_s = -1, total_s = -1;  // start to owning every partition; start to loaded
  std::int64_t rss_kb = 0, heap_bytes = 0;  // increase
  bool done = false;  // finished within the time limit (a wrong count is a problem, not a lost figure)
};

LoadPass SchedulerLoad(const Env& env, const std::string& pending, const std::string& schedules, int pass,
                       std::int64_t expected) {
  LoadPass r;
  malloc_trim(0);
  const std::int64_t rss0 = StatusKb("VmRSS"), heap0 = HeapInUse();
  const auto start = Clock::now();
  RunningScheduler scheduler(
      SchedulerFor(env, pending, schedules, env.prefix + "-load-scheduler-" + std::to_string(pass)));
  const auto owned = static_cast<std::uint32_t>(env.o.partitions + 1);  // the schedules topic has 1
  while (true) {
    const auto s = scheduler.Stats();
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    if (r.join_s < 0 && s.partitions == owned) r.join_s = t;
    if (s.partitions == owned && s.loading == 0) {
      r.total_s = t;
      r.done = true;
      if (s.pending != static_cast<std::uint64_t>(expected)) {
        Problem("load: the scheduler loaded " + std::to_string(s.pending) + " pending messages of " +
                std::to_string(expected));
      }
      break;
    }
    if (t > 600) {
      Problem("load: the scheduler had not loaded after 600 s (pending " + std::to_string(s.pending) + ")");
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  r.rss_kb = StatusKb("VmRSS") - rss0;
  r.heap_bytes = HeapInUse() - heap0;
  scheduler.Stop();
  return r;
}

LoadPass RawLoad(const Env& env, const std::string& pending, int pass, std::int64_t expected) {
  LoadPass r;
  malloc_trim(0);
  const std::int64_t rss0 = StatusKb("VmRSS"), heap0 = HeapInUse();
  const auto start = Clock::now();
  raw::RdKafkaPtr consumer = raw::NewClient(
      RD_KAFKA_CONSUMER, raw::Properties{{"bootstrap.servers", env.brokers},
                                         {"client.id", "kbus-bench-delayed-raw"},
                                         {"group.id", env.prefix + "-load-raw-" + std::to_string(pass)},
                                         {"enable.auto.commit", "false"},
                                         {"enable.auto.offset.store", "false"},
                                         {"auto.offset.reset", "earliest"},
                                         {"enable.partition.eof", "true"},
                                         {"session.timeout.ms", "6000"},
                                         {"heartbeat.interval.ms", "1200"},
                                         {"fetch.wait.max.ms", "20"}});
  raw::Subscribe(consumer.get(), pending);
  const std::string deliver_at(kbus::header::kDeliverAt);
  std::set<std::int32_t> at_end;
  std::int64_t count = 0, checksum = 0;
  while (at_end.size() < static_cast<std::size_t>(env.o.partitions)) {
    raw::RdMessagePtr m(rd_kafka_consumer_poll(consumer.get(), 20));
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    if (t > 600) {
      Problem("load: the raw read had not finished after 600 s");
      break;
    }
    if (!m) continue;
    if (r.join_s < 0) r.join_s = t;  // its first message or end: it owns partitions
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end.insert(m->partition);
    } else if (!m->err) {
      ++count;
      checksum += ParseI64(raw::Header(m.get(), deliver_at.c_str())).value_or(0) & 0xff;
    }
  }
  r.total_s = std::chrono::duration<double>(Clock::now() - start).count();
  r.rss_kb = StatusKb("VmRSS") - rss0;
  r.heap_bytes = HeapInUse() - heap0;
  r.done = at_end.size() == static_cast<std::size_t>(env.o.partitions);
  if (count != expected) {
    Problem("load: the raw read saw " + std::to_string(count) + " records of " + std::to_string(expected));
  }
  if (checksum < 0) Problem("load: impossible checksum");  // keeps the header look-up
  raw::Close(consumer.get());
  return r;
}

void RunLoad(const Env& env, std::int64_t messages) {
  const DelayedOptions& o = env.o;
  const std::string pending = env.prefix + "-load-pending", schedules = env.prefix + "-load-schedules";
  CreateTopic(env, pending, true, o.partitions);
  CreateTopic(env, schedules, true, 1);  // empty: the scheduler owns it, nothing more
  const std::int64_t due = NowMs() + 24 * 3600 * 1000;
  const std::vector<std::int64_t> dues(static_cast<std::size_t>(messages), due);
  const double fill_s = FillPending(env, pending, pending + "-never", dues);
  // Every record still there?
  raw::RdKafkaPtr probe = raw::NewClient(RD_KAFKA_PRODUCER, raw::Properties{{"bootstrap.servers", env.brokers}});
  std::int64_t kept = 0;
  for (int p = 0; p < o.partitions; ++p) {
    const auto [low, high] = raw::Watermarks(probe.get(), pending, p);
    if (low != 0) {
      Problem("load: partition " + std::to_string(p) + " dropped records (low watermark " + std::to_string(low) + ")");
    }
    kept += high - low;
  }
  probe.reset();
  std::printf("\nloading: %ld pending messages due in a day, ~%d B payload, %d partitions; produced in %.1f s "
              "(%.0f msg/s), %ld in the topic\n",
              static_cast<long>(messages), o.payload_bytes, o.partitions, fill_s, static_cast<double>(messages) / fill_s,
              static_cast<long>(kept));
  if (kept != messages) {
    Problem("load: the topic holds " + std::to_string(kept) + " records, not " + std::to_string(messages));
    return;
  }
  std::printf("%-4s %-9s %7s %8s %8s %10s %11s %9s %9s\n", "pair", "side", "join s", "load s", "total s", "RSS +MiB",
              "heap +MiB", "RSS B/msg", "heap B/msg");
  std::vector<double> ratio_total, ratio_load, sched_total, raw_total;
  for (int pair = 1; pair <= o.load_pairs; ++pair) {
    LoadPass s = SchedulerLoad(env, pending, schedules, pair, messages);
    LoadPass a = RawLoad(env, pending, pair, messages);
    for (const auto& [name, p] : {std::pair<const char*, const LoadPass&>{"scheduler", s}, {"raw", a}}) {
      std::printf("%-4d %-9s %7.2f %8.2f %8.2f %10.1f %11.1f %9.1f %9.1f\n", pair, name, p.join_s, p.total_s - p.join_s,
                  p.total_s, static_cast<double>(p.rss_kb) / 1024.0, static_cast<double>(p.heap_bytes) / 1048576.0,
                  static_cast<double>(p.rss_kb) * 1024.0 / static_cast<double>(messages),
                  static_cast<double>(p.heap_bytes) / static_cast<double>(messages));
    }
    std::fflush(stdout);
    if (!s.done || !a.done) continue;
    sched_total.push_back(s.total_s);
    raw_total.push_back(a.total_s);
    ratio_total.push_back(s.total_s / a.total_s);
    ratio_load.push_back((s.total_s - s.join_s) / (a.total_s - a.join_s));
  }
  if (ratio_total.empty()) return;
  std::printf("median      scheduler %.2f s, raw %.2f s; scheduler / raw: total %.2f, load alone %.2f (%zu pairs)\n",
              Median(sched_total), Median(raw_total), Median(ratio_total), Median(ratio_load), ratio_total.size());
  std::printf("RESULT delayed-load messages=%ld scheduler_s=%.2f raw_s=%.2f ratio_total=%.2f ratio_load=%.2f\n",
              static_cast<long>(messages), Median(sched_total), Median(raw_total), Median(ratio_total),
              Median(ratio_load));
  std::fflush(stdout);
}

}  // namespace

int RunDelayed(const DelayedOptions& options) {
  Env env{.o = options, .brokers = options.brokers};
  env.prefix = "kbus-bench-delayed-" + std::to_string(getpid());
  std::unique_ptr<kbus::kafka::EmbeddedBroker> broker;
  if (env.o.brokers == "embedded") {
    broker = std::make_unique<kbus::kafka::EmbeddedBroker>();
    env.embedded = broker.get();
    env.brokers = broker->bootstrap();
  }
  // The scheduler logs each partition it loads; only warnings belong between the figures.
  if (!kbus::LogEnabled(kbus::LogLevel::kDebug)) kbus::SetLogLevel(kbus::LogLevel::kWarn);

  std::int64_t load = env.o.load_messages;
  if (env.embedded && load > kEmbeddedPerPartition * env.o.partitions) {
    const std::int64_t cap = kEmbeddedPerPartition * env.o.partitions;
    if (env.o.load_given) {
      std::fprintf(stderr,
                   "kbus-bench: --load-messages %ld cannot be held by the embedded broker (it keeps about 5 MiB per "
                   "partition, at most %ld of these records on %d partitions): run against real Kafka with "
                   "--brokers HOST:PORT (scripts/kafka-broker.sh start DIR prints one), or give at most %ld\n",
                   static_cast<long>(load), static_cast<long>(cap), env.o.partitions, static_cast<long>(cap));
      return 2;
    }
    std::printf("note: the embedded broker keeps about 5 MiB per partition: loading is scaled down from %ld to %ld "
                "pending messages; run with --brokers HOST:PORT for the full figure\n",
                static_cast<long>(load), static_cast<long>(cap));
    load = cap;
  }
  std::printf("kbus-bench --delayed on %s\n\n", env.embedded ? "the embedded broker" : env.brokers.c_str());
  if (env.o.messages > 0) RunFiring(env);
  if (load > 0) RunLoad(env, load);
  std::fflush(stdout);
  return g_problems.empty() ? 0 : 1;
}

}  // namespace bench
