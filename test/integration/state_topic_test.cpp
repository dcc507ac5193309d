// kafka::StateTopic, the store under workflow state, and the worker's rebalance hooks, which
// tell a workflow host which partitions to load and to drop. Runs on both brokers; where they
// differ (the embedded broker creates any topic a client asks about, and has no admin API) the
// test says what it expects of each.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "it_support.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/state_topic.hpp"
#include "kbus/testing/matchers.hpp"
#include "kbus/workflows/host.hpp"
#include "kbus/workflows/memory_state_store.hpp"
#include "kbus/workflows/kafka.hpp"
#include "kbus/workflows/workflow.hpp"

namespace {

using kbus::ErrorCode;
using kbus::kafka::StateTopic;
using kbus::kafka::TopicPartition;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using ::testing::HasSubstr;
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
  EXPECT_THAT(s, IsOk());
  return out;
}

// ---- StateTopic -------------------------------------------------------------------------------

TEST(StateTopic, LoadGivesExactlyTheLatestLiveValueOfEachKey) {
  const std::string name = TestBroker::UniqueName("state");
  TestBroker::Get().CreateTopic(name, 1);
  StateTopic topic(Client(), name);
  ASSERT_THAT(topic.Write(0, "a", "a1"), IsOk());
  ASSERT_THAT(topic.Write(0, "b", "b1"), IsOk());
  ASSERT_THAT(topic.Write(0, "a", "a2"), IsOk());
  ASSERT_THAT(topic.Write(0, "c", "c1"), IsOk());
  ASSERT_THAT(topic.Erase(0, "c"), IsOk());
  ASSERT_THAT(topic.Erase(0, "never-written"), IsOk());
  const Loaded first = Load(topic, 0);
  EXPECT_EQ(first.values, (std::map<std::string, std::string>{{"a", "a2"}, {"b", "b1"}}));
  EXPECT_GT(first.offsets.at("a"), first.offsets.at("b")) << "a's latest write came after b's";

  // Overwriting b and writing c again (after its tombstone) moves them to later offsets.
  ASSERT_THAT(topic.Write(0, "b", "b2"), IsOk());
  ASSERT_THAT(topic.Write(0, "c", "c2"), IsOk());
  const Loaded second = Load(topic, 0);
  EXPECT_EQ(second.values, (std::map<std::string, std::string>{{"a", "a2"}, {"b", "b2"}, {"c", "c2"}}));
  EXPECT_EQ(second.offsets.at("a"), first.offsets.at("a")) << "an untouched key keeps its offset";
  EXPECT_GT(second.offsets.at("b"), first.offsets.at("a"));
  EXPECT_GT(second.offsets.at("c"), second.offsets.at("b"));
}

TEST(StateTopic, PartitionsAreIndependentStores) {
  const std::string name = TestBroker::UniqueName("state-parts");
  TestBroker::Get().CreateTopic(name, 3);
  StateTopic topic(Client(), name);
  // The same key in every partition, with a different history in each.
  ASSERT_THAT(topic.Write(0, "k", "zero"), IsOk());
  ASSERT_THAT(topic.Write(1, "k", "one"), IsOk());
  ASSERT_THAT(topic.Write(2, "k", "two"), IsOk());
  ASSERT_THAT(topic.Erase(1, "k"), IsOk());
  ASSERT_THAT(topic.Write(2, "only-in-2", "x"), IsOk());

  EXPECT_EQ(Load(topic, 0).values, (std::map<std::string, std::string>{{"k", "zero"}}));
  EXPECT_TRUE(Load(topic, 1).values.empty()) << "the erase in 1 removed k there only";
  EXPECT_EQ(Load(topic, 2).values, (std::map<std::string, std::string>{{"k", "two"}, {"only-in-2", "x"}}));
}

