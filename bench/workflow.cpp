// kbus-workflow-bench: workflow steps per second against the raw cost of the same records, in
// one process, on the embedded broker.
//
//   kbus-workflow-bench            400 workflows x 50 steps, 3 ABBA pairs
//   kbus-workflow-bench --quick    smoke test: 100 x 10, 1 pair (ctest label "bench")
//   kbus-workflow-bench --brokers HOST:PORT   the same against a real Kafka cluster (its topics
//                                  are created with a unique prefix, the state topics compacted)
//
// A step is one message through a trivial workflow (a counter): message in -> handler ->
// state record written and acknowledged -> one outgoing message sent and acknowledged -> input
// offset committed. The input is filled once, keyed by workflow id, in the workflow's input
// topic (8 partitions), so no step is re-keyed.
//   (a) raw: one librdkafka consumer (a fresh group per run) and one producer. For each record:
//       produce a state record of the size kbus writes to the same partition number of the state
//       topic, produce one output record, store the input offset; auto-commit every 500 ms. The
//       producer pipelines freely (nothing waits for an acknowledgement until the final flush),
//       so this is the floor: the records kbus writes, with none of its ordering.
//   (a2) raw, with kbus's ordering done by hand: 16 threads, a record to the thread of its key,
//       each waiting for the state record's acknowledgement before it produces the output record
//       (RunRawOrdered). This is what the guarantee costs without kbus.
//   (b) kbus: a WorkflowHost on a Worker (16 handler threads, key ordering), exactly as in
//       production (kbus/workflows/kafka.hpp), in a fresh group per run. Each step waits for its
//       state write before its outgoing message leaves, and steps of one workflow run one at a
//       time; different workflows run in parallel.
// The raw loops' clients come from raw_client.hpp: the librdkafka properties a Worker and a
// kbus::kafka::Producer with the same settings get, so the loops differ from kbus in code only.
// Measured from the moment a tenth of the steps were taken to the last output record
// acknowledged, over the other nine tenths: the group join, the state load and the fetchers'
// ramp-up are not counted, and the raw producers are warmed up first (a fresh idempotent
// producer takes most of a second to get going). Runs go a a2 b, then b a2 a, ...; the verdicts
// are the median per-pair ratios b/a and b/a2. At --quick sizes they mean nothing.
//
// Retention: the embedded broker keeps ~5 MiB per partition. A default run writes 20,000 state
// records of ~2 KiB into its own fresh state topic of 8 partitions, about 5 MiB each: the broker
// may drop a run's oldest state records, which nothing reads back. The input topic (about
// 0.6 MiB per partition) is checked to still start at offset 0.

#include <librdkafka/rdkafka.h>
#include <sys/resource.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>

#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/state_topic.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/log.hpp"
#include "kbus/workflows/host.hpp"
#include "kbus/workflows/kafka.hpp"
#include "bench_topics.hpp"
#include "process_stats.hpp"
#include "raw_client.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Tick {
  std::string id;
  int n = 0;
};
struct Tock {
  std::string id;
  int n = 0;
  std::int64_t t0_us = 0;  // when its step began (system clock, µs): for the step latency
};
struct Counter {
  int count = 0;
  int last = -1;
};

}  // namespace

template <>
struct kbus::MessageTraits<Tick> {
  static constexpr std::string_view kType = "bench.Tick";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "bench.wf.in";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Tick::id), kbus::Field("n", &Tick::n));
};
template <>
struct kbus::MessageTraits<Tock> {
  static constexpr std::string_view kType = "bench.Tock";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "bench.tocks";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Tock::id), kbus::Field("n", &Tock::n),
                                             kbus::Field("t0_us", &Tock::t0_us));
};
template <>
struct kbus::JsonTraits<Counter> {
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("count", &Counter::count), kbus::Field("last", &Counter::last));
};

