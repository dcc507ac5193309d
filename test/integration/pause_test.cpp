// A partition the worker paused (no free slot, a full buffer, a retry tier whose head is not
// due) and that a rebalance takes away and hands back must be fetched again: librdkafka keeps an
// application pause across assignments, so a worker that forgets it paused a partition stops
// reading it for good while the group looks healthy. Each pausing path is taken across a real
// rebalance, caused by a plain consumer joining the group and leaving it, with the eager and the
// cooperative assignor.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "it_support.hpp"
#include "kbus/slots.hpp"

namespace {

using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::milliseconds;

// Opens for good once; handlers wait on it (or until their delivery is abandoned).
class Gate {
 public:
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  // True once open; false when `ctx` was abandoned first.
  bool Pass(kbus::Context& ctx) {
    std::unique_lock lock(mu_);
    while (!open_) {
      if (ctx.Cancelled()) return false;
      cv_.wait_for(lock, milliseconds(10));
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// A plain consumer of `topics` in `group`: joining makes the group rebalance, and so does
// leaving. It never commits, so whatever it reads is read again by the worker after it leaves.
class Intruder {
 public:
  Intruder(const std::string& group, const std::vector<std::string>& topics, const std::string& strategy) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const char* k, const std::string& v) {
      EXPECT_EQ(rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err), RD_KAFKA_CONF_OK) << k << ": " << err;
    };
    set("bootstrap.servers", TestBroker::Get().bootstrap());
    set("group.id", group);
    set("partition.assignment.strategy", strategy);
    set("enable.auto.commit", "false");
    set("session.timeout.ms", "6000");
    set("heartbeat.interval.ms", "1000");
    rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (rk_ == nullptr) throw std::runtime_error(std::string("cannot create the intruder: ") + err);
    rd_kafka_poll_set_consumer(rk_);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
    for (const auto& t : topics) rd_kafka_topic_partition_list_add(list, t.c_str(), RD_KAFKA_PARTITION_UA);
    EXPECT_EQ(rd_kafka_subscribe(rk_, list), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(list);
  }
  ~Intruder() { Leave(); }

  // Polls until the group gave this member at least one partition.
  bool WaitForAssignment() {
    return WaitFor([&] {
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 50)) rd_kafka_message_destroy(m);
      rd_kafka_topic_partition_list_t* parts = nullptr;
      if (rd_kafka_assignment(rk_, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
      const bool some = parts->cnt > 0;
      rd_kafka_topic_partition_list_destroy(parts);
      return some;
    });
  }

  void Leave() {
    if (rk_ == nullptr) return;
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
    rk_ = nullptr;
  }

 private:
  rd_kafka_t* rk_ = nullptr;
};

class PauseAcrossRebalance : public ::testing::TestWithParam<std::string> {
 protected:
  kbus::kafka::WorkerConfig Config(const std::string& group) {
    kbus::kafka::WorkerConfig c = it::WorkerConfigFor(group);
    c.assignment_strategy = GetParam();
    c.revoke_grace = milliseconds(300);  // a handler held at the gate is abandoned, not waited for
    c.on_assigned = [this](const std::vector<kbus::kafka::TopicPartition>&) { ++assignments_; };
    return c;
  }

  // A member joins and leaves while the worker has partitions paused; both rebalances must be
  // over (the worker owns `partitions` again, after a later assignment) before this returns.
  void RebalanceTwice(const std::string& group, const std::vector<std::string>& topics, it::RunningWorker& worker,
                      std::uint32_t partitions) {
    const int before = assignments_.load();
    Intruder intruder(group, topics, GetParam());
    ASSERT_TRUE(intruder.WaitForAssignment()) << "the intruder never got a partition";
    ASSERT_LT(worker.Stats().assigned_partitions, partitions) << "the rebalance moved nothing";
    intruder.Leave();
    ASSERT_TRUE(WaitFor([&] {
      return assignments_.load() > before && worker.Stats().assigned_partitions == partitions;
    })) << "the worker never got its partitions back";
  }

  // Records [from, to) alternately on partitions 0 and 1, each with its own key, so that key
  // order holds none back.
  static void Send(const std::string& topic, int from, int to) {
    kbus::kafka::Producer producer(it::ProducerConfig());
    for (int i = from; i < to; ++i) {
      kbus::OutgoingRecord r = kbus::BuildRecord(it::Work{i, "t", ""}, {.topic = topic, .key = "k" + std::to_string(i)});
      r.partition = i % 2;
      ASSERT_TRUE(producer.Produce(r).ok());
    }
    ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)).ok());
  }

  void GatedRecordsSurviveTwoRebalances(const std::string& prefix, kbus::DeliveryPolicy policy,
                                        const std::function<void(kbus::kafka::WorkerConfig&)>& tweak, int count);

  std::atomic<int> assignments_{0};
};

