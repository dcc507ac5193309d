// The partition book (bus/kafka/src/worker/partition_book.hpp) without a broker: which records
// may run next, what the next commit may say, and when a partition should not be fetched.

#include "worker/partition_book.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace {

using kbus::kafka::Ordering;
using kbus::kafka::worker::Clock;
using kbus::kafka::worker::Entry;
using kbus::kafka::worker::EntryRef;
using kbus::kafka::worker::LeaseHooks;
using kbus::kafka::worker::MessagePtr;
using kbus::kafka::worker::Partition;
using kbus::kafka::worker::PartitionBook;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// What the rest of the worker would answer: every slot free, every count fits the ledger,
// unless a test says otherwise.
struct Hooks : LeaseHooks {
  std::function<bool(Partition&, Entry&)> reserve = [](Partition&, Entry&) { return true; };
  std::int64_t covered_until = std::numeric_limits<std::int64_t>::max();
  int recorded = 0;  // leases recorded (one per partition per round)
  bool Reserve(Partition& p, Entry& e) override { return reserve(p, e); }
  std::string Ledger(const Partition&, std::int64_t* covered) override {
    *covered = covered_until;
    return "ledger";
  }
  void Record(Partition&, std::string) override { ++recorded; }
};

class PartitionBookTest : public ::testing::Test {
 protected:
  void Open(Ordering ordering, std::size_t max_buffered = 5000) {
    book.emplace(ordering, max_buffered);
    p = &book->Add("orders", 0, /*tier=*/false, now);
  }

  // A consumed record as librdkafka would hand it over: an offset and perhaps a key.
  void Receive(std::int64_t offset, std::optional<std::string> key = std::nullopt) {
    auto m = std::make_shared<rd_kafka_message_t>();
    std::memset(m.get(), 0, sizeof(rd_kafka_message_t));
    m->offset = offset;
    m->partition = p->partition;
    if (key) {
      keys.push_back(*key);
      m->key = keys.back().data();
      m->key_len = keys.back().size();
    }
    book->Receive(*p, m, now, [&](const rd_kafka_message_t&) { return max_deliveries; });
  }

  // One lease round: the offsets leased, which then run (as the worker hands them to the pool).
  std::vector<std::int64_t> Lease() {
    std::vector<EntryRef> dead, leased, resend;
    book->Scan(now, dead);
    for (auto& [q, e] : dead) dead_lettered.push_back(e->offset);
    book->Choose(now, /*queued=*/0, hooks, leased);
    book->Leased(now, resend);
    std::vector<std::int64_t> offsets;
    for (auto& [q, e] : leased) {
      book->Begin(*q, *e);
      offsets.push_back(e->offset);
    }
    return offsets;
  }

  Entry& At(std::int64_t offset) { return *PartitionBook::FindEntry(*p, offset); }

  // The run of `offset` succeeded.
  void Finish(std::int64_t offset) {
    book->RunEnded(*p);
    book->Finish(*p, At(offset));
    book->AdvanceCommit(*p, now);
  }

  Clock::time_point now = Clock::now();
  std::optional<PartitionBook> book;
  Partition* p = nullptr;
  Hooks hooks;
  int max_deliveries = 5;
  std::deque<std::string> keys;
  std::vector<std::int64_t> dead_lettered;
};

TEST_F(PartitionBookTest, KeyOrderingRunsOneRecordPerKeyInOffsetOrder) {
  Open(Ordering::kKey);
  Receive(0, "a");
  Receive(1, "a");
  Receive(2, "b");
  Receive(3);  // no key: may run at any time
  Receive(4, "a");
  EXPECT_THAT(Lease(), ElementsAre(0, 2, 3));
  EXPECT_THAT(Lease(), IsEmpty()) << "1 and 4 wait for key a";
  Finish(0);
  EXPECT_TRUE(book->lease_wanted) << "a key freed: lease soon";
  EXPECT_THAT(Lease(), ElementsAre(1));
  Finish(1);
  EXPECT_THAT(Lease(), ElementsAre(4));
}

TEST_F(PartitionBookTest, PartitionOrderingRunsOneRecordAtATime) {
  Open(Ordering::kPartition);
  for (int i = 0; i < 3; ++i) Receive(i, "k" + std::to_string(i));
  EXPECT_THAT(Lease(), ElementsAre(0));
  Finish(0);
  EXPECT_THAT(Lease(), ElementsAre(1));
  Finish(1);
  EXPECT_THAT(Lease(), ElementsAre(2));
}