namespace {

constexpr int kPartitions = 8;
int g_threads = 0;  // 0: what Attach chooses
int g_linger_ms = -1;  // the worker's producer linger; -1: what Attach chooses
// Every topic and group name starts with it: "bench" on the embedded broker, made unique on a
// real cluster so that runs do not meet each other's records.
std::string g_prefix = "bench";

namespace raw = bench::raw;
using raw::RdKafkaPtr;
using raw::RdMessagePtr;

// Sums of the low and of the high watermarks of a topic's partitions; a partition that does not
// answer counts 0 (the caller asks again).
std::pair<std::int64_t, std::int64_t> Watermarks(rd_kafka_t* rk, const std::string& topic, int partitions) {
  std::int64_t lows = 0, highs = 0;
  for (int p = 0; p < partitions; ++p) {
    try {
      const auto [low, high] = raw::Watermarks(rk, topic, p);
      lows += low;
      highs += high;
    } catch (const std::runtime_error&) {
    }
  }
  return {lows, highs};
}

struct RunResult {
  double seconds = 0;
  double steps_per_s = 0;
  std::uint64_t state_writes = 0;
  double cpu_us_per_step = 0;  // the whole process's CPU (the embedded broker's included)
  double p50_ms = -1, p99_ms = -1;  // step latency; -1 where not measured
};

std::int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// CPU time the process used so far (user + system), seconds.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The step latency of the output records of a run, read back once it is over: from the moment a
// step began (the output's t0_us) to the moment its output was produced (the record's
// CreateTime, set when the producer takes it, so after the state record was acknowledged), for
// steps begun at or after `since_us`. Millisecond resolution: the broker's timestamps are ms.
void ReadLatencies(const std::string& bootstrap, const std::string& out, std::int64_t since_us, RunResult& r) {
  RdKafkaPtr probe = raw::NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap}});
  const std::int64_t total = Watermarks(probe.get(), out, 4).second;
  RdKafkaPtr consumer = raw::NewClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap},
                                                            {"group.id", g_prefix + "-latency"},
                                                            {"enable.auto.commit", "false"}});
  raw::Assign(consumer.get(), out, 4, RD_KAFKA_OFFSET_BEGINNING);
  std::vector<double> ms;
  const auto deadline = Clock::now() + 60s;
  for (std::int64_t seen = 0; seen < total && Clock::now() < deadline;) {
    RdMessagePtr m(rd_kafka_consumer_poll(consumer.get(), 100));
    if (!m || m->err) continue;
    ++seen;
    const std::string_view v(static_cast<const char*>(m->payload), m->len);
    const auto at = v.find("\"t0_us\":");
    if (at == std::string_view::npos) continue;
    const std::int64_t t0 = std::strtoll(v.data() + at + 8, nullptr, 10);
    if (t0 < since_us) continue;
    const std::int64_t produced_us = rd_kafka_message_timestamp(m.get(), nullptr) * 1000;
    ms.push_back(static_cast<double>(std::max<std::int64_t>(0, produced_us - t0)) / 1000.0);
  }
  rd_kafka_consumer_close(consumer.get());
  std::sort(ms.begin(), ms.end());
  r.p50_ms = bench::SortedPercentile(ms, 0.5);
  r.p99_ms = bench::SortedPercentile(ms, 0.99);
}

// The raw loops' consumer: what a Worker with these settings gets (a fresh group, 10 ms fetch
// waits, a 6 s session), offsets stored by the loop and auto-committed every 500 ms.
RdKafkaPtr RawConsumer(const std::string& bootstrap, const std::string& group) {
  kbus::kafka::WorkerConfig config;
  config.client.brokers = bootstrap;
  config.group = group;
  config.fetch_wait_max = 10ms;
  config.session_timeout = 6s;
  config.commit_interval = 500ms;
  raw::RdConfPtr conf = raw::ConsumerConf(config);
  return raw::NewClient(RD_KAFKA_CONSUMER, conf);
}

// The raw loops' producer: what a kbus::kafka::Producer gets (idempotent, acks=all,
// murmur2_random) with this linger.
raw::RdConfPtr RawProducerConf(const std::string& bootstrap, std::chrono::milliseconds linger) {
  kbus::kafka::ProducerConfig config;
  config.client.brokers = bootstrap;
  config.linger = linger;
  return raw::ProducerConf(config);
}

