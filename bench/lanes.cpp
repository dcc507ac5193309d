// kbus-bench --lanes: an urgent lane's latency behind a backlog of bulk commands, and what the
// urgent traffic costs bulk, on one Worker, in one process, on one broker.
//
//   kbus-bench --lanes                        embedded broker, 50,000 bulk commands, 20 urgent/s,
//                                             1 ms of work per command, 3 pairs
//   kbus-bench --lanes --brokers HOST:PORT    the same against a real Kafka cluster
//   kbus-bench --lanes --urgent-rate 100 --work-ms 2 --lanes-pairs 5
//
// One pass: fresh topics, a bulk lane (--bulk-partitions, weight 1) and an urgent lane (one
// partition, --weight), read by one command type (HandlerOptions::lanes), and a fresh group.
// The bulk topic is filled with --backlog commands before the Worker starts (small records:
// the embedded broker keeps about 5 MiB per partition). Each handler sleeps --work-ms (work
// that waits, as the launcher's does; it holds a handler thread, not a core). The Worker has its
// defaults (8 handler threads) but for --fetch-wait-ms.
// The measurement starts once 10 % of the backlog is handled (the worker is busy with bulk: its
// pool's queue and its partitions' buffers are full) and ends at 90 %, so the backlog never
// runs out inside it. Meanwhile:
//   base    nothing else is sent: bulk's throughput alone;
//   lanes   the sender sends urgent commands to the urgent lane at --urgent-rate, on a fixed
//           schedule (its producer lingers 0 ms). An urgent command's latency is from just
//           before Produce to its handler's start, both on this process's steady clock.
// bulk msg/s is the handled bulk commands over the window. Passes go base lanes, lanes base, ...
// and the ratio lanes/base is the median of the pairs' ratios. An urgent command costs a thread
// --work-ms like a bulk one, so the ratio cannot exceed 1 - urgent_rate / (threads / work): with
// the defaults 1 - 20 / 8,000 = 0.9975.
//
// The program exits 1 when an urgent command never runs or a pass fails; never on the figures.

#include "lanes.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/log.hpp"
#include "kbus/message.hpp"
#include "raw_client.hpp"

namespace bench {

struct LaneJob {
  std::int64_t id = 0;
  std::string tenant;
};

}  // namespace bench

template <>
struct kbus::MessageTraits<bench::LaneJob> {
  static constexpr std::string_view kType = "bench.LaneJob";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "bench.lanes";  // each pass reads its own lanes
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("id", &bench::LaneJob::id), kbus::Field("tenant", &bench::LaneJob::tenant));
};

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::int64_t kUrgentBase = std::int64_t{1} << 40;  // urgent commands' ids start here

struct Env {
  LanesOptions o;
  std::string brokers;
  kbus::kafka::EmbeddedBroker* embedded = nullptr;  // null: a real broker
};

struct PassResult {
  double bulk_per_s = 0;
  std::vector<double> urgent_ms;  // sorted
  bool ok = true;
};

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return -1;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void CreateTopic(const Env& env, const std::string& name, int partitions) {
  kbus::Status s = env.embedded ? env.embedded->CreateTopic(name, partitions)
                                : kbus::kafka::CreateTopics(kbus::kafka::ClientConfig{.brokers = env.brokers},
                                                            {{.name = name, .partitions = partitions}});
  if (!s.ok()) throw std::runtime_error("cannot create " + name + ": " + s.error().ToString());
}