TEST(StateTopic, AnEmptyPartitionLoadsAtOnceWithNothing) {
  const std::string name = TestBroker::UniqueName("state-empty");
  TestBroker::Get().CreateTopic(name, 2);
  StateTopic topic(Client(), name);
  ASSERT_THAT(topic.Write(1, "k", "v"), IsOk());  // the other partition is not empty
  const auto start = std::chrono::steady_clock::now();
  int calls = 0;
  EXPECT_THAT(topic.Load(0, [&](std::string_view, std::string_view, std::int64_t) { ++calls; }), IsOk());
  EXPECT_EQ(calls, 0);
  // "At once": a metadata round trip and a watermark query, not a read that waits for data.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(StateTopic, ThousandsOfWritesLoadInParallelFromTwoPartitions) {
  const std::string name = TestBroker::UniqueName("state-many");
  TestBroker::Get().CreateTopic(name, 2);
  StateTopic topic(Client(), name);
  constexpr int kWrites = 1500, kKeys = 300;  // per partition: 3,000 acknowledged writes in all
  std::vector<std::thread> writers;
  for (int p = 0; p < 2; ++p) {
    writers.emplace_back([&, p] {
      for (int i = 0; i < kWrites; ++i) {
        ASSERT_THAT(topic.Write(p, "k" + std::to_string(i % kKeys), std::to_string(p) + ":" + std::to_string(i)),
                    IsOk());
      }
      // Every tenth key ends erased.
      for (int k = 0; k < kKeys; k += 10) ASSERT_THAT(topic.Erase(p, "k" + std::to_string(k)), IsOk());
    });
  }
  for (auto& w : writers) w.join();
  Loaded loaded[2];
  std::thread t0([&] { loaded[0] = Load(topic, 0); });
  std::thread t1([&] { loaded[1] = Load(topic, 1); });
  t0.join();
  t1.join();
  for (int p = 0; p < 2; ++p) {
    ASSERT_EQ(loaded[p].values.size(), static_cast<std::size_t>(kKeys - kKeys / 10)) << "partition " << p;
    for (int k = 0; k < kKeys; ++k) {
      const std::string key = "k" + std::to_string(k);
      if (k % 10 == 0) {
        EXPECT_FALSE(loaded[p].values.contains(key)) << key << " was erased";
      } else {
        EXPECT_EQ(loaded[p].values[key], std::to_string(p) + ":" + std::to_string(kWrites - kKeys + k));
      }
    }
  }
}

