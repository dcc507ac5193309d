// The worker's operations surface (docs/operations.md) on a broker: what /metrics counts while it
// handles records of two types, and what /healthz and /readyz say through its life, including
// while the broker is away and before it is up at all.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "free_port.hpp"
#include "broker_faults.hpp"
#include "it_support.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/log.hpp"
#include "kbus/ops/server.hpp"
#include "promtool.hpp"
#include "exposition.hpp"

namespace ops_it {

struct Charge {
  std::int64_t id = 0;
};
struct Refund {
  std::int64_t id = 0;
};

}  // namespace ops_it

template <>
struct kbus::MessageTraits<ops_it::Charge> {
  static constexpr std::string_view kType = "ops.Charge";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "ops.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &ops_it::Charge::id));
};

template <>
struct kbus::MessageTraits<ops_it::Refund> {
  static constexpr std::string_view kType = "ops.Refund";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "ops.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &ops_it::Refund::id));
};

namespace {

using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::seconds;

// The value of one series in a /metrics text ("name{labels}"), or -1 when it is absent.
double Sample(const std::string& text, const std::string& series) {
  return kbus::test::SampleValue(text, series).value_or(-1);
}

// The sum of every series of `name` whose labels include `label` (e.g. group="g").
double SumOf(const std::string& text, const std::string& name, const std::string& label) {
  std::istringstream in(text);
  double sum = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, name.size() + 1, name + "{") != 0) continue;
    const auto close = line.find("} ");
    if (close == std::string::npos || line.substr(0, close).find(label) == std::string::npos) continue;
    sum += std::strtod(line.c_str() + close + 2, nullptr);
  }
  return sum;
}

// Every value of `name`'s series with `label`, for "all of them" checks.
std::vector<double> ValuesOf(const std::string& text, const std::string& name, const std::string& label) {
  std::istringstream in(text);
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, name.size() + 1, name + "{") != 0) continue;
    const auto close = line.find("} ");
    if (close == std::string::npos || line.substr(0, close).find(label) == std::string::npos) continue;
    out.push_back(std::strtod(line.c_str() + close + 2, nullptr));
  }
  return out;
}

int Status(int port, const std::string& path) { return kbus::ops::Get("127.0.0.1", port, path).status; }

std::string Scrape(int port) { return kbus::ops::Get("127.0.0.1", port, "/metrics").body; }

// A worker on its own thread whose Worker object outlives its Run(), so its port can be asked
// after Stop().
class Running {
 public:
  Running(kbus::kafka::WorkerConfig config, const kbus::HandlerRegistry& handlers)
      : worker_(std::move(config), handlers), thread_([this] { worker_.Run(); }) {}
  ~Running() { Stop(); }
  void Stop() {
    if (thread_.joinable()) {
      worker_.Stop();
      thread_.join();
    }
  }
  kbus::kafka::Worker& worker() { return worker_; }

 private:
  kbus::kafka::Worker worker_;
  std::thread thread_;
};

