// kbus-bench --latency: how long one command takes through a consume -> handle -> produce hop,
// on a plain librdkafka loop (a) and on a kbus Worker (b), at a fixed send rate, in one process,
// on one broker.
//
//   kbus-bench --latency                          embedded broker, 2,000 msg/s, 1 s warm-up then
//                                                 10 s measured per pass, 3 pairs
//   kbus-bench --latency --brokers HOST:PORT      the same against a real Kafka cluster
//   kbus-bench --latency --rate 500 --seconds 30 --latency-pairs 5
//
// One pass: fresh input and output topics (--latency-partitions each) and a fresh consumer
// group. A receiver reads the output topic (assigned, from the start, outside any group); the
// hop starts only once the receiver has read a probe record from every partition of it (on a
// real broker a raw consumer is ready within 0.1 s, sooner than a fresh reader of a new topic
// fetches). When the hop's consumer is ready, the sender sends command 0 at once and waits
// for its reply; then commands 1.. at the rate, on a fixed schedule. Each command is the
// EncodeVideo record of the throughput mode (encode_video.hpp, kbus's envelope headers and all)
// whose created_at field carries the steady clock, in ns, when the sender built it; the reply
// carries it back, and the receiver records arrival minus that. Both clocks are one process's
// steady clock, so no clock skew enters.
//   first     the reply to command 0: what the first message after start costs, from the
//             moment the consumer is ready, including every lazy first-time step of the hop
//             (offset look-ups, the first fetch, the first produce of a fresh producer);
//   warm-up   commands sent in the first --warmup-seconds: reported, not in the percentiles;
//   steady    the rest: p50, p99, max.
// "Ready": (a) the raw consumer has its assignment (rd_kafka_assignment); (b) the Worker's
// health board says ready (Worker::health(): joined, and the coordinator seen up in the
// statistics librdkafka emits once a second, so (b) becomes ready up to a second after it
// joined, which the "ready s" column shows).
//
// The hop:
//   (a) raw: one thread: rd_kafka_consumer_poll; check the kbus-type header; parse with
//       RapidJSON (DecodeRaw); write the reply {"id","created_at"} with RapidJSON; produce it to
//       the same partition number of the output topic with a kbus-type header. It looks the
//       output topic up at start (raw::LearnTopic), as a loop that knows where it replies can;
//       a Worker's producer learns a topic on its first record to it. The input offset is
//       stored (rd_kafka_offsets_store) when the reply's delivery report says the broker has
//       it, and librdkafka auto-commits what is stored every 500 ms. That is the honest
//       equivalent of what the Worker guarantees (at-least-once: an input offset is committed
//       only after what its handler sent was acknowledged), without the Worker's lease: before
//       a batch of records runs, the Worker commits their delivery counts synchronously (so a
//       record that keeps crashing the process is dead-lettered after max_deliveries), which a
//       plain loop does not keep. Replying on the same partition number keeps each input
//       partition's acknowledgements in order, so a stored offset never passes an unacknowledged
//       reply. The consumer and producer get exactly the librdkafka properties the Worker's do
//       (raw::ConsumerConf, raw::ProducerConf: idempotent, acks=all, linger.ms=1,
//       fetch.wait.max.ms=100, session.timeout.ms=10000, range).
//   (b) kbus: a Worker with default settings (WorkerConfig{} plus brokers and group) and a
//       typed handler that sends the reply through its Context (as examples/quickstart does).
// Passes go a b, b a, ... (a drift of this shared machine's speed hits both sides alike); the
// added latency b - a is the median over pairs of the per-pair differences, at p50 and p99.
// The "commits" column counts (b)'s offset commits, lease and periodic; the "commit" line
// before the table is one synchronous commit's round trip on this broker (CommitRoundTrips).
//
// What else is in every figure, the same for both sides: the sender (linger.ms=0, acks=1, not
// idempotent: it should add as little as it can) and the receiver (fetch.wait.max.ms=1 on the
// embedded broker, 100 on a real one: Receiver says why).
// On the embedded broker the fetch wait matters: librdkafka's mock answers a fetch that finds no
// data only after fetch.wait.max.ms, even if data arrives meanwhile (a real broker answers as
// soon as data arrives), so at low rates a consumer's fetch wait is added to the latency of a
// record that just missed a fetch. --fetch-wait-ms changes it for both hops.
//
// What the first runs showed (librdkafka 2.0.2), and what changed since: (b)'s first reply took
// about 1 s on both brokers, because the Worker's producer learned the output topic only on its
// first record, from librdkafka's next once-a-second topic scan (the Worker now learns every
// topic before it reports ready); at low rates (b) adds about one commit round trip per record
// (its lease commit, now asynchronous); the producers' linger.ms was most of either side's p50
// (5 ms then, 1 ms now on both).
//
// The program exits 1 when a command's reply does not arrive, arrives twice, or the hop fails
// to start; never on the figures.