bool WaitUntil(const std::function<bool()>& done, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

PassResult RunPass(const Env& env, bool urgent, int pair) {
  const LanesOptions& o = env.o;
  const std::string base = "kbus-bench-lanes-" + std::to_string(getpid()) + "-" + std::to_string(pair) +
                           (urgent ? "l" : "b");
  const std::string bulk_topic = base + "-bulk", urgent_topic = base + "-urgent";
  CreateTopic(env, bulk_topic, o.bulk_partitions);
  CreateTopic(env, urgent_topic, 1);
  PassResult r;

  kbus::kafka::ProducerConfig pc;
  pc.client.brokers = env.brokers;
  {
    kbus::kafka::Producer filler(pc);
    for (int i = 0; i < o.backlog; ++i) {
      kbus::OutgoingRecord rec =
          kbus::BuildRecord(LaneJob{i, "bulk"}, {.topic = bulk_topic, .key = std::to_string(i)});
      rec.partition = i % o.bulk_partitions;
      if (!filler.Produce(rec).ok()) throw std::runtime_error("cannot fill the bulk lane");
    }
    if (!filler.Flush(120s).ok()) throw std::runtime_error("cannot fill the bulk lane: flush timed out");
  }

  const int slots = 1 << 20;
  std::vector<std::atomic<std::int64_t>> sent_ns(static_cast<std::size_t>(slots));
  std::vector<std::atomic<std::int64_t>> started_ns(static_cast<std::size_t>(slots));
  std::atomic<int> bulk_handled{0};
  const auto work = std::chrono::duration<double, std::milli>(o.work_ms);
  kbus::HandlerRegistry handlers;
  handlers.Handle<LaneJob>(
      [&](const LaneJob& job, kbus::Context&) {
        if (job.id >= kUrgentBase) {
          const auto n = static_cast<std::size_t>(job.id - kUrgentBase) % static_cast<std::size_t>(slots);
          started_ns[n].store(Clock::now().time_since_epoch().count());
        }
        if (o.work_ms > 0) std::this_thread::sleep_for(work);
        if (job.id < kUrgentBase) bulk_handled.fetch_add(1);
      },
      {.lanes = {{urgent_topic, o.weight}, {bulk_topic, 1}}});

  kbus::kafka::WorkerConfig wc;
  wc.client.brokers = env.brokers;
  wc.group = base + "-group";
  if (o.fetch_wait_ms > 0) wc.fetch_wait_max = std::chrono::milliseconds(o.fetch_wait_ms);
  auto worker = std::make_unique<kbus::kafka::Worker>(wc, handlers);
  std::thread runner([&] { worker->Run(); });

  const int from = o.backlog / 10, to = o.backlog - o.backlog / 10;
  int urgent_sent = 0;
  double seconds = 0;
  if (!WaitUntil([&] { return bulk_handled.load() >= from; }, 120s)) {
    std::printf("PROBLEM     pair %d: bulk never reached %d handled\n", pair, from);
    r.ok = false;
  } else {
    pc.linger = 0ms;
    kbus::kafka::Producer sender(pc);
    const auto t0 = Clock::now();
    const int b0 = bulk_handled.load();
    const auto period = std::chrono::duration<double>(1.0 / o.urgent_rate);
    while (bulk_handled.load() < to) {
      if (!urgent || o.urgent_rate <= 0) {
        std::this_thread::sleep_for(1ms);
        continue;
      }
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(period * urgent_sent));
      if (bulk_handled.load() >= to) break;
      const auto n = static_cast<std::size_t>(urgent_sent) % static_cast<std::size_t>(slots);
      sent_ns[n].store(Clock::now().time_since_epoch().count());
      if (!sender.Produce(kbus::BuildRecord(LaneJob{kUrgentBase + urgent_sent, "urgent"},
                                            {.topic = urgent_topic, .key = std::to_string(urgent_sent)}))
               .ok()) {
        std::printf("PROBLEM     pair %d: cannot send urgent command %d\n", pair, urgent_sent);
        r.ok = false;
        break;
      }
      ++urgent_sent;
    }
    const auto t1 = Clock::now();
    seconds = std::chrono::duration<double>(t1 - t0).count();
    r.bulk_per_s = (bulk_handled.load() - b0) / seconds;
    const bool all = WaitUntil(
        [&] {
          for (int n = 0; n < urgent_sent; ++n) {
            if (started_ns[static_cast<std::size_t>(n)].load() == 0) return false;
          }
          return true;
        },
        30s);
    if (!all) {
      std::printf("PROBLEM     pair %d: an urgent command never ran\n", pair);
      r.ok = false;
    }
    for (int n = 0; n < urgent_sent; ++n) {
      const std::int64_t s = sent_ns[static_cast<std::size_t>(n)].load();
      const std::int64_t t = started_ns[static_cast<std::size_t>(n)].load();
      if (t != 0) r.urgent_ms.push_back(static_cast<double>(t - s) * 1e-6);
    }
    std::sort(r.urgent_ms.begin(), r.urgent_ms.end());
  }
  worker->Stop();
  runner.join();
  // Destroyed before its topics are: on Kafka, a consumer handle destroyed after its topics were
  // deleted never returned from rd_kafka_destroy (librdkafka 2.0.2).
  worker.reset();
  if (!env.embedded) {
    raw::RdKafkaPtr admin = raw::NewClient(RD_KAFKA_PRODUCER, {{"bootstrap.servers", env.brokers}});
    raw::DeleteTopic(admin.get(), bulk_topic);
    raw::DeleteTopic(admin.get(), urgent_topic);
  }
  return r;
}

}  // namespace