// `count` records on two partitions, held at a gate until both partitions are paused and the
// group rebalanced twice; then every record must be handled.
void PauseAcrossRebalance::GatedRecordsSurviveTwoRebalances(const std::string& prefix, kbus::DeliveryPolicy policy,
                                                            const std::function<void(kbus::kafka::WorkerConfig&)>& tweak,
                                                            int count) {
  const std::string topic = TestBroker::UniqueName(prefix);
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 2);
  Gate gate;
  it::Tally tally;
  kbus::HandlerRegistry handlers;
  policy.max_deliveries = 100;  // the gate's abandoned runs must not use the record up
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        if (!gate.Pass(ctx)) throw std::runtime_error("abandoned at the gate");
        tally.Add(w.id);
      },
      {.topic = topic, .policy = std::move(policy)});
  kbus::kafka::WorkerConfig config = Config(group);
  tweak(config);
  it::RunningWorker worker(std::move(config), handlers);
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().assigned_partitions == 2; }));
  Send(topic, 0, count);
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().paused_partitions == 2; }))
      << "paused: " << worker.Stats().paused_partitions;
  RebalanceTwice(group, {topic}, worker, 2);
  gate.Open();
  EXPECT_TRUE(WaitFor([&] { return tally.Distinct() == static_cast<std::size_t>(count); }))
      << "never handled: " << ::testing::PrintToString(tally.Missing(count));
  EXPECT_EQ(worker.Stats().stalled_partitions, 0u);
}

TEST_P(PauseAcrossRebalance, APartitionPausedForLackOfASlotIsReadAgainAfterARebalance) {
  // One record holds the only slot at the gate; the others find none: both partitions pause.
  GatedRecordsSurviveTwoRebalances(
      "it-pause-slots", {.slots = std::make_shared<kbus::Slots>(1)}, [](kbus::kafka::WorkerConfig&) {}, 6);
}

TEST_P(PauseAcrossRebalance, APartitionPausedForAFullBufferIsReadAgainAfterARebalance) {
  // Two records at the gate; two more buffered per partition fill it: both partitions pause.
  GatedRecordsSurviveTwoRebalances("it-pause-full", {},
                                   [](kbus::kafka::WorkerConfig& c) {
                                     c.max_buffered_per_partition = 2;
                                     c.handler_threads = 2;
                                   },
                                   20);
}

TEST_P(PauseAcrossRebalance, ARetryTierWaitingForItsHeadIsReadAgainAfterARebalance) {
  const std::string topic = TestBroker::UniqueName("it-pause-tier");
  const std::string group = TestBroker::UniqueName("g");
  // Long enough that the heads still wait when the intruder's join revokes the partitions.
  const milliseconds delay(8000);
  const std::string tier = kbus::kafka::RetryTierTopic(group, delay);
  TestBroker::Get().CreateTopic(topic, 2);
  TestBroker::Get().CreateTopic(tier, 2);
  it::Tally tally;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        // Only a run from the tier succeeds: a record read again from its source topic (a
        // commit the embedded broker refused during the rebalance) goes to the tier again.
        if (ctx.record().topic != tier) throw std::runtime_error("fails at the source, retried from the tier");
        tally.Add(w.id);
      },
      {.topic = topic,
       .policy = {.max_deliveries = 100, .retry_tiers = std::vector<milliseconds>{delay}, .local_attempts = 1}});
  it::RunningWorker worker(Config(group), handlers);
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().assigned_partitions == 4; }));
  // Keys k0..k7 (always hashed alike) land on both of the tier's partitions.
  constexpr int kCount = 8;
  Send(topic, 0, kCount);
  // Every record failed once and waits in the tier: both its partitions wait for their heads.
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().paused_partitions == 2; }))
      << "paused: " << worker.Stats().paused_partitions;
  RebalanceTwice(group, {topic, tier}, worker, 4);
  EXPECT_TRUE(WaitFor([&] { return tally.Distinct() == kCount; }))
      << "never handled: " << ::testing::PrintToString(tally.Missing(kCount));
  EXPECT_EQ(worker.Stats().stalled_partitions, 0u);
}

INSTANTIATE_TEST_SUITE_P(Assignors, PauseAcrossRebalance, ::testing::Values("range", "cooperative-sticky"),
                         [](const auto& info) { return info.param == "range" ? "Eager" : "Cooperative"; });

}  // namespace