#include "latency.hpp"

#include <librdkafka/rdkafka.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "encode_video.hpp"
#include "kbus/context.hpp"
#include "kbus/handler_registry.hpp"
#include "kbus/health.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/log.hpp"
#include "latency_ends.hpp"
#include "raw_client.hpp"

namespace bench {

// The reply: which command, and when it was sent.
struct VideoEncoded {
  std::string id;
  std::int64_t created_at = 0;
};

}  // namespace bench

template <>
struct kbus::MessageTraits<bench::VideoEncoded> {
  static constexpr std::string_view kType = "bench.VideoEncoded";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "bench.replies";  // each pass uses its own topic
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &bench::VideoEncoded::id),
                                               kbus::Field("created_at", &bench::VideoEncoded::created_at));
};

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using latency::Receiver;
using latency::Sender;

// Waits for `done` up to `limit`, looking every `step`.
bool WaitFor(const std::function<bool()>& done, Clock::duration limit, Clock::duration step) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(step);
  }
  return true;
}

// ---- (a) the plain librdkafka hop ---------------------------------------------------------------

// The header comment says what it does per record. Thread safety: its own thread runs the loop
// and every callback (rebalance from rd_kafka_consumer_poll, delivery reports from rd_kafka_poll);
// ready() and Stop() from any thread.
class RawHop {
 public:
  RawHop(const kbus::kafka::WorkerConfig& config, std::string in, std::string out)
      : in_(std::move(in)), out_(std::move(out)) {
    raw::RdConfPtr cconf = raw::ConsumerConf(config);
    consumer_ = raw::NewClient(RD_KAFKA_CONSUMER, cconf);
    kbus::kafka::ProducerConfig pc;
    pc.client = config.client;
    pc.linger = std::chrono::milliseconds(1);  // as the Worker's outgoing producer
    raw::RdConfPtr pconf = raw::ProducerConf(pc);
    rd_kafka_conf_set_opaque(pconf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(pconf.get(), &RawHop::Delivered);
    producer_ = raw::NewClient(RD_KAFKA_PRODUCER, pconf);
    // A hand-written loop knows where it replies: it looks the topic up at start.
    raw::LearnTopic(producer_.get(), out_);
    raw::Subscribe(consumer_.get(), in_);
    thread_ = std::thread([this] { Loop(); });
  }
  RawHop(const RawHop&) = delete;
  RawHop& operator=(const RawHop&) = delete;
  ~RawHop() { Stop(); }

  bool ready() const { return ready_.load(); }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    thread_.join();
  }
  // After Stop().
  std::size_t failures() const { return bad_ + delivery_errors_ + store_errors_ + consumer_errors_; }

 private:
  void Loop() {
    while (!stop_.load(std::memory_order_relaxed)) {
      raw::RdMessagePtr m(rd_kafka_consumer_poll(consumer_.get(), 100));
      if (m) Handle(*m);
      if (!ready_.load(std::memory_order_relaxed)) ready_.store(Assigned());
      rd_kafka_poll(producer_.get(), 0);  // delivery reports: store the offsets of what is done
    }
    try {
      raw::Flush(producer_.get(), 10s);  // the Worker's shutdown_grace
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: raw hop: %s\n", e.what());
      ++delivery_errors_;
    }
    raw::Close(consumer_.get());  // commits what was stored
    store_.Clear();
  }