int RunLanes(const LanesOptions& o) {
  kbus::SetLogLevel(kbus::LogLevel::kError);
  Env env{.o = o, .brokers = o.brokers};
  std::unique_ptr<kbus::kafka::EmbeddedBroker> broker;
  if (o.brokers == "embedded") {
    broker = std::make_unique<kbus::kafka::EmbeddedBroker>();
    env.embedded = broker.get();
    env.brokers = broker->bootstrap();
  }
  const kbus::kafka::WorkerConfig defaults;
  std::printf("kbus-bench --lanes: an urgent lane (weight %d) behind a bulk backlog (weight 1), one Worker, %s\n",
              o.weight, rd_kafka_version_str());
  std::printf("broker      %s (%s)\n", env.embedded ? "embedded: librdkafka's mock cluster, in this process" : "real Kafka",
              env.brokers.c_str());
  std::printf("load        %d bulk commands on %d partitions before the start; %.1f ms of work per command; "
              "%d handler threads; fetch.wait.max.ms=%lld\n",
              o.backlog, o.bulk_partitions, o.work_ms, defaults.handler_threads,
              static_cast<long long>(o.fetch_wait_ms > 0 ? o.fetch_wait_ms : defaults.fetch_wait_max.count()));
  std::printf("window      from %d to %d bulk handled; base: nothing else; lanes: %.0f urgent/s to the urgent lane\n\n",
              o.backlog / 10, o.backlog - o.backlog / 10, o.urgent_rate);
  std::printf("%-4s %-6s %11s %9s %9s %9s %9s\n", "pair", "side", "bulk msg/s", "urgent n", "p50 ms", "p99 ms",
              "max ms");
  std::vector<double> ratios, base_rates, lane_rates, p50s, p99s, all_ms;
  bool ok = true;
  for (int pair = 1; pair <= o.pairs; ++pair) {
    PassResult results[2];
    const bool lanes_first = pair % 2 == 0;
    for (bool urgent : {lanes_first, !lanes_first}) {
      PassResult p = RunPass(env, urgent, pair);
      ok = ok && p.ok;
      std::printf("%-4d %-6s %11.0f %9zu %9.2f %9.2f %9.2f\n", pair, urgent ? "lanes" : "base", p.bulk_per_s,
                  p.urgent_ms.size(), Percentile(p.urgent_ms, 0.5), Percentile(p.urgent_ms, 0.99),
                  p.urgent_ms.empty() ? -1 : p.urgent_ms.back());
      std::fflush(stdout);
      results[urgent ? 1 : 0] = std::move(p);
    }
    const PassResult& b = results[0];
    const PassResult& l = results[1];
    if (b.bulk_per_s <= 0 || l.urgent_ms.empty()) continue;
    ratios.push_back(l.bulk_per_s / b.bulk_per_s);
    base_rates.push_back(b.bulk_per_s);
    lane_rates.push_back(l.bulk_per_s);
    p50s.push_back(Percentile(l.urgent_ms, 0.5));
    p99s.push_back(Percentile(l.urgent_ms, 0.99));
    all_ms.insert(all_ms.end(), l.urgent_ms.begin(), l.urgent_ms.end());
    std::printf("     lanes/base bulk throughput %.3f\n", ratios.back());
  }
  if (!ratios.empty()) {
    std::sort(all_ms.begin(), all_ms.end());
    std::printf("\nmedian      urgent p50 %.2f ms, p99 %.2f ms (all %zu: p50 %.2f, p99 %.2f, max %.2f) | bulk base %.0f msg/s, "
                "with urgent %.0f msg/s, ratio %.3f (median over %zu pairs)\n",
                Median(p50s), Median(p99s), all_ms.size(), Percentile(all_ms, 0.5), Percentile(all_ms, 0.99),
                all_ms.back(), Median(base_rates), Median(lane_rates), Median(ratios), ratios.size());
    std::printf("RESULT lanes urgent_p50_ms=%.2f urgent_p99_ms=%.2f urgent_max_ms=%.2f bulk_base_per_s=%.0f "
                "bulk_lanes_per_s=%.0f ratio=%.3f\n",
                Median(p50s), Median(p99s), all_ms.back(), Median(base_rates), Median(lane_rates), Median(ratios));
  }
  std::fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace bench