// Keeps every log line's message, for tests that look for one.
class CapturingSink : public kbus::LogSink {
 public:
  void Write(kbus::LogLevel, std::string_view message, std::span<const kbus::LogField>) override {
    std::lock_guard lock(mu_);
    messages_.emplace_back(message);
  }
  bool Saw(std::string_view prefix) const {
    std::lock_guard lock(mu_);
    for (const auto& m : messages_) {
      if (m.rfind(prefix, 0) == 0) return true;
    }
    return false;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> messages_;
};

using kbus::test::FreePort;

TEST(WorkerOperations, MetricsCountRecordsByTypeAndOutcomeAndProbesFollowTheWorkersLife) {
  const std::string topic = TestBroker::UniqueName("it-ops");
  TestBroker::Get().CreateTopic(topic, 2);
  constexpr int kCharges = 20;
  constexpr int kRefunds = 10;
  constexpr std::int64_t kRefused = 3;  // the refund its handler dead-letters
  std::atomic<int> seen{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<ops_it::Charge>([&](const ops_it::Charge&, kbus::Context&) { ++seen; }, {.topic = topic});
  handlers.Handle<ops_it::Refund>(
      [&](const ops_it::Refund& r, kbus::Context&) {
        ++seen;
        return r.id == kRefused ? kbus::DeadLetter("refunds of order 3 are refused") : kbus::Ack();
      },
      {.topic = topic});
  const std::string group = TestBroker::UniqueName("g-ops");
  auto config = it::WorkerConfigFor(group);
  config.http_port = -1;
  config.http_bind_address = "127.0.0.1";
  Running running(config, handlers);
  const int port = running.worker().http_port();
  ASSERT_GT(port, 0);

  // Ready once the group is joined and partitions are assigned; live all along.
  EXPECT_EQ(Status(port, "/healthz"), 200);
  ASSERT_TRUE(WaitFor([&] { return Status(port, "/readyz") == 200; }, seconds(60)))
      << kbus::ops::Get("127.0.0.1", port, "/readyz").body;
  EXPECT_GT(running.worker().Stats().assigned_partitions, 0u);

  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = 0; i < kCharges; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(ops_it::Charge{i}, {.topic = topic})).ok());
  }
  for (int i = 0; i < kRefunds; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(ops_it::Refund{i}, {.topic = topic})).ok());
  }
  ASSERT_TRUE(producer.Flush(seconds(30)).ok());

  const std::string g = "group=\"" + group + "\"";
  const std::string charge = "{" + g + ",type=\"ops.Charge\"";
  const std::string refund = "{" + g + ",type=\"ops.Refund\"";
  std::string text;
  // Everything handled, committed, and every partition's lag back to 0.
  const bool settled = WaitFor(
      [&] {
        text = Scrape(port);
        const auto lags = ValuesOf(text, "kbus_worker_consumer_lag", g);
        return Sample(text, "kbus_worker_records_handled_total" + charge + ",outcome=\"acked\"}") == kCharges &&
               Sample(text, "kbus_worker_records_handled_total" + refund + ",outcome=\"dead_lettered\"}") == 1 &&
               lags.size() == 2 && lags[0] == 0 && lags[1] == 0;
      },
      seconds(60));
  ASSERT_TRUE(settled) << text;

  EXPECT_EQ(Sample(text, "kbus_worker_records_handled_total" + refund + ",outcome=\"acked\"}"), kRefunds - 1);
  EXPECT_EQ(Sample(text, "kbus_worker_records_handled_total" + charge + ",outcome=\"retried\"}"), 0);
  EXPECT_EQ(Sample(text, "kbus_worker_records_handled_total{" + g + ",type=\"unknown\",outcome=\"acked\"}"), 0);
  EXPECT_EQ(Sample(text, "kbus_worker_dead_letters_total{" + g + ",reason=\"rejected\"}"), 1);
  EXPECT_EQ(Sample(text, "kbus_worker_dead_letters_total{" + g + ",reason=\"handler-error\"}"), 0);
  EXPECT_EQ(Sample(text, "kbus_worker_handler_duration_seconds_count" + charge + "}"), kCharges);
  EXPECT_EQ(Sample(text, "kbus_worker_handler_duration_seconds_count" + refund + "}"), kRefunds);
  EXPECT_EQ(Sample(text, "kbus_worker_handler_duration_seconds_bucket" + charge + ",le=\"+Inf\"}"), kCharges);
  EXPECT_EQ(Sample(text, "kbus_worker_records_received_total{" + g + ",topic=\"" + topic + "\"}"),
            kCharges + kRefunds);
  EXPECT_GT(Sample(text, "kbus_worker_commits_total{" + g + ",result=\"ok\"}"), 0);
  EXPECT_GE(Sample(text, "kbus_worker_rebalances_total{" + g + ",event=\"assigned\"}"), 1);
  EXPECT_EQ(Sample(text, "kbus_worker_assigned_partitions{" + g + "}"), 2);
  EXPECT_EQ(Sample(text, "kbus_worker_runs_in_flight{" + g + "}"), 0);
  EXPECT_EQ(SumOf(text, "kbus_worker_retries_total", g), 0);
  EXPECT_EQ(seen.load(), kCharges + kRefunds);
  // What Prometheus accepts: parsed, and no lint problem (names, units, help texts).
  const auto lint = kbus::test::CheckMetrics(text);
  EXPECT_EQ(lint.exit_code, 0) << lint.output;

  // The probe's JSON names the group and its partitions.
  const auto ready = kbus::ops::Get("127.0.0.1", port, "/readyz");
  EXPECT_NE(ready.body.find("\"worker " + group + "\""), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("\"assigned_partitions\":2"), std::string::npos) << ready.body;

  // Stopped: no longer ready, still live (it stopped on purpose), the port still answers while
  // the Worker object exists.
  running.Stop();
  EXPECT_EQ(Status(port, "/readyz"), 503);
  EXPECT_EQ(Status(port, "/healthz"), 200);
  EXPECT_NE(kbus::ops::Get("127.0.0.1", port, "/readyz").body.find("shutting_down"), std::string::npos);
}

