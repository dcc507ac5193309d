// kbus-workflow-bench: workflow steps per second against the raw cost of the same records, in
// one process, on the embedded broker.
//
//   kbus-workflow-bench            400 workflows x 50 steps, 3 ABBA pairs
//   kbus-workflow-bench --quick    smoke test: 100 x 10, 1 pair (ctest label "bench")
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
//   (b) kbus: a WorkflowHost on a Worker (16 handler threads, key ordering), exactly as in
//       production (kbus/workflows/kafka.hpp), in a fresh group per run. Each step waits for its
//       state write before its outgoing message leaves, and steps of one workflow run one at a
//       time; different workflows run in parallel.
// Measured from the moment a tenth of the steps were taken to the last output record
// acknowledged, over the other nine tenths: the group join, the state load and the ramp-up of
// the fetchers (about a second on the embedded broker, whatever the run's size) are not
// counted. Runs go a b, b a, ...; the verdict is the
// median per-pair ratio b/a.
//
// Retention: the embedded broker keeps ~5 MiB per partition. The default run writes 20,000
// state records of ~700 B over 8 partitions (about 1.7 MiB each) per run, and each run uses
// fresh state and output topics; the input topic is checked to still start at offset 0.

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
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
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &Tock::id), kbus::Field("n", &Tock::n));
};
template <>
struct kbus::JsonTraits<Counter> {
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("count", &Counter::count), kbus::Field("last", &Counter::last));
};

namespace {

constexpr int kPartitions = 8;
int g_threads = 0;  // 0: what Attach chooses

struct Rd {
  rd_kafka_t* rk = nullptr;
  ~Rd() {
    if (rk) rd_kafka_destroy(rk);
  }
};

rd_kafka_t* NewClient(rd_kafka_type_t type, const std::vector<std::pair<std::string, std::string>>& props) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(k + ": " + err);
    }
  }
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (rk == nullptr) throw std::runtime_error(err);
  return rk;
}

// Sum of the high watermarks of a topic.
std::int64_t HighWatermarks(rd_kafka_t* rk, const std::string& topic, int partitions) {
  std::int64_t sum = 0;
  for (int p = 0; p < partitions; ++p) {
    std::int64_t low = 0, high = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      sum += high;
    }
  }
  return sum;
}

std::int64_t LowWatermarks(rd_kafka_t* rk, const std::string& topic, int partitions) {
  std::int64_t sum = 0;
  for (int p = 0; p < partitions; ++p) {
    std::int64_t low = 0, high = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      sum += low;
    }
  }
  return sum;
}

struct RunResult {
  double seconds = 0;
  double steps_per_s = 0;
  std::uint64_t state_writes = 0;
};

// (a) The raw loop.
RunResult RunRaw(const std::string& bootstrap, const std::string& input, int run, std::int64_t steps,
                 std::size_t state_bytes) {
  const std::string state = "bench.raw.state." + std::to_string(run);
  const std::string out = "bench.raw.out." + std::to_string(run);
  Rd consumer, producer;
  consumer.rk = NewClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap},
                                              {"group.id", "bench-raw-" + std::to_string(run)},
                                              {"auto.offset.reset", "earliest"},
                                              {"enable.auto.commit", "true"},
                                              {"enable.auto.offset.store", "false"},
                                              {"auto.commit.interval.ms", "500"},
                                              {"fetch.wait.max.ms", "10"},
                                              {"session.timeout.ms", "6000"},
                                              {"heartbeat.interval.ms", "1200"}});
  producer.rk = NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap},
                                              {"enable.idempotence", "true"},
                                              {"acks", "all"},
                                              {"linger.ms", "5"},
                                              {"partitioner", "murmur2_random"}});
  rd_kafka_poll_set_consumer(consumer.rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, input.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer.rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);

  const std::string value(state_bytes, 's');
  const std::string tock = R"({"id":"x","n":1})";
  std::int64_t seen = 0;
  Clock::time_point first{};
  while (seen < steps) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.rk, 100);
    rd_kafka_poll(producer.rk, 0);
    if (m == nullptr) continue;
    if (m->err) {
      rd_kafka_message_destroy(m);
      continue;
    }
    if (seen == steps / 10) first = Clock::now();
    for (;;) {
      rd_kafka_resp_err_t e1 = rd_kafka_producev(
          producer.rk, RD_KAFKA_V_TOPIC(state.c_str()), RD_KAFKA_V_PARTITION(m->partition),
          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (e1 == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer.rk, 10);
        continue;
      }
      rd_kafka_producev(producer.rk, RD_KAFKA_V_TOPIC(out.c_str()), RD_KAFKA_V_KEY(m->key, m->key_len),
                        RD_KAFKA_V_VALUE(const_cast<char*>(tock.data()), tock.size()),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      break;
    }
    rd_kafka_topic_partition_list_t* offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, rd_kafka_topic_name(m->rkt), m->partition)->offset = m->offset + 1;
    rd_kafka_offsets_store(consumer.rk, offs);
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_message_destroy(m);
    ++seen;
  }
  rd_kafka_flush(producer.rk, 60000);
  const double s = std::chrono::duration<double>(Clock::now() - first).count();
  rd_kafka_consumer_close(consumer.rk);
  return {s, static_cast<double>(steps - steps / 10) / s, static_cast<std::uint64_t>(steps)};
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
                       ctx.Send(Tock{t.id, t.n}, {.topic = out});
                     });
  return wf;
}

