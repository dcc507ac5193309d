// Retry tiers: after its local attempts, a failing record waits in "<group>.retry.<delay>"
// instead of in the worker, so its partition moves on; it runs again when due, keeps its delivery
// count across the tier, and a record that keeps failing reaches the dead-letter topic naming
// the topic it first came from.

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"

namespace {

using kbus::test::ReadTopic;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

TEST(RetryTiers, AWaitingRetryHoldsNothingBackAndRunsAgainWhenDue) {
  const std::string topic = TestBroker::UniqueName("it-tier");
  const std::string group = TestBroker::UniqueName("g");
  const milliseconds delay(1500);
  const std::string tier = kbus::kafka::RetryTierTopic(group, delay);
  ASSERT_EQ(tier, group + ".retry.1500ms");
  TestBroker::Get().CreateTopic(topic, 1);
  TestBroker::Get().CreateTopic(tier, 1);

  std::mutex mu;
  std::vector<std::pair<int, Clock::time_point>> flaky_runs;  // attempt, when it ended
  std::vector<Clock::time_point> others;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        std::lock_guard lock(mu);
        if (w.tenant == "flaky") {
          flaky_runs.emplace_back(ctx.attempt(), Clock::now());
          if (ctx.attempt() < 3) throw std::runtime_error("downstream unavailable");
          return;
        }
        others.push_back(Clock::now());
      },
      {.topic = topic,
       .policy = {.max_deliveries = 3, .retry_tiers = std::vector<milliseconds>{delay}, .local_attempts = 1}});
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{1, "flaky", ""}, {.topic = topic, .key = "same"})).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return !flaky_runs.empty();
  }));
  // Same key and partition as the waiting record: in a tier, it holds back neither.
  for (int i = 2; i < 22; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(it::Work{i, "ok", ""}, {.topic = topic, .key = "same"})).ok());
  }
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return flaky_runs.size() == 3 && others.size() == 20;
  }));

  std::lock_guard lock(mu);
  EXPECT_EQ(flaky_runs[0].first, 1);
  EXPECT_EQ(flaky_runs[1].first, 2) << "the delivery count was lost in the tier";
  EXPECT_EQ(flaky_runs[2].first, 3);
  EXPECT_LT(others.back(), flaky_runs[1].second) << "new records waited for the retry";
  // The tier's delay is exact, not jittered: the record is due `delay` after it failed.
  EXPECT_GE(flaky_runs[1].second - flaky_runs[0].second, delay);
  EXPECT_GE(flaky_runs[2].second - flaky_runs[1].second, delay);
  EXPECT_EQ(worker.Stats().delayed, 2u);
  EXPECT_EQ(worker.Stats().dead_lettered, 0u);

  const auto copies = ReadTopic(TestBroker::Get().bootstrap(), tier, 2);
  ASSERT_EQ(copies.size(), 2u);
  for (std::size_t i = 0; i < copies.size(); ++i) {
    EXPECT_EQ(copies[i].FindHeader(std::string(kbus::header::kRetryTopic)), topic);
    EXPECT_EQ(copies[i].FindHeader(std::string(kbus::header::kRetryOffset)), "0") << "the origin must survive the second tier";
    EXPECT_EQ(copies[i].FindHeader(std::string(kbus::header::kDeliveryCount)), std::to_string(i + 1));
    EXPECT_NE(copies[i].FindHeader(std::string(kbus::header::kRetryError)).value_or("").find("downstream unavailable"),
              std::string::npos);
    EXPECT_EQ(copies[i].key, "same");
  }
}

TEST(RetryTiers, ARecordThatKeepsFailingIsDeadLetteredWithTheTopicItCameFrom) {
  const std::string topic = TestBroker::UniqueName("it-tier-dlq");
  const std::string group = TestBroker::UniqueName("g");
  const milliseconds delay(300);
  TestBroker::Get().CreateTopic(topic, 1);
  TestBroker::Get().CreateTopic(kbus::kafka::RetryTierTopic(group, delay), 1);
  std::atomic<int> runs{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work&, kbus::Context&) {
        ++runs;
        throw std::runtime_error("always fails");
      },
      {.topic = topic});
  auto config = it::WorkerConfigFor(group);
  config.max_deliveries = 3;
  config.local_attempts = 1;
  config.retry_tiers = {delay};
  it::RunningWorker worker(config, handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{7, "t", "payload"}, {.topic = topic})).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  const auto& d = dlq[0];
  EXPECT_EQ(d.FindHeader("kbus-dlq-reason"), "handler-error");
  EXPECT_EQ(d.FindHeader("kbus-dlq-attempts"), "3");
  EXPECT_EQ(d.FindHeader("kbus-dlq-original-topic"), topic) << "redrive must go to the source, not the tier";
  EXPECT_EQ(d.FindHeader("kbus-dlq-original-offset"), "0");
  for (const auto& h : d.headers) {
    EXPECT_NE(h.name.rfind("kbus-retry-", 0), 0u) << "tier header left on the dead letter: " << h.name;
  }
  EXPECT_EQ(runs.load(), 3);
  EXPECT_EQ(worker.Stats().delayed, 2u);
}

}  // namespace
