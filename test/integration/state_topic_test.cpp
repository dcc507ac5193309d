// kafka::StateTopic, the store under workflow state, and the worker's rebalance hooks, which
// tell a workflow host which partitions to load and to drop.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "it_support.hpp"
#include "kbus/kafka/state_topic.hpp"

namespace {

using kbus::kafka::StateTopic;
using kbus::kafka::TopicPartition;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using namespace std::chrono_literals;

kbus::kafka::ClientConfig Client() {
  kbus::kafka::ClientConfig c;
  c.brokers = TestBroker::Get().bootstrap();
  return c;
}

struct Loaded {
  std::map<std::string, std::string> values;
  std::map<std::string, std::int64_t> offsets;
};

Loaded Load(StateTopic& topic, std::int32_t partition) {
  Loaded out;
  kbus::Status s = topic.Load(partition, [&](std::string_view k, std::string_view v, std::int64_t offset) {
    EXPECT_FALSE(out.values.contains(std::string(k))) << "each key once";
    out.values[std::string(k)] = std::string(v);
    out.offsets[std::string(k)] = offset;
  });
  EXPECT_TRUE(s.ok()) << s.error().message();
  return out;
}

TEST(StateTopic, LoadGivesTheLatestLiveValueOfEachKeyPerPartition) {
  const std::string name = TestBroker::UniqueName("state");
  TestBroker::Get().CreateTopic(name, 2);
  StateTopic topic(Client(), name);
  ASSERT_TRUE(topic.Write(0, "a", "a1").ok());
  ASSERT_TRUE(topic.Write(0, "b", "b1").ok());
  ASSERT_TRUE(topic.Write(0, "a", "a2").ok());
  ASSERT_TRUE(topic.Write(0, "c", "c1").ok());
  ASSERT_TRUE(topic.Erase(0, "c").ok());
  ASSERT_TRUE(topic.Write(1, "a", "other partition").ok());

  const Loaded p0 = Load(topic, 0);
  EXPECT_EQ(p0.values, (std::map<std::string, std::string>{{"a", "a2"}, {"b", "b1"}}));
  EXPECT_GT(p0.offsets.at("a"), p0.offsets.at("b")) << "a's latest write came after b's";
  const Loaded p1 = Load(topic, 1);
  EXPECT_EQ(p1.values, (std::map<std::string, std::string>{{"a", "other partition"}}));
}

TEST(StateTopic, AnEmptyPartitionLoadsAtOnce) {
  const std::string name = TestBroker::UniqueName("state-empty");
  TestBroker::Get().CreateTopic(name, 1);
  StateTopic topic(Client(), name);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(Load(topic, 0).values.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(StateTopic, ThousandsOfWritesLoadInParallelFromTwoPartitions) {
  const std::string name = TestBroker::UniqueName("state-many");
  TestBroker::Get().CreateTopic(name, 2);
  StateTopic topic(Client(), name);
  std::vector<std::thread> writers;
  for (int p = 0; p < 2; ++p) {
    writers.emplace_back([&, p] {
      for (int i = 0; i < 1500; ++i) {
        ASSERT_TRUE(topic.Write(p, "k" + std::to_string(i % 300), std::to_string(p) + ":" + std::to_string(i)).ok());
      }
    });
  }
  for (auto& w : writers) w.join();
  Loaded loaded[2];
  std::thread t0([&] { loaded[0] = Load(topic, 0); });
  std::thread t1([&] { loaded[1] = Load(topic, 1); });
  t0.join();
  t1.join();
  for (int p = 0; p < 2; ++p) {
    ASSERT_EQ(loaded[p].values.size(), 300u);
    for (int k = 0; k < 300; ++k) {
      EXPECT_EQ(loaded[p].values["k" + std::to_string(k)], std::to_string(p) + ":" + std::to_string(1200 + k));
    }
  }
}

TEST(StateTopic, ATopicThatDoesNotExistIsAnErrorNotAHang) {
  StateTopic topic(Client(), TestBroker::UniqueName("state-missing"));
  const auto start = std::chrono::steady_clock::now();
  int records = 0;
  const kbus::Status s = topic.Load(0, [&](std::string_view, std::string_view, std::int64_t) { ++records; }, 5s);
  if (TestBroker::Get().embedded()) {
    // The embedded broker creates any topic a client asks about: an empty one.
    EXPECT_TRUE(s.ok());
  } else {
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message().find("state-missing"), std::string::npos) << s.error().message();
  }
  EXPECT_EQ(records, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

// What the hooks reported, and whether the handler saw a record of a partition first.
struct Hooks {
  std::mutex mu;
  std::set<std::int32_t> held;
  std::vector<std::int32_t> assigned_log, revoked_log;
  std::atomic<bool> handled_before_assigned{false};

  void Wire(kbus::kafka::WorkerConfig& config) {
    config.on_assigned = [this](const std::vector<TopicPartition>& parts) {
      std::lock_guard lock(mu);
      for (const auto& p : parts) {
        EXPECT_TRUE(held.insert(p.partition).second) << "assigned twice without a revoke: " << p.partition;
        assigned_log.push_back(p.partition);
      }
    };
    config.on_revoked = [this](const std::vector<TopicPartition>& parts) {
      std::lock_guard lock(mu);
      for (const auto& p : parts) {
        EXPECT_EQ(held.erase(p.partition), 1u) << "revoked without being assigned: " << p.partition;
        revoked_log.push_back(p.partition);
      }
    };
  }
  std::size_t Held() {
    std::lock_guard lock(mu);
    return held.size();
  }
};

TEST(WorkerHooks, AssignedComesBeforeRecordsAndEveryAssignmentEndsInOneRevoke) {
  const std::string topic = TestBroker::UniqueName("hooks");
  const std::string group = TestBroker::UniqueName("hooks-g");
  TestBroker::Get().CreateTopic(topic, 4);
  Hooks first, second;
  std::atomic<int> handled{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        {
          std::lock_guard lock(first.mu);
          std::lock_guard lock2(second.mu);
          if (!first.held.contains(ctx.record().partition) && !second.held.contains(ctx.record().partition)) {
            first.handled_before_assigned = true;
          }
        }
        (void)w;
        ++handled;
      },
      {.topic = topic});
  kbus::kafka::WorkerConfig c1 = it::WorkerConfigFor(group);
  first.Wire(c1);
  auto w1 = std::make_unique<it::RunningWorker>(c1, handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(producer.Send(it::Work{i, "t", "b"}, {.topic = topic, .key = std::to_string(i)}).ok());
  }
  ASSERT_TRUE(WaitFor([&] { return handled.load() >= 40; }, 60s));
  EXPECT_EQ(first.Held(), 4u) << "the only member holds every partition";
  EXPECT_FALSE(first.handled_before_assigned.load());

  kbus::kafka::WorkerConfig c2 = it::WorkerConfigFor(group);
  second.Wire(c2);
  auto w2 = std::make_unique<it::RunningWorker>(c2, handlers);
  ASSERT_TRUE(WaitFor([&] { return second.Held() > 0 && first.Held() + second.Held() == 4; }, 60s))
      << "partitions moved: first holds " << first.Held() << ", second " << second.Held();
  {
    std::lock_guard lock(first.mu);
    EXPECT_FALSE(first.revoked_log.empty()) << "the first member was told what it gave up";
  }

  w2.reset();  // stops: on_revoked for what it held
  EXPECT_EQ(second.Held(), 0u);
  w1.reset();
  EXPECT_EQ(first.Held(), 0u);
  std::lock_guard lock(second.mu);
  EXPECT_EQ(second.assigned_log.size(), second.revoked_log.size());
}

}  // namespace