TEST(WorkerOperations, ReadinessFailsWhileTheBrokerIsDownAndComesBackWithIt) {
  if (!TestBroker::Get().embedded()) GTEST_SKIP() << "needs the embedded broker's fault injection";
  rd_kafka_mock_cluster_t* mc =
      kbus::kafka::EmbeddedBrokerFaults::MockCluster(*TestBroker::Get().embedded_broker());
  const std::string topic = TestBroker::UniqueName("it-ops-down");
  TestBroker::Get().CreateTopic(topic, 2);
  std::atomic<int> handled{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<ops_it::Charge>([&](const ops_it::Charge&, kbus::Context&) { ++handled; }, {.topic = topic});
  auto config = it::WorkerConfigFor(TestBroker::UniqueName("g-ops-down"));
  config.http_port = -1;
  config.http_bind_address = "127.0.0.1";
  Running running(config, handlers);
  const int port = running.worker().http_port();
  ASSERT_TRUE(WaitFor([&] { return Status(port, "/readyz") == 200; }, seconds(60)));

  ASSERT_EQ(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const bool went = WaitFor([&] { return Status(port, "/readyz") == 503; }, seconds(30));
  const auto down = kbus::ops::Get("127.0.0.1", port, "/readyz");
  ASSERT_EQ(rd_kafka_mock_broker_set_up(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(went) << "still ready with the broker down";
  EXPECT_NE(down.body.find("not reachable"), std::string::npos) << down.body;
  EXPECT_EQ(Status(port, "/healthz"), 200) << "an unreachable broker is no reason to restart";

  ASSERT_TRUE(WaitFor([&] { return Status(port, "/readyz") == 200; }, seconds(60)))
      << kbus::ops::Get("127.0.0.1", port, "/readyz").body;
  // And it works again.
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(ops_it::Charge{1}, {.topic = topic})).ok());
  EXPECT_TRUE(WaitFor([&] { return handled.load() == 1; }, seconds(60)));
}

// A worker started before its broker: it waits (not ready, saying so in the log) and joins once
// the broker is up, without crashing or being restarted.
TEST(WorkerOperations, WaitsForABrokerThatIsNotUpYet) {
  if (!TestBroker::Get().embedded()) GTEST_SKIP() << "starts a broker of its own: once is enough";
  const int broker_port = FreePort();
  ASSERT_GT(broker_port, 0);
  auto sink = std::make_shared<CapturingSink>();
  kbus::SetLogSink(sink);
  const std::string topic = TestBroker::UniqueName("it-ops-late");
  std::atomic<int> handled{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<ops_it::Charge>([&](const ops_it::Charge&, kbus::Context&) { ++handled; }, {.topic = topic});
  auto config = it::WorkerConfigFor(TestBroker::UniqueName("g-ops-late"), "127.0.0.1:" + std::to_string(broker_port));
  config.http_port = -1;
  config.http_bind_address = "127.0.0.1";
  // Reconnect quickly once the broker is there (librdkafka backs off up to 10 s by default).
  config.client.properties["reconnect.backoff.max.ms"] = "500";
  Running running(config, handlers);
  const int port = running.worker().http_port();

  const bool logged = WaitFor([&] { return sink->Saw("waiting for the brokers"); }, seconds(20));
  const auto waiting = kbus::ops::Get("127.0.0.1", port, "/readyz");
  kbus::SetLogSink(kbus::MakeJsonLogSink());
  ASSERT_TRUE(logged) << "no line says the worker waits for its brokers";
  EXPECT_EQ(waiting.status, 503) << waiting.body;
  EXPECT_NE(waiting.body.find("not reachable"), std::string::npos) << waiting.body;
  EXPECT_EQ(Status(port, "/healthz"), 200) << waiting.body;

  kbus::kafka::EmbeddedBroker broker({.port = broker_port});
  ASSERT_TRUE(broker.CreateTopic(topic, 1).ok());
  ASSERT_TRUE(WaitFor([&] { return Status(port, "/readyz") == 200; }, seconds(60)))
      << kbus::ops::Get("127.0.0.1", port, "/readyz").body;
  kbus::kafka::ProducerConfig pc;
  pc.client.brokers = broker.bootstrap();
  kbus::kafka::Producer producer(pc);
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(ops_it::Charge{1}, {.topic = topic})).ok());
  EXPECT_TRUE(WaitFor([&] { return handled.load() == 1; }, seconds(60)));
  running.Stop();
}

}  // namespace