// Warms up a producer (metadata, idempotence id) as kbus's are by the time a tenth of the steps
// were taken.
void WarmUp(rd_kafka_t* producer, const std::vector<std::string>& topics) {
  for (const std::string& t : topics) raw::Produce(producer, t.c_str(), 0, {}, "warm-up");
  raw::Flush(producer, 10s);
}

// (a) The raw loop.
RunResult RunRaw(const std::string& bootstrap, const std::string& input, int run, std::int64_t steps,
                 std::size_t state_bytes) {
  const std::string state = g_prefix + ".raw.state." + std::to_string(run);
  const std::string out = g_prefix + ".raw.out." + std::to_string(run);
  RdKafkaPtr consumer = RawConsumer(bootstrap, g_prefix + "-raw-" + std::to_string(run));
  raw::RdConfPtr conf = RawProducerConf(bootstrap, 5ms);
  RdKafkaPtr producer = raw::NewClient(RD_KAFKA_PRODUCER, conf);
  WarmUp(producer.get(), {state, out});
  raw::Subscribe(consumer.get(), input);
  raw::OffsetStore store;

  const std::string value(state_bytes, 's');
  const std::string tock = R"({"id":"x","n":1,"t0_us":1767225600000000})";  // the size of kbus's
  std::int64_t seen = 0;
  Clock::time_point first{};
  double cpu0 = 0;
  while (seen < steps) {
    RdMessagePtr m(rd_kafka_consumer_poll(consumer.get(), 100));
    rd_kafka_poll(producer.get(), 0);
    if (!m || m->err) continue;
    if (seen == steps / 10) {
      first = Clock::now();
      cpu0 = CpuSeconds();
    }
    const std::string_view key(static_cast<const char*>(m->key), m->key_len);
    raw::Produce(producer.get(), state.c_str(), m->partition, key, value);
    raw::Produce(producer.get(), out.c_str(), RD_KAFKA_PARTITION_UA, key, tock);
    if (store.Done(consumer.get(), m.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("raw loop: offset store failed");
    }
    ++seen;
  }
  raw::Flush(producer.get(), 60s);
  const double s = std::chrono::duration<double>(Clock::now() - first).count();
  const double cpu = CpuSeconds() - cpu0;
  store.Clear();
  raw::Close(consumer.get());
  const auto measured = static_cast<double>(steps - steps / 10);
  return {s, measured / s, static_cast<std::uint64_t>(steps), cpu * 1e6 / measured};
}

// (a2) The same records with kbus's ordering, by hand: 16 threads (as many as the host's
// handler threads), each record given to the thread of its key (one step per key at a time);
// a thread produces the state record and waits for its acknowledgement, then produces the
// output record. Offsets are stored as records are taken and auto-committed, which is looser
// than kbus (it commits only finished records).
RunResult RunRawOrdered(const std::string& bootstrap, const std::string& input, int run, std::int64_t steps,
                        std::size_t state_bytes) {
  constexpr int kThreads = 16;
  const std::string state = g_prefix + ".raw.state." + std::to_string(run);
  const std::string out = g_prefix + ".raw.out." + std::to_string(run);
  RdKafkaPtr consumer = RawConsumer(bootstrap, g_prefix + "-raw2-" + std::to_string(run));
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  raw::RdConfPtr conf = RawProducerConf(bootstrap, 0ms);
  // Served on the poller thread below (rd_kafka_poll), never on librdkafka's own.
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void*) noexcept {
    if (auto* w = static_cast<Waiter*>(m->_private)) {
      std::lock_guard lock(w->mu);
      w->done = true;
      w->cv.notify_all();
    }
  });
  RdKafkaPtr producer = raw::NewClient(RD_KAFKA_PRODUCER, conf);
  WarmUp(producer.get(), {state, out});
  std::atomic<bool> stop{false};
  std::thread poller([&] {
    while (!stop) rd_kafka_poll(producer.get(), 10);
  });
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<RdMessagePtr> items;
  };
  std::vector<Queue> queues(kThreads);
  std::atomic<std::int64_t> finished{0};
  const std::string value(state_bytes, 's');
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] {
      for (;;) {
        RdMessagePtr m;
        {
          std::unique_lock lock(queues[i].mu);
          queues[i].cv.wait(lock, [&] { return stop || !queues[i].items.empty(); });
          if (queues[i].items.empty()) return;
          m = std::move(queues[i].items.front());
          queues[i].items.pop_front();
        }
        Waiter w;
        const std::int64_t t0 = NowUs();
        const std::string_view key(static_cast<const char*>(m->key), m->key_len);
        raw::Produce(producer.get(), state.c_str(), m->partition, key, value, {}, &w);
        {
          std::unique_lock lock(w.mu);
          w.cv.wait(lock, [&] { return w.done; });
        }
        raw::Produce(producer.get(), out.c_str(), RD_KAFKA_PARTITION_UA, key,
                     R"({"id":"x","n":1,"t0_us":)" + std::to_string(t0) + "}");
        m.reset();
        ++finished;
      }
    });
  }
  raw::Subscribe(consumer.get(), input);
  raw::OffsetStore store;  // the reader thread's
  std::thread reader([&] {
    for (std::int64_t seen = 0; seen < steps;) {
      RdMessagePtr m(rd_kafka_consumer_poll(consumer.get(), 100));
      if (!m || m->err) continue;
      if (store.Done(consumer.get(), m.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::fprintf(stderr, "warning: raw ordered loop: offset store failed\n");
      }
      const std::size_t q =
          std::hash<std::string_view>{}(std::string_view(static_cast<const char*>(m->key), m->key_len)) % kThreads;
      {
        std::lock_guard lock(queues[q].mu);
        queues[q].items.push_back(std::move(m));
      }
      queues[q].cv.notify_one();
      ++seen;
    }
  });
  Clock::time_point first{};
  while (finished.load() < steps / 10) std::this_thread::sleep_for(100us);
  first = Clock::now();
  const std::int64_t first_us = NowUs();
  const double cpu0 = CpuSeconds();
  while (finished.load() < steps) std::this_thread::sleep_for(100us);
  raw::Flush(producer.get(), 60s);
  const double s = std::chrono::duration<double>(Clock::now() - first).count();
  const double cpu = CpuSeconds() - cpu0;
  reader.join();
  stop = true;
  for (auto& q : queues) q.cv.notify_all();
  for (auto& t : workers) t.join();
  poller.join();
  store.Clear();
  raw::Close(consumer.get());
  const auto measured = static_cast<double>(steps - steps / 10);
  RunResult r{s, measured / s, static_cast<std::uint64_t>(steps), cpu * 1e6 / measured};
  ReadLatencies(bootstrap, out, first_us, r);
  return r;
}