// (b) The workflow host.
RunResult RunKbus(const std::string& bootstrap, const std::string& input, int run, std::int64_t steps,
                  std::size_t* state_bytes) {
  const std::string name = "bench.wf." + std::to_string(run);
  const std::string out = "bench.wf.out." + std::to_string(run);
  kbus::kafka::WorkerConfig config;
  config.client.brokers = bootstrap;
  config.group = "bench-wf-" + std::to_string(run);
  config.session_timeout = 6s;
  config.fetch_wait_max = 10ms;
  if (g_threads > 0) config.handler_threads = g_threads;
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
  Rd admin;
  admin.rk = NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap}});

  std::thread runner([&] { worker.Run(); });
  while (host.Stats().handled < static_cast<std::uint64_t>(steps / 10)) std::this_thread::sleep_for(200us);
  const auto first = Clock::now();
  while (HighWatermarks(admin.rk, out, 4) < steps) std::this_thread::sleep_for(2ms);
  const double s = std::chrono::duration<double>(Clock::now() - first).count();
  const auto stats = host.Stats();
  if (auto one = host.Instance("wf-0")) {
    // The size of one state record as kbus writes it, for the raw loop's records.
    *state_bytes = one->state_json.size() + 600;
  }
  worker.Stop();
  runner.join();
  host.Stop();
  if (stats.handled < static_cast<std::uint64_t>(steps)) {
    throw std::runtime_error("kbus handled " + std::to_string(stats.handled) + " of " + std::to_string(steps));
  }
  return {s, static_cast<double>(steps - steps / 10) / s, stats.state_writes};
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int workflows = 400, steps_each = 50, pairs = 3;
  bool quick = false;
  po::options_description desc("kbus-workflow-bench: workflow steps per second against raw produce+commit");
  desc.add_options()("help,h", "this help")("workflows", po::value(&workflows)->default_value(400), "instances")(
      "steps", po::value(&steps_each)->default_value(50), "messages per instance")(
      "pairs", po::value(&pairs)->default_value(3), "ABBA pairs")(
      "threads", po::value(&g_threads)->default_value(0), "the workflow worker's handler threads (0: Attach's)")("quick", po::bool_switch(&quick), "smoke test");
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
  kbus::kafka::EmbeddedBroker broker;
  const std::string input = "bench.wf.in";
  if (!broker.CreateTopic(input, kPartitions).ok()) return 1;
  for (int run = 0; run < 2 * pairs; ++run) {
    (void)broker.CreateTopic("bench.wf." + std::to_string(run) + ".state", kPartitions);
    (void)broker.CreateTopic("bench.raw.state." + std::to_string(run), kPartitions);
    (void)broker.CreateTopic("bench.wf.out." + std::to_string(run), 4);
    (void)broker.CreateTopic("bench.raw.out." + std::to_string(run), 4);
  }
  const std::int64_t steps = static_cast<std::int64_t>(workflows) * steps_each;
  {
    kbus::kafka::ProducerConfig pc;
    pc.client.brokers = broker.bootstrap();
    kbus::kafka::Producer producer(pc);
    for (int n = 0; n < steps_each; ++n) {
      for (int w = 0; w < workflows; ++w) {
        const std::string id = "wf-" + std::to_string(w);
        if (!producer.Produce(kbus::BuildRecord(Tick{id, n}, {.topic = input, .key = id})).ok()) return 1;
      }
    }
    if (!producer.Flush(60s).ok()) return 1;
  }
  Rd probe;
  probe.rk = NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", broker.bootstrap()}});
  if (LowWatermarks(probe.rk, input, kPartitions) != 0) {
    std::cerr << "the embedded broker dropped input records: make the run smaller\n";
    return 1;
  }

  std::printf("%d workflows x %d steps = %lld steps per run, %d partitions, embedded broker\n", workflows, steps_each,
              static_cast<long long>(steps), kPartitions);
  std::printf("pair side   seconds     steps/s   state writes/step\n");
  std::size_t state_bytes = 700;
  std::vector<double> ratios;
  int run = 0;
  for (int pair = 1; pair <= pairs; ++pair) {
    RunResult a, b;
    const bool a_first = pair % 2 == 1;
    for (int side = 0; side < 2; ++side) {
      const bool raw = (side == 0) == a_first;
      RunResult r = raw ? RunRaw(broker.bootstrap(), input, run, steps, state_bytes)
                        : RunKbus(broker.bootstrap(), input, run, steps, &state_bytes);
      ++run;
      (raw ? a : b) = r;
      std::printf("%-4d %-5s %8.3f %11.0f %10.2f\n", pair, raw ? "a raw" : "b kbus", r.seconds, r.steps_per_s,
                  static_cast<double>(r.state_writes) / static_cast<double>(steps));
    }
    ratios.push_back(b.steps_per_s / a.steps_per_s);
    std::printf("     b/a = %.3f\n", ratios.back());
  }
  std::sort(ratios.begin(), ratios.end());
  const double median = ratios[ratios.size() / 2];
  std::printf("RESULT workflow steps b/a median=%.3f\n", median);
  return 0;
}