TEST_F(PartitionBookTest, UnorderedRunsEverythingAtOnceButCommitsInOffsetOrder) {
  Open(Ordering::kUnordered);
  for (int i = 10; i < 15; ++i) Receive(i, "same");
  EXPECT_THAT(Lease(), ElementsAre(10, 11, 12, 13, 14));
  EXPECT_EQ(PartitionBook::CommitOffset(*p), 10) << "nothing finished: the commit points at the first held";
  Finish(11);
  Finish(13);
  EXPECT_EQ(PartitionBook::CommitOffset(*p), 10) << "a gap at 10 holds the commit back";
  Finish(10);
  EXPECT_EQ(PartitionBook::CommitOffset(*p), 12) << "the finished prefix is 10 and 11";
  Finish(12);
  EXPECT_EQ(PartitionBook::CommitOffset(*p), 14);
  EXPECT_EQ(p->entries.size(), 1u);
  Finish(14);
  EXPECT_EQ(PartitionBook::CommitOffset(*p), 15);
  EXPECT_TRUE(p->entries.empty());
  EXPECT_EQ(book->released().size(), 5u) << "every finished record is handed back for release";
}

TEST_F(PartitionBookTest, EachDeliveryIsCountedBeforeItRuns) {
  Open(Ordering::kUnordered);
  Receive(0);
  EXPECT_EQ(At(0).deliveries, 0);
  EXPECT_THAT(Lease(), ElementsAre(0));
  EXPECT_EQ(At(0).deliveries, 1);
  EXPECT_EQ(hooks.recorded, 1) << "the lease went into the commit";
}

TEST_F(PartitionBookTest, ARetryIsHeldUntilItsBackoffPassed) {
  Open(Ordering::kKey);
  Receive(0, "a");
  Receive(1, "a");
  EXPECT_THAT(Lease(), ElementsAre(0));
  book->RunEnded(*p);
  book->Wait(*p, At(0), now + std::chrono::milliseconds(100));  // failed: retry in 100 ms
  EXPECT_THAT(Lease(), IsEmpty()) << "held by its backoff, and 1 behind it by the key";
  EXPECT_EQ(book->next_due, now + std::chrono::milliseconds(100)) << "the loop wakes when it is due";
  now += std::chrono::milliseconds(100);
  EXPECT_THAT(Lease(), ElementsAre(0));
  EXPECT_EQ(At(0).deliveries, 2);
  Finish(0);
  EXPECT_THAT(Lease(), ElementsAre(1));
}

TEST_F(PartitionBookTest, ALeaseTheBrokerRefusedIsTakenBackWhole) {
  Open(Ordering::kUnordered);
  Receive(0);
  std::vector<EntryRef> dead, leased, resend;
  book->Scan(now, dead);
  book->Choose(now, 0, hooks, leased);
  ASSERT_EQ(leased.size(), 1u);
  for (auto& [q, e] : leased) PartitionBook::Unlease(*e);  // the commit failed
  EXPECT_EQ(At(0).deliveries, 0) << "a count the broker did not record is not kept";
  EXPECT_FALSE(At(0).ticket);
  EXPECT_THAT(Lease(), ElementsAre(0)) << "leased again on the next round";
  EXPECT_EQ(At(0).deliveries, 1);
}

TEST_F(PartitionBookTest, RecordsWhoseCountsDoNotFitTheLedgerWaitForRoom) {
  Open(Ordering::kUnordered);
  for (int i = 0; i < 5; ++i) Receive(i);
  hooks.covered_until = 2;  // the ledger holds counts up to offset 2
  EXPECT_THAT(Lease(), ElementsAre(0, 1, 2));
  EXPECT_EQ(At(3).deliveries, 0);
  EXPECT_EQ(At(4).deliveries, 0);
  hooks.covered_until = std::numeric_limits<std::int64_t>::max();
  EXPECT_THAT(Lease(), ElementsAre(3, 4));
}

TEST_F(PartitionBookTest, AFullPartitionIsPausedUntilItDrainsToHalf) {
  Open(Ordering::kUnordered, /*max_buffered=*/4);
  for (int i = 0; i < 3; ++i) Receive(i);
  EXPECT_THAT(book->TakePauseChanges(), IsEmpty());
  Receive(3);
  EXPECT_TRUE(p->full);
  auto changes = book->TakePauseChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], p);
  p->paused = true;  // what the worker told librdkafka
  EXPECT_THAT(Lease(), ElementsAre(0, 1, 2, 3));
  Finish(0);
  EXPECT_TRUE(p->full) << "3 buffered: more than half";
  Finish(1);
  EXPECT_FALSE(p->full) << "2 buffered: half";
  changes = book->TakePauseChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(PartitionBook::WantsPause(*changes[0]));
}