  void Handle(const rd_kafka_message_t& m) {
    if (m.err) {
      if (m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF) ++consumer_errors_;
      return;
    }
    EncodeVideo v;
    if (raw::Header(&m, "kbus-type") != kbus::MessageTraits<EncodeVideo>::kType || !DecodeRaw(m.payload, m.len, v)) {
      ++bad_;  // a plain loop would log it and move on
      if (store_.Done(consumer_.get(), &m) != RD_KAFKA_RESP_ERR_NO_ERROR) ++store_errors_;
      return;
    }
    rapidjson::StringBuffer reply;
    rapidjson::Writer<rapidjson::StringBuffer> w(reply);
    w.StartObject();
    w.Key("id");
    w.String(v.id.data(), static_cast<rapidjson::SizeType>(v.id.size()));
    w.Key("created_at");
    w.Int64(v.created_at);
    w.EndObject();
    constexpr std::string_view type = kbus::MessageTraits<VideoEncoded>::kType;
    raw::RdHeadersPtr headers(rd_kafka_headers_new(1));
    rd_kafka_header_add(headers.get(), "kbus-type", -1, type.data(), static_cast<ssize_t>(type.size()));
    // The input offset to store travels as the record's opaque; the partition number is the same.
    raw::Produce(producer_.get(), out_.c_str(), m.partition,
                 std::string_view(static_cast<const char*>(m.key), m.key_len),
                 std::string_view(reply.GetString(), reply.GetSize()), std::move(headers),
                 reinterpret_cast<void*>(static_cast<std::uintptr_t>(m.offset + 1)));
  }

  static void Delivered(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) noexcept {
    auto* self = static_cast<RawHop*>(opaque);
    if (m->err) {
      ++self->delivery_errors_;  // its input offset stays unstored: delivered again after a restart
      return;
    }
    const auto next = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(m->_private));
    if (self->store_.Store(self->consumer_.get(), self->in_.c_str(), m->partition, next) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++self->store_errors_;
    }
  }

  // Whether the group gave this consumer its partitions (librdkafka assigned them on its own:
  // no rebalance callback).
  bool Assigned() {
    rd_kafka_topic_partition_list_t* parts = nullptr;
    if (rd_kafka_assignment(consumer_.get(), &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
    const raw::RdListPtr owned(parts);
    return parts->cnt > 0;
  }

  std::string in_, out_;
  raw::RdKafkaPtr consumer_, producer_;
  raw::OffsetStore store_;
  std::size_t bad_ = 0, delivery_errors_ = 0, store_errors_ = 0, consumer_errors_ = 0;  // loop thread
  std::atomic<bool> ready_{false}, stop_{false};
  std::thread thread_;
};

// ---- passes -------------------------------------------------------------------------------------

enum class Side { kRaw, kKbus };
const char* Name(Side side) { return side == Side::kRaw ? "a raw" : "b kbus"; }

struct Env {
  LatencyOptions o;
  std::string brokers;
  kbus::kafka::EmbeddedBroker* embedded = nullptr;  // null: a real broker
};

struct PassResult {
  double ready_s = -1;  // from the hop's start to ready
  double first_ms = -1;
  std::vector<double> warmup_ms, steady_ms;  // sorted
  std::size_t expected = 0, received = 0;
  std::int64_t commits = -1;  // (b): offset commits the Worker made, lease and periodic
};

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return -1;
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

std::vector<std::string> g_problems;

void CreateTopics(const Env& env, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    kbus::Status s = env.embedded ? env.embedded->CreateTopic(name, env.o.partitions)
                                  : kbus::kafka::CreateTopics(kbus::kafka::ClientConfig{.brokers = env.brokers},
                                                              {{.name = name, .partitions = env.o.partitions}});
    if (!s.ok()) throw std::runtime_error("cannot create " + name + ": " + s.error().ToString());
  }
}