kbus::workflows::Workflow<Counter> CounterWorkflow(const std::string& name, const std::string& input,
                                                   const std::string& out) {
  kbus::workflows::WorkflowOptions options;
  options.input_topic = input;
  options.state_topic = name + ".state";
  kbus::workflows::Workflow<Counter> wf(name, options);
  wf.StartedBy<Tick>([](const Tick& t) { return t.id; },
                     [out](const Tick& t, Counter& c, kbus::workflows::WorkflowContext& ctx) {
                       ++c.count;
                       c.last = t.n;
                       ctx.Send(Tock{t.id, t.n, NowUs()}, {.topic = out});
                     });
  return wf;
}

// (b) The workflow host.
RunResult RunKbus(const std::string& bootstrap, const std::string& input, int run, std::int64_t steps,
                  std::size_t* state_bytes) {
  const std::string name = g_prefix + ".wf." + std::to_string(run);
  const std::string out = g_prefix + ".wf.out." + std::to_string(run);
  kbus::kafka::WorkerConfig config;
  config.client.brokers = bootstrap;
  config.group = g_prefix + "-wf-" + std::to_string(run);
  config.session_timeout = 6s;
  config.fetch_wait_max = 10ms;
  if (g_threads > 0) config.handler_threads = g_threads;
  if (g_linger_ms >= 0) config.producer_linger = std::chrono::milliseconds(g_linger_ms);
  auto workflow = CounterWorkflow(name, input, out);
  kbus::kafka::StateTopic state(config.client, workflow.options().state_topic);
  kbus::workflows::KafkaStateStore store(state);
  kbus::kafka::ProducerConfig pc;
  pc.client = config.client;
  kbus::kafka::Producer producer(pc);
  kbus::workflows::HostConfig hc;
  hc.group = config.group;
  hc.send = kbus::workflows::SendWith(producer);
  kbus::workflows::WorkflowHost host(workflow, hc, store);
  kbus::HandlerRegistry handlers;
  host.Register(handlers);
  kbus::workflows::Attach(host, config);
  kbus::kafka::Worker worker(config, handlers);
  RdKafkaPtr admin = raw::NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap}});

  std::thread runner([&] { worker.Run(); });
  while (host.Stats().handled < static_cast<std::uint64_t>(steps / 10)) std::this_thread::sleep_for(200us);
  const auto first = Clock::now();
  const std::int64_t first_us = NowUs();
  const double cpu0 = CpuSeconds();
  while (Watermarks(admin.get(), out, 4).second < steps) std::this_thread::sleep_for(2ms);
  const double s = std::chrono::duration<double>(Clock::now() - first).count();
  const double cpu = CpuSeconds() - cpu0;
  const auto stats = host.Stats();
  // The mean size of the state records kbus wrote, for the raw loop's records.
  if (stats.state_writes > 0) *state_bytes = stats.state_bytes / stats.state_writes;
  worker.Stop();
  runner.join();
  host.Stop();
  if (stats.handled < static_cast<std::uint64_t>(steps)) {
    throw std::runtime_error("kbus handled " + std::to_string(stats.handled) + " of " + std::to_string(steps));
  }
  const auto measured = static_cast<double>(steps - steps / 10);
  RunResult r{s, measured / s, stats.state_writes, cpu * 1e6 / measured};
  ReadLatencies(bootstrap, out, first_us, r);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int workflows = 400, steps_each = 50, pairs = 3;
  bool quick = false;
  std::string brokers;
  po::options_description desc("kbus-workflow-bench: workflow steps per second against raw produce+commit");
  desc.add_options()("help,h", "this help")("workflows", po::value(&workflows)->default_value(400), "instances")(
      "steps", po::value(&steps_each)->default_value(50), "messages per instance")(
      "pairs", po::value(&pairs)->default_value(3), "ABBA pairs")(
      "threads", po::value(&g_threads)->default_value(0), "the workflow worker's handler threads (0: Attach's)")(
      "brokers", po::value(&brokers), "a real Kafka cluster instead of the embedded broker")(
      "linger-ms", po::value(&g_linger_ms)->default_value(-1), "the workflow worker's producer linger (-1: Attach's)")(
      "quick", po::bool_switch(&quick), "smoke test");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "kbus-workflow-bench: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (quick) {
    workflows = 100;
    steps_each = 10;
    pairs = 1;
  }
  if (workflows < 1 || steps_each < 1 || pairs < 1) {
    std::cerr << "kbus-workflow-bench: --workflows, --steps and --pairs must be at least 1\n";
    return 2;
  }
  kbus::SetLogLevel(kbus::LogLevel::kError);
  std::unique_ptr<kbus::kafka::EmbeddedBroker> embedded;
  if (brokers.empty()) {
    embedded = std::make_unique<kbus::kafka::EmbeddedBroker>();
    brokers = embedded->bootstrap();
  } else {
    g_prefix = "bench-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000007);
  }
  const std::string input = g_prefix + ".wf.in";
  try {
    bench::CreateBenchTopic(embedded.get(), brokers, input, kPartitions, false);
    for (int run = 0; run < 3 * pairs; ++run) {
      const std::string n = std::to_string(run);
      bench::CreateBenchTopic(embedded.get(), brokers, g_prefix + ".wf." + n + ".state", kPartitions, true);
      bench::CreateBenchTopic(embedded.get(), brokers, g_prefix + ".raw.state." + n, kPartitions, true);
      bench::CreateBenchTopic(embedded.get(), brokers, g_prefix + ".wf.out." + n, 4, false);
      bench::CreateBenchTopic(embedded.get(), brokers, g_prefix + ".raw.out." + n, 4, false);
    }
  } catch (const std::exception& e) {
    std::cerr << "kbus-workflow-bench: " << e.what() << "\n";
    return 1;
  }
  const std::int64_t steps = static_cast<std::int64_t>(workflows) * steps_each;
  {
    kbus::kafka::ProducerConfig pc;
    pc.client.brokers = brokers;
    kbus::kafka::Producer producer(pc);
    for (int n = 0; n < steps_each; ++n) {
      for (int w = 0; w < workflows; ++w) {
        const std::string id = "wf-" + std::to_string(w);
        if (!producer.Produce(kbus::BuildRecord(Tick{id, n}, {.topic = input, .key = id})).ok()) return 1;
      }
    }
    if (!producer.Flush(60s).ok()) return 1;
  }
  RdKafkaPtr probe = raw::NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", brokers}});
  if (Watermarks(probe.get(), input, kPartitions).first != 0) {
    std::cerr << "the embedded broker dropped input records: make the run smaller\n";
    return 1;
  }

  std::printf("%d workflows x %d steps = %lld steps per run, %d partitions, %s\n", workflows, steps_each,
              static_cast<long long>(steps), kPartitions, embedded ? "embedded broker" : brokers.c_str());
  std::printf("pair side     seconds     steps/s  state writes/step  state bytes  CPU us/step  step p50 ms  p99 ms\n");
  std::size_t state_bytes = 2048;  // then the mean kbus wrote
  std::vector<double> ratios, ordered_ratios, b_p99;
  int run = 0;
  for (int pair = 1; pair <= pairs; ++pair) {
    RunResult a, a2, b;
    // a a2 b, then b a2 a, ...: a drift of the machine's speed hits all sides alike.
    const std::vector<char> order = pair % 2 == 1 ? std::vector<char>{'a', 'o', 'b'} : std::vector<char>{'b', 'o', 'a'};
    for (char side : order) {
      RunResult r = side == 'a'   ? RunRaw(brokers, input, run, steps, state_bytes)
                    : side == 'o' ? RunRawOrdered(brokers, input, run, steps, state_bytes)
                                  : RunKbus(brokers, input, run, steps, &state_bytes);
      ++run;
      (side == 'a' ? a : side == 'o' ? a2 : b) = r;
      std::printf("%-4d %-7s %8.3f %11.0f %18.2f %12zu %12.1f", pair,
                  side == 'a' ? "a raw" : side == 'o' ? "a2 raw" : "b kbus", r.seconds, r.steps_per_s,
                  static_cast<double>(r.state_writes) / static_cast<double>(steps), state_bytes, r.cpu_us_per_step);
      if (r.p50_ms >= 0) {
        std::printf(" %12.1f %7.1f\n", r.p50_ms, r.p99_ms);
      } else {
        std::printf(" %12s %7s\n", "-", "-");
      }
      if (side == 'b') b_p99.push_back(r.p99_ms);
    }
    ratios.push_back(b.steps_per_s / a.steps_per_s);
    ordered_ratios.push_back(b.steps_per_s / a2.steps_per_s);
    std::printf("     b/a = %.3f   b/a2 = %.3f\n", ratios.back(), ordered_ratios.back());
  }
  std::sort(ratios.begin(), ratios.end());
  std::sort(ordered_ratios.begin(), ordered_ratios.end());
  std::sort(b_p99.begin(), b_p99.end());
  std::printf("RESULT workflow steps b/a median=%.3f b/a2 median=%.3f step p99 median=%.1f ms\n",
              ratios[ratios.size() / 2], ordered_ratios[ordered_ratios.size() / 2], b_p99[b_p99.size() / 2]);
  return 0;
}