TEST_F(PartitionBookTest, APartitionWithoutAFreeSlotWaitsForOne) {
  Open(Ordering::kUnordered);
  Receive(0);
  Receive(1);
  int free_slots = 1;
  hooks.reserve = [&](Partition&, Entry&) { return free_slots > 0 && free_slots-- > 0; };
  EXPECT_THAT(Lease(), ElementsAre(0));
  EXPECT_TRUE(p->starved);
  EXPECT_EQ(book->TakePauseChanges().size(), 1u) << "a starved partition is not fetched";
  p->paused = true;
  EXPECT_THAT(Lease(), IsEmpty());
  free_slots = 1;
  book->SlotsFreed();
  EXPECT_FALSE(p->starved);
  EXPECT_TRUE(book->lease_wanted);
  EXPECT_EQ(book->TakePauseChanges().size(), 1u) << "and fetched again";
  EXPECT_THAT(Lease(), ElementsAre(1));
}

TEST_F(PartitionBookTest, AfterAnUncleanTakeoverDeliveredRecordsRunAloneOneByOne) {
  Open(Ordering::kUnordered);
  p->prior = {{0, 1}, {1, 1}};  // the previous owner died while both ran
  p->dirty_takeover = true;
  for (int i = 0; i < 4; ++i) Receive(i);
  EXPECT_TRUE(At(0).suspect);
  EXPECT_TRUE(At(1).suspect);
  EXPECT_FALSE(At(2).suspect);
  std::vector<EntryRef> dead;
  EXPECT_TRUE(book->Scan(now, dead)) << "commit what finished before the first suspect runs";
  EXPECT_THAT(Lease(), ElementsAre(0));
  EXPECT_EQ(At(0).deliveries, 2) << "the count carried over, plus this delivery";
  EXPECT_THAT(Lease(), IsEmpty()) << "nothing else while a suspect runs";
  Finish(0);
  EXPECT_THAT(Lease(), ElementsAre(1));
  Finish(1);
  EXPECT_THAT(Lease(), ElementsAre(2, 3)) << "suspects done: the rest run together";
}

TEST_F(PartitionBookTest, ARecordWhoseDeliveriesAreUsedUpIsDeadLetteredWithoutRunning) {
  Open(Ordering::kKey);
  max_deliveries = 3;
  p->prior = {{0, 3}};
  p->dirty_takeover = true;
  Receive(0, "a");
  Receive(1, "a");
  EXPECT_EQ(At(0).copy, Entry::Copy::kDeadLetter);
  EXPECT_EQ(At(0).reason, "suspected-crash");
  EXPECT_THAT(Lease(), ElementsAre(1)) << "it holds no key: the next record of its key runs";
  EXPECT_THAT(dead_lettered, ElementsAre(0));
}

TEST_F(PartitionBookTest, ARevokedAssignmentNoLongerMatchesLateReports) {
  Open(Ordering::kUnordered);
  Receive(0);
  EXPECT_THAT(Lease(), ElementsAre(0));
  const std::uint64_t old_epoch = p->epoch;
  const std::atomic<bool>* old_flag = p->revoked.get();
  book->Remove("orders", 0);
  EXPECT_EQ(book->Live(old_epoch), nullptr) << "a result of the old assignment finds nothing";
  Partition& again = book->Add("orders", 0, false, now);
  EXPECT_NE(again.epoch, old_epoch);
  EXPECT_EQ(book->Live(old_epoch), nullptr) << "not even when the partition comes back";
  EXPECT_EQ(book->Live(again.epoch), &again);
  EXPECT_FALSE(old_flag->load()) << "the old run's revoked flag is still readable";
  EXPECT_TRUE(again.entries.empty()) << "the new assignment starts from the committed offset";
}

TEST_F(PartitionBookTest, LeasedRunsPerPartitionStayWithinTheInFlightCap) {
  Open(Ordering::kUnordered);
  for (int i = 0; i < PartitionBook::kMaxInFlight + 10; ++i) Receive(i);
  EXPECT_EQ(Lease().size(), static_cast<std::size_t>(PartitionBook::kMaxInFlight));
  EXPECT_THAT(Lease(), IsEmpty());
  Finish(0);
  EXPECT_THAT(Lease(), ElementsAre(PartitionBook::kMaxInFlight));
}

}  // namespace