TEST(StateTopic, ATopicThatDoesNotExistIsAnErrorNotAHang) {
  const std::string name = TestBroker::UniqueName("state-missing");
  StateTopic topic(Client(), name);
  const auto start = std::chrono::steady_clock::now();
  int records = 0;
  const kbus::Status s = topic.Load(0, [&](std::string_view, std::string_view, std::int64_t) { ++records; }, 5s);
  if (TestBroker::Get().embedded()) {
    // The embedded broker creates any topic a client asks about (its metadata API predates
    // the flag that says not to), so there it loads as empty.
    EXPECT_THAT(s, IsOk());
  } else {
    EXPECT_THAT(s, ErrorIs(ErrorCode::kTransport, HasSubstr(name)));
  }
  EXPECT_EQ(records, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

TEST(StateTopic, APartitionThatDoesNotExistIsAnErrorNotAHang) {
  // The case the embedded broker can show too: a state topic with fewer partitions than the
  // input topic (Attach refuses that at start; a topic shrunk behind our back is not).
  const std::string name = TestBroker::UniqueName("state-narrow");
  TestBroker::Get().CreateTopic(name, 1);
  StateTopic topic(Client(), name);
  const auto start = std::chrono::steady_clock::now();
  int records = 0;
  const kbus::Status s = topic.Load(5, [&](std::string_view, std::string_view, std::int64_t) { ++records; }, 5s);
  EXPECT_THAT(s, ErrorIs(ErrorCode::kTransport, HasSubstr(name)));
  EXPECT_EQ(records, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

TEST(OutgoingRecord, PartitionPutsTheRecordInExactlyThatPartition) {
  const std::string name = TestBroker::UniqueName("pinned");
  TestBroker::Get().CreateTopic(name, 4);
  kbus::kafka::Producer producer(it::ProducerConfig());
  // One key for all: the partitioner would put every record in one partition.
  for (std::int32_t p : {3, 0, 2, 1, 3}) {
    kbus::OutgoingRecord r;
    r.topic = name;
    r.key = "one-key";
    r.payload = std::to_string(p);
    r.partition = p;
    ASSERT_THAT(producer.SendSync(r), IsOk());
  }
  const auto read = kbus::test::ReadTopic(TestBroker::Get().bootstrap(), name, 5);
  ASSERT_EQ(read.size(), 5u);
  std::multiset<std::int32_t> partitions;
  for (const auto& r : read) {
    EXPECT_EQ(std::to_string(r.partition), r.payload) << "offset " << r.offset;
    partitions.insert(r.partition);
  }
  EXPECT_EQ(partitions, (std::multiset<std::int32_t>{0, 1, 2, 3, 3}));
}

// ---- the worker's rebalance hooks ---------------------------------------------------------

// What one worker's hooks reported. Checks as they come that a partition is never assigned
// twice, nor revoked without being held.
struct Hooks {
  std::mutex mu;
  std::set<std::int32_t> held;
  std::vector<std::vector<std::int32_t>> assigned_calls, revoked_calls;
  std::map<std::int32_t, int> assigned_count, revoked_count;

  void Wire(kbus::kafka::WorkerConfig& config) {
    config.on_assigned = [this](const std::vector<TopicPartition>& parts) {
      std::lock_guard lock(mu);
      std::vector<std::int32_t> call;
      for (const auto& p : parts) {
        EXPECT_TRUE(held.insert(p.partition).second) << "assigned twice without a revoke: " << p.partition;
        ++assigned_count[p.partition];
        call.push_back(p.partition);
      }
      std::sort(call.begin(), call.end());
      assigned_calls.push_back(std::move(call));
    };
    config.on_revoked = [this](const std::vector<TopicPartition>& parts) {
      std::lock_guard lock(mu);
      std::vector<std::int32_t> call;
      for (const auto& p : parts) {
        EXPECT_EQ(held.erase(p.partition), 1u) << "revoked without being held: " << p.partition;
        ++revoked_count[p.partition];
        call.push_back(p.partition);
      }
      std::sort(call.begin(), call.end());
      revoked_calls.push_back(std::move(call));
    };
  }
  std::set<std::int32_t> Held() {
    std::lock_guard lock(mu);
    return held;
  }
  // Partitions named by on_revoked calls from the `from`-th on.
  std::set<std::int32_t> RevokedSince(std::size_t from) {
    std::lock_guard lock(mu);
    std::set<std::int32_t> out;
    for (std::size_t i = from; i < revoked_calls.size(); ++i) out.insert(revoked_calls[i].begin(), revoked_calls[i].end());
    return out;
  }
  std::size_t RevokedCalls() {
    std::lock_guard lock(mu);
    return revoked_calls.size();
  }
};

const std::set<std::int32_t> kAllFour{0, 1, 2, 3};

void ProduceToEveryPartition(const std::string& topic, int count, int first_id = 0) {
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = first_id; i < first_id + count; ++i) {
    kbus::OutgoingRecord r = kbus::BuildRecord(it::Work{i, "t", "b"}, {.topic = topic, .key = std::to_string(i)});
    r.partition = i % 4;
    ASSERT_THAT(producer.SendSync(r), IsOk());
  }
}

TEST(WorkerHooks, OnAssignedListsEveryPartitionBeforeTheHandlerSeesARecord) {
  const std::string topic = TestBroker::UniqueName("hooks-first");
  TestBroker::Get().CreateTopic(topic, 4);
  ProduceToEveryPartition(topic, 40);  // waiting in every partition when the worker joins
  Hooks hooks;
  std::atomic<int> handled{0};
  std::mutex seen_mu;
  std::optional<std::set<std::int32_t>> held_at_first_record;
  std::set<std::int32_t> unheld_records;  // partitions of records handled while not held
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work&, kbus::Context& ctx) {
        const std::set<std::int32_t> held = hooks.Held();
        {
          std::lock_guard lock(seen_mu);
          if (!held_at_first_record) held_at_first_record = held;
          if (!held.contains(ctx.record().partition)) unheld_records.insert(ctx.record().partition);
        }
        ++handled;
      },
      {.topic = topic});
  kbus::kafka::WorkerConfig config = it::WorkerConfigFor(TestBroker::UniqueName("hooks-first-g"));
  hooks.Wire(config);
  {
    it::RunningWorker worker(config, handlers);
    ASSERT_TRUE(WaitFor([&] { return handled.load() >= 40; }, 60s)) << "handled " << handled.load();
  }
  std::lock_guard lock(seen_mu);
  ASSERT_TRUE(held_at_first_record.has_value());
  EXPECT_EQ(*held_at_first_record, kAllFour) << "the first record ran before on_assigned named every partition";
  EXPECT_TRUE(unheld_records.empty());
  std::lock_guard hooks_lock(hooks.mu);
  ASSERT_FALSE(hooks.assigned_calls.empty());
  EXPECT_EQ(hooks.assigned_calls.front(), (std::vector<std::int32_t>{0, 1, 2, 3})) << "one call for the lone member";
}

// A hook is user code: whatever it throws (here not even a std::exception) is logged, and the
// worker goes on handling records and stops cleanly, calling on_revoked at the end.
TEST(WorkerHooks, AHookThatThrowsAnythingDoesNotStopTheWorker) {
  const std::string topic = TestBroker::UniqueName("hooks-throw");
  TestBroker::Get().CreateTopic(topic, 4);
  std::atomic<int> handled{0}, assigned_calls{0}, revoked_calls{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>([&](const it::Work&, kbus::Context&) { ++handled; }, {.topic = topic});
  kbus::kafka::WorkerConfig config = it::WorkerConfigFor(TestBroker::UniqueName("hooks-throw-g"));
  config.on_assigned = [&](const std::vector<TopicPartition>&) {
    ++assigned_calls;
    throw 42;
  };
  config.on_revoked = [&](const std::vector<TopicPartition>&) {
    ++revoked_calls;
    throw "a C string";
  };
  {
    it::RunningWorker worker(config, handlers);
    ProduceToEveryPartition(topic, 20);
    ASSERT_TRUE(WaitFor([&] { return handled.load() >= 20; }, 60s)) << "handled " << handled.load();
  }
  EXPECT_GE(assigned_calls.load(), 1);
  EXPECT_GE(revoked_calls.load(), 1) << "the stop still called on_revoked";
}

TEST(WorkerHooks, AJoiningMemberTakesPartitionsAndAStoppingOneGivesBackWhatItHeldOnce) {
  const std::string topic = TestBroker::UniqueName("hooks");
  TestBroker::Get().CreateTopic(topic, 4);
  const std::string group = TestBroker::UniqueName("hooks-g");
  Hooks first, second;
  std::atomic<int> handled{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>([&](const it::Work&, kbus::Context&) { ++handled; }, {.topic = topic});

  kbus::kafka::WorkerConfig c1 = it::WorkerConfigFor(group);
  first.Wire(c1);
  auto w1 = std::make_unique<it::RunningWorker>(c1, handlers);
  ProduceToEveryPartition(topic, 20);
  ASSERT_TRUE(WaitFor([&] { return handled.load() >= 20; }, 60s));
  EXPECT_EQ(first.Held(), kAllFour) << "the only member holds every partition";
  const std::size_t revoked_before_join = first.RevokedCalls();

  // A second member joins: some partitions move to it. The first is told it lost them (with
  // eager protocols it is told it lost all, and gets the rest back), the second that it has them.
  kbus::kafka::WorkerConfig c2 = it::WorkerConfigFor(group);
  second.Wire(c2);
  auto w2 = std::make_unique<it::RunningWorker>(c2, handlers);
  ASSERT_TRUE(WaitFor(
      [&] {
        const auto a = first.Held(), b = second.Held();
        std::set<std::int32_t> both = a;
        both.insert(b.begin(), b.end());
        return !a.empty() && !b.empty() && a.size() + b.size() == 4 && both == kAllFour;
      },
      60s))
      << "first holds " << first.Held().size() << ", second " << second.Held().size();
  const std::set<std::int32_t> moved = second.Held();
  const std::set<std::int32_t> revoked_on_join = first.RevokedSince(revoked_before_join);
  for (std::int32_t p : moved) {
    EXPECT_TRUE(revoked_on_join.contains(p)) << "partition " << p << " moved without on_revoked in the first";
  }
  {
    std::lock_guard lock(second.mu);
    for (std::int32_t p : moved) EXPECT_EQ(second.assigned_count[p], 1) << "partition " << p;
  }
  // Both members work after the split.
  const int before_split_work = handled.load();
  ProduceToEveryPartition(topic, 20, 100);
  ASSERT_TRUE(WaitFor([&] { return handled.load() >= before_split_work + 20; }, 60s));

  // The second stops: on_revoked for exactly what it held, once each; the first gets it back.
  w2.reset();
  {
    std::lock_guard lock(second.mu);
    EXPECT_TRUE(second.held.empty());
    EXPECT_EQ(second.revoked_count, second.assigned_count) << "every assignment ended in one revoke";
    ASSERT_FALSE(second.revoked_calls.empty());
    std::set<std::int32_t> last_call(second.revoked_calls.back().begin(), second.revoked_calls.back().end());
    EXPECT_EQ(last_call, moved) << "the stop named what the member held";
  }
  ASSERT_TRUE(WaitFor([&] { return first.Held() == kAllFour; }, 60s))
      << "the first member did not get the partitions back; holds " << first.Held().size();

  w1.reset();
  std::lock_guard lock(first.mu);
  EXPECT_TRUE(first.held.empty());
  EXPECT_EQ(first.revoked_count, first.assigned_count) << "every assignment ended in one revoke";
}

// ---- the workflow's topics --------------------------------------------------------------------

struct Nothing {
  int n = 0;
};

}  // namespace

template <>
struct kbus::JsonTraits<Nothing> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("n", &Nothing::n));
};

