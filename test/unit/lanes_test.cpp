// Priority lanes without a broker: how lanes are declared (HandlerRegistry), which lane starts
// the next run (worker/lanes.hpp, the handler pool's queue), and how the partition book leases
// one lane while another's runs fill the pool.

#include "worker/lanes.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "test_messages.hpp"
#include "worker/partition_book.hpp"

namespace {

using kbus::HandlerRegistry;
using kbus::Lane;
using kbus::kafka::Ordering;
using kbus::kafka::worker::Clock;
using kbus::kafka::worker::Entry;
using kbus::kafka::worker::EntryRef;
using kbus::kafka::worker::LanePicker;
using kbus::kafka::worker::LaneQueues;
using kbus::kafka::worker::LaneTable;
using kbus::kafka::worker::LeaseHooks;
using kbus::kafka::worker::Partition;
using kbus::kafka::worker::PartitionBook;
using kbus_test::EncodeVideo;
using ::testing::ElementsAre;

constexpr std::size_t kBulk = 0;
constexpr std::size_t kUrgent = 1;

TEST(Lanes, ATypeReadsEveryLaneTopicAndEachTopicKeepsItsWeight) {
  HandlerRegistry registry;
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {},
                               {.lanes = {{"video.encode.urgent", 8}, {"video.encode.bulk", 1}}});
  EXPECT_EQ(registry.Topics(), (std::vector<std::string>{"video.encode.bulk", "video.encode.urgent"}));
  EXPECT_TRUE(registry.IsCommandTopic("video.encode.urgent"));
  EXPECT_TRUE(registry.IsCommandTopic("video.encode.bulk"));
  const auto lanes = registry.Lanes();
  ASSERT_EQ(lanes.size(), 2u);
  EXPECT_EQ(lanes[0].topic, "video.encode.bulk");
  EXPECT_EQ(lanes[0].weight, 1);
  EXPECT_EQ(lanes[1].topic, "video.encode.urgent");
  EXPECT_EQ(lanes[1].weight, 8);

  const LaneTable table(registry);
  EXPECT_EQ(table.weights(), (std::vector<int>{1, 1, 8})) << "lane 0 holds the topics that are no lane";
  EXPECT_EQ(table.Of("video.encode.bulk"), 1u);
  EXPECT_EQ(table.Of("video.encode.urgent"), 2u);
  EXPECT_EQ(table.Of("orders"), 0u);
}

TEST(Lanes, ImpossibleLanesAreRefusedAtRegistration) {
  auto fn = [](const EncodeVideo&, kbus::Context&) {};
  HandlerRegistry registry;
  EXPECT_THROW(registry.Handle<EncodeVideo>(fn, {.topic = "video", .lanes = {{"video.urgent", 2}}}), std::logic_error);
  EXPECT_THROW(registry.Handle<EncodeVideo>(fn, {.lanes = {{"video.urgent", 0}}}), std::logic_error);
  EXPECT_THROW(registry.Handle<EncodeVideo>(fn, {.lanes = {{"", 2}}}), std::logic_error);
  EXPECT_THROW(registry.Handle<EncodeVideo>(fn, {.lanes = {{"video.urgent", 2}, {"video.urgent", 3}}}),
               std::logic_error);
  registry.Handle<EncodeVideo>(fn, {.lanes = {{"video.urgent", 2}}});
  EXPECT_THROW(registry.Handle<kbus_test::VideoEncoded>([](const kbus_test::VideoEncoded&, kbus::Context&) {},
                                                        {.lanes = {{"video.urgent", 3}}}),
               std::logic_error)
      << "a topic has one weight";
}

// While both lanes have work, each round of 9 picks gives 8 to the lane weighted 8.
TEST(Lanes, OfEveryNineRunsStartedEightComeFromTheLaneWeightedEight) {
  LaneQueues<int> queue({1, 8});
  for (int i = 0; i < 90; ++i) queue.Push(kBulk, i);
  for (int i = 0; i < 90; ++i) queue.Push(kUrgent, 1000 + i);
  std::vector<std::size_t> lanes;
  while (!queue.empty()) lanes.push_back(queue.Take() >= 1000 ? kUrgent : kBulk);
  ASSERT_EQ(lanes.size(), 180u);
  // Urgent runs out after 90 / 8 rounds (11 full rounds and 2 picks); then bulk takes all.
  for (std::size_t round = 0; round < 11; ++round) {
    std::size_t urgent = 0;
    for (std::size_t i = round * 9; i < round * 9 + 9; ++i) urgent += lanes[i] == kUrgent ? 1 : 0;
    EXPECT_EQ(urgent, 8u) << "round " << round;
  }
  std::size_t bulk_before_urgent_ran_out = 0;
  for (std::size_t i = 0; i < 101; ++i) bulk_before_urgent_ran_out += lanes[i] == kBulk ? 1 : 0;
  EXPECT_EQ(bulk_before_urgent_ran_out, 11u) << "the light lane is never starved";
}

TEST(Lanes, EachLaneIsFirstInFirstOut) {
  LaneQueues<int> queue({1, 8});
  queue.Push(kBulk, 1);
  queue.Push(kBulk, 2);
  queue.Push(kUrgent, 10);
  queue.PushFront(kUrgent, 9);  // a run given back before it started goes first again
  EXPECT_EQ(queue.size(kUrgent), 2u);
  std::vector<int> taken;
  while (!queue.empty()) taken.push_back(queue.Take());
  EXPECT_THAT(taken, ElementsAre(9, 10, 1, 2));
}