PassResult RunPass(Side side, const Env& env, Sender& sender, int pair) {
  const std::string base = "kbus-bench-latency-" + std::to_string(getpid()) + "-" + std::to_string(pair) +
                           (side == Side::kRaw ? "a" : "b");
  const std::string in = base + "-in", out = base + "-out";
  const std::string where = std::string(Name(side)) + " pair " + std::to_string(pair) + ": ";
  CreateTopics(env, {in, out});
  const auto warm = static_cast<std::size_t>(std::llround(env.o.rate * env.o.warmup_seconds));
  const auto steady = static_cast<std::size_t>(std::llround(env.o.rate * env.o.seconds));
  PassResult r;
  r.expected = 1 + warm + steady;

  // The receiver must read before the hop starts (a raw consumer can be ready within 0.1 s of
  // its start on a real broker, a fresh assignment may take longer to fetch): wait for probes.
  Receiver receiver(env.brokers, out, env.o.partitions, r.expected, env.embedded ? 1ms : 100ms);
  sender.Probe(out, env.o.partitions);
  if (!WaitFor([&] { return receiver.reading(); }, 30s, 1ms)) {
    throw std::runtime_error("the receiver did not read " + out + " within 30 s");
  }
  sender.Prepare(in);
  kbus::kafka::WorkerConfig config;  // the defaults, for both sides
  config.client.brokers = env.brokers;
  config.group = base;
  if (env.o.fetch_wait_ms > 0) config.fetch_wait_max = std::chrono::milliseconds(env.o.fetch_wait_ms);

  std::unique_ptr<RawHop> raw_hop;
  kbus::HandlerRegistry handlers;
  std::unique_ptr<kbus::kafka::Worker> worker;
  std::thread runner;
  std::function<bool()> ready;
  const auto started = Clock::now();
  if (side == Side::kRaw) {
    raw_hop = std::make_unique<RawHop>(config, in, out);
    ready = [&] { return raw_hop->ready(); };
  } else {
    handlers.Handle<EncodeVideo>(
        [out](const EncodeVideo& v, kbus::Context& ctx) {
          ctx.Send(VideoEncoded{v.id, v.created_at}, {.topic = out});
          return kbus::Ack();
        },
        {.topic = in});
    worker = std::make_unique<kbus::kafka::Worker>(config, handlers);
    runner = std::thread([&] { worker->Run(); });
    ready = [&] { return worker->health().Check().ready; };
  }

  if (WaitFor(ready, 60s, 200us)) {
    r.ready_s = std::chrono::duration<double>(Clock::now() - started).count();
    sender.Send(in, 0);
    if (!WaitFor([&] { return receiver.Has(0); }, 30s, 50us)) g_problems.push_back(where + "command 0 got no reply in 30 s");
    // The rest on a fixed schedule: a late send does not push the later ones back.
    const auto t0 = Clock::now();
    for (std::size_t i = 1; i < r.expected; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(std::llround(static_cast<double>(i - 1) * 1e9 / env.o.rate)));
      sender.Send(in, i);
    }
    sender.Flush();
    WaitFor([&] { return receiver.received() >= r.expected; }, 30s, 1ms);
  } else {
    g_problems.push_back(where + "the hop was not ready after 60 s");
  }
  // Every client of the pass is destroyed before its topics are deleted: on librdkafka 2.0.2,
  // rd_kafka_destroy of a closed consumer whose topic was deleted meanwhile hangs now and then,
  // a broker thread never exiting (seen on the real broker, for the raw hop and the receiver).
  if (raw_hop) {
    raw_hop->Stop();
    if (raw_hop->failures() > 0) g_problems.push_back(where + std::to_string(raw_hop->failures()) + " raw hop failures");
    raw_hop.reset();
  } else {
    worker->Stop();
    runner.join();
    const kbus::kafka::WorkerStats stats = worker->Stats();
    r.commits = static_cast<std::int64_t>(stats.committed);
    if (stats.dead_lettered + stats.retried > 0) {
      g_problems.push_back(where + std::to_string(stats.dead_lettered + stats.retried) + " commands retried or dead-lettered");
    }
    worker.reset();
  }
  receiver.Stop();

  r.received = receiver.received();
  if (r.received < r.expected) {
    g_problems.push_back(where + std::to_string(r.expected - r.received) + " of " + std::to_string(r.expected) +
                         " replies missing");
  }
  if (receiver.duplicates() > 0) g_problems.push_back(where + std::to_string(receiver.duplicates()) + " replies twice");
  if (receiver.foreign() > 0) g_problems.push_back(where + std::to_string(receiver.foreign()) + " unreadable replies");
  if (sender.errors() > 0) g_problems.push_back(where + std::to_string(sender.errors()) + " commands not delivered");
  for (std::size_t i = 0; i < r.expected; ++i) {
    const std::int64_t ns = receiver.LatencyNs(i);
    if (ns < 0) continue;
    const double ms = static_cast<double>(ns) * 1e-6;
    if (i == 0) {
      r.first_ms = ms;
    } else {
      (i <= warm ? r.warmup_ms : r.steady_ms).push_back(ms);
    }
  }
  std::sort(r.warmup_ms.begin(), r.warmup_ms.end());
  std::sort(r.steady_ms.begin(), r.steady_ms.end());
  if (!env.embedded) {
    raw::DeleteTopic(sender.handle(), in);
    raw::DeleteTopic(sender.handle(), out);
  }
  return r;
}