namespace {

TEST(WorkflowTopics, TheStateTopicIsCompactedAndCoPartitionedWithTheInput) {
  if (TestBroker::Get().embedded()) GTEST_SKIP() << "the embedded broker has no admin API";
  const std::string name = TestBroker::UniqueName("wf-topics");
  kbus::workflows::Workflow<Nothing> workflow(name);
  workflow.StartedBy<it::Work>([](const it::Work& w) { return std::to_string(w.id); },
                               [](const it::Work&, Nothing&, kbus::workflows::WorkflowContext&) {});
  kbus::workflows::MemoryStateStore store;
  kbus::workflows::WorkflowHost host(workflow, {.group = name + "-g"}, store);
  ASSERT_THAT(kbus::workflows::CreateWorkflowTopics(Client(), workflow.options(), 3), IsOk());

  auto state = kbus::kafka::DescribeTopicConfigs(Client(), host.state_topic());
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->at("cleanup.policy"), "compact");
  auto input = kbus::kafka::DescribeTopicConfigs(Client(), host.input_topic());
  ASSERT_THAT(input, IsOk());
  EXPECT_EQ(input->at("cleanup.policy"), "delete") << "the input topic is an ordinary one";

  auto topics = kbus::kafka::ListTopics(Client());
  ASSERT_THAT(topics, IsOk());
  std::map<std::string, int> counts;
  for (const auto& t : *topics) counts[t.name] = t.partitions;
  EXPECT_EQ(counts[host.input_topic()], 3);
  EXPECT_EQ(counts[host.state_topic()], 3);

  // Again: topics that exist already are fine.
  EXPECT_THAT(kbus::workflows::CreateWorkflowTopics(Client(), workflow.options(), 3), IsOk());
  EXPECT_THAT(kbus::kafka::DescribeTopicConfigs(Client(), TestBroker::UniqueName("no-such-topic")),
              ErrorIs(ErrorCode::kTransport, HasSubstr("no-such-topic")));
}

}  // namespace