TEST(Lanes, AnIdleLaneSavesNoCreditForLater) {
  LanePicker picker({1, 8});
  bool urgent = false;
  auto has_work = [&](std::size_t lane) { return lane == kBulk || urgent; };
  for (int i = 0; i < 100; ++i) EXPECT_EQ(picker.Next(has_work), kBulk) << "alone, bulk takes every run";
  urgent = true;
  std::size_t bulk = 0;
  for (int i = 0; i < 9; ++i) bulk += picker.Next(has_work) == kBulk ? 1 : 0;
  EXPECT_EQ(bulk, 1u) << "bulk's 100 runs alone earned it nothing over urgent";
  EXPECT_EQ(picker.Next([](std::size_t) { return false; }), 2u) << "no lane has work";
}

TEST(Lanes, EqualWeightsAlternate) {
  LanePicker picker({1, 1});
  std::vector<std::size_t> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(picker.Next([](std::size_t) { return true; }));
  EXPECT_THAT(picks, ElementsAre(0, 1, 0, 1, 0, 1));
}

// The partition book with a bulk partition (lane 0) and an urgent one (lane 1).
class LaneLeaseTest : public ::testing::Test {
 protected:
  struct Hooks : LeaseHooks {
    bool Reserve(Partition&, Entry&) override { return true; }
    std::string Ledger(const Partition&, std::int64_t* covered) override {
      *covered = std::numeric_limits<std::int64_t>::max();
      return "ledger";
    }
    void Record(Partition&, std::string) override {}
  };

  void SetUp() override {
    bulk = &book.Add("video.encode.bulk", 0, /*tier=*/false, now);
    urgent = &book.Add("video.encode.urgent", 0, /*tier=*/false, now);
    urgent->lane = kUrgent;
  }

  void Receive(Partition& p, std::int64_t offset) {
    auto m = std::make_shared<rd_kafka_message_t>();
    std::memset(m.get(), 0, sizeof(rd_kafka_message_t));
    m->offset = offset;
    book.Receive(p, m, now, [](const rd_kafka_message_t&) { return 5; });
  }

  // One lease round with `queued` runs of each lane waiting in the pool, leasing `lanes`.
  std::vector<EntryRef> Lease(std::vector<std::size_t> queued, std::uint64_t lanes = ~std::uint64_t{0}) {
    std::vector<EntryRef> dead, leased, resend;
    book.Scan(now, dead);
    book.Choose(now, queued, lanes, hooks, leased);
    book.Leased(now, resend);
    for (auto& [p, e] : leased) book.Begin(*p, *e);
    return leased;
  }

  static std::size_t Count(const std::vector<EntryRef>& leased, const Partition* p) {
    std::size_t n = 0;
    for (auto& [q, e] : leased) n += q == p ? 1 : 0;
    return n;
  }

  Clock::time_point now = Clock::now();
  PartitionBook book{Ordering::kUnordered, 5000};
  Hooks hooks;
  Partition* bulk = nullptr;
  Partition* urgent = nullptr;
};

TEST_F(LaneLeaseTest, AnUrgentRecordIsLeasedWhileBulkRunsFillThePool) {
  for (int i = 0; i < 10; ++i) Receive(*bulk, i);
  Receive(*urgent, 0);
  const std::size_t full = PartitionBook::kMaxWave * PartitionBook::kLeaseWaves;
  const auto leased = Lease({full, 0});
  EXPECT_EQ(Count(leased, bulk), 0u) << "bulk's lane has no room left in the pool";
  EXPECT_EQ(Count(leased, urgent), 1u) << "bulk's queued runs do not count against urgent's room";
  EXPECT_TRUE(book.lease_wanted);
  EXPECT_EQ(book.wanted_lanes, PartitionBook::LaneBit(kBulk)) << "bulk still wants a lease";
}

TEST_F(LaneLeaseTest, ALaneLeftOutOfARoundStaysWanted) {
  for (int i = 0; i < 10; ++i) Receive(*bulk, i);
  Receive(*urgent, 0);
  const auto leased = Lease({2000, 0}, PartitionBook::LaneBit(kUrgent));
  EXPECT_EQ(Count(leased, bulk), 0u) << "bulk's pool queue is not low: not leased with urgent";
  EXPECT_EQ(Count(leased, urgent), 1u);
  EXPECT_EQ(book.wanted_lanes & PartitionBook::LaneBit(kBulk), PartitionBook::LaneBit(kBulk));
  EXPECT_EQ(Count(Lease({0, 0}), bulk), 10u) << "leased once its lane runs low";
}

TEST_F(LaneLeaseTest, ADueRetryInALaneLeftOutStaysWanted) {
  Receive(*bulk, 0);
  ASSERT_EQ(Count(Lease({0, 0}), bulk), 1u);
  book.RunEnded(*bulk);
  book.Wait(*bulk, *PartitionBook::FindEntry(*bulk, 0), now);  // it failed; its retry is due at once
  EXPECT_EQ(Count(Lease({2000, 0}, PartitionBook::LaneBit(kUrgent)), bulk), 0u);
  EXPECT_EQ(book.wanted_lanes & PartitionBook::LaneBit(kBulk), PartitionBook::LaneBit(kBulk))
      << "the retry is leased once its lane runs low, not forgotten";
  EXPECT_EQ(Count(Lease({0, 0}), bulk), 1u);
}

}  // namespace