// What one synchronous offset commit costs on this broker, the round trip a Worker waits for
// before a leased batch runs (its lease commit counts the deliveries first): a consumer of a
// fresh group commits one partition's offset `n` times in a row, after one commit that finds the
// coordinator. Sorted, in ms.
std::vector<double> CommitRoundTrips(const Env& env, int n) {
  const std::string topic = "kbus-bench-latency-" + std::to_string(getpid()) + "-commit";
  CreateTopics(env, {topic});
  raw::RdKafkaPtr rk = raw::NewClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", env.brokers},
                                                          {"client.id", "kbus-bench-commit"},
                                                          {"group.id", topic},
                                                          {"enable.auto.commit", "false"}});
  raw::RdListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), 0);
  std::vector<double> ms;
  for (int i = 0; i <= n; ++i) {
    list->elems[0].offset = i;
    const auto t0 = Clock::now();
    const rd_kafka_resp_err_t err = rd_kafka_commit(rk.get(), list.get(), 0);
    const double took = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      g_problems.push_back(std::string("commit probe: ") + rd_kafka_err2str(err));
      break;
    }
    if (i > 0) ms.push_back(took);
  }
  list.reset();
  raw::Close(rk.get());
  rk.reset();
  if (!env.embedded) {
    raw::RdKafkaPtr admin = raw::NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", env.brokers}});
    raw::DeleteTopic(admin.get(), topic);
  }
  std::sort(ms.begin(), ms.end());
  return ms;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int RunLatency(const LatencyOptions& o) {
  kbus::SetLogLevel(kbus::LogLevel::kError);
  g_problems.clear();
  Env env{.o = o, .brokers = o.brokers};
  std::unique_ptr<kbus::kafka::EmbeddedBroker> broker;
  if (o.brokers == "embedded") {
    broker = std::make_unique<kbus::kafka::EmbeddedBroker>();
    env.embedded = broker.get();
    env.brokers = broker->bootstrap();
  }
  const kbus::kafka::WorkerConfig defaults;
  const long long fetch_wait = o.fetch_wait_ms > 0 ? o.fetch_wait_ms : defaults.fetch_wait_max.count();
  std::printf("kbus-bench --latency: one hop (consume -> handle -> produce) on a kbus Worker (b) against a "
              "plain librdkafka loop (a), %s\n", rd_kafka_version_str());
  std::printf("broker      %s (%s)\n", env.embedded ? "embedded: librdkafka's mock cluster, in this process" : "real Kafka",
              env.brokers.c_str());
  std::printf("load        %.0f msg/s, %d partitions; per pass command 0 at ready, then %.1f s warm-up and %.1f s "
              "measured, fresh topics and group\n", o.rate, o.partitions, o.warmup_seconds, o.seconds);
  std::printf("hops        the Worker's defaults on both: fetch.wait.max.ms=%lld, commits every %lld ms, producer "
              "idempotent, acks=all, linger.ms=1\n",
              fetch_wait, static_cast<long long>(defaults.commit_interval.count()));
  const std::vector<double> commit_ms = CommitRoundTrips(env, 50);
  std::printf("commit      one synchronous offset commit (a Worker waits for one before a leased batch runs): "
              "p50 %.2f ms, p99 %.2f ms over %zu\n\n", Percentile(commit_ms, 0.5), Percentile(commit_ms, 0.99),
              commit_ms.size());
  std::printf("%-4s %-7s %8s %9s %20s %8s %8s %8s %13s %8s\n", "pair", "side", "ready s", "first ms",
              "warm-up p50/max ms", "p50 ms", "p99 ms", "max ms", "replies", "commits");

  Sender sender(env.brokers);
  std::vector<double> a_p50, a_p99, a_first, b_p50, b_p99, b_first, d_p50, d_p99;
  double a_max = 0, b_max = 0;
  for (int pair = 1; pair <= o.pairs; ++pair) {
    const Side first = pair % 2 ? Side::kRaw : Side::kKbus;
    PassResult results[2];
    for (Side side : {first, first == Side::kRaw ? Side::kKbus : Side::kRaw}) {
      PassResult p = RunPass(side, env, sender, pair);
      char warmup[32];
      std::snprintf(warmup, sizeof warmup, "%.2f / %.2f", Percentile(p.warmup_ms, 0.5),
                    p.warmup_ms.empty() ? -1 : p.warmup_ms.back());
      const std::string commits = p.commits < 0 ? "-" : std::to_string(p.commits);
      std::printf("%-4d %-7s %8.2f %9.2f %20s %8.2f %8.2f %8.2f %6zu/%-6zu %8s\n", pair, Name(side), p.ready_s,
                  p.first_ms, warmup, Percentile(p.steady_ms, 0.5), Percentile(p.steady_ms, 0.99),
                  p.steady_ms.empty() ? -1 : p.steady_ms.back(), p.received, p.expected, commits.c_str());
      std::fflush(stdout);
      results[side == Side::kRaw ? 0 : 1] = std::move(p);
    }
    const PassResult& a = results[0];
    const PassResult& b = results[1];
    if (a.steady_ms.empty() || b.steady_ms.empty()) continue;
    a_p50.push_back(Percentile(a.steady_ms, 0.5));
    a_p99.push_back(Percentile(a.steady_ms, 0.99));
    b_p50.push_back(Percentile(b.steady_ms, 0.5));
    b_p99.push_back(Percentile(b.steady_ms, 0.99));
    a_first.push_back(a.first_ms);
    b_first.push_back(b.first_ms);
    a_max = std::max(a_max, a.steady_ms.back());
    b_max = std::max(b_max, b.steady_ms.back());
    d_p50.push_back(b_p50.back() - a_p50.back());
    d_p99.push_back(b_p99.back() - a_p99.back());
    std::printf("     b-a  p50 %+.2f ms, p99 %+.2f ms\n", d_p50.back(), d_p99.back());
  }
  if (!d_p50.empty()) {
    std::printf("\nmedian      a: p50 %.2f ms, p99 %.2f ms, first %.2f ms | b: p50 %.2f ms, p99 %.2f ms, first %.2f ms | "
                "max a %.2f ms, b %.2f ms\n",
                Median(a_p50), Median(a_p99), Median(a_first), Median(b_p50), Median(b_p99), Median(b_first), a_max, b_max);
    std::printf("added b-a   p50 %+.2f ms, p99 %+.2f ms (median over %zu pairs)\n", Median(d_p50), Median(d_p99),
                d_p50.size());
    std::printf("RESULT latency a_p50_ms=%.2f a_p99_ms=%.2f a_first_ms=%.2f b_p50_ms=%.2f b_p99_ms=%.2f b_first_ms=%.2f "
                "added_p50_ms=%.2f added_p99_ms=%.2f\n",
                Median(a_p50), Median(a_p99), Median(a_first), Median(b_p50), Median(b_p99), Median(b_first),
                Median(d_p50), Median(d_p99));
  }
  for (const auto& problem : g_problems) std::printf("PROBLEM     %s\n", problem.c_str());
  std::fflush(stdout);
  return g_problems.empty() ? 0 : 1;
}

}  // namespace bench
