// Leases (docs/delivery.md, "Counting deliveries"): every delivery is counted in the group's
// committed ledger before its handler runs. The lease is committed asynchronously and its
// records run once the broker answered; a refused lease runs nothing and counts nothing; a lease
// still in flight when its partition is revoked or its worker stops is settled first, and
// delivery counts never go backwards. The tests that need a slow or refusing broker use the
// embedded broker's fault injection and are skipped on real Kafka.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "it_support.hpp"
#include "kbus/kafka/delivery_ledger.hpp"
#include "broker_faults.hpp"
#include "kbus/kafka/embedded_broker.hpp"

namespace lt {
struct Job {
  std::int64_t id = 0;
};
}  // namespace lt

template <>
struct kbus::MessageTraits<lt::Job> {
  static constexpr std::string_view kType = "lt.Job";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "lt.jobs";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &lt::Job::id));
};

namespace {

using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::milliseconds;

constexpr std::int16_t kOffsetCommit = 8;  // Kafka's API key (rdkafka_mock.h takes numbers)
constexpr std::int32_t kBroker = 1;        // the embedded broker's only broker

// What the group has committed for `topic`/0: its offset (-1 for none) and the delivery counts
// of its ledger, read by a consumer of the group that never joins it. False when unreadable.
bool ReadCommitted(const std::string& group, const std::string& topic, std::int64_t* offset,
                   std::map<std::int64_t, int>* counts) {
  char err[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", TestBroker::Get().bootstrap().c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)),
                                                             &rd_kafka_destroy);
  if (!rk) return false;
  std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)> list(
      rd_kafka_topic_partition_list_new(1), &rd_kafka_topic_partition_list_destroy);
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), 0);
  if (rd_kafka_committed(rk.get(), list.get(), 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
  const rd_kafka_topic_partition_t& tp = list->elems[0];
  *offset = tp.err ? -1 : tp.offset;
  counts->clear();
  if (*offset < 0) return true;  // nothing committed yet
  auto ledger = kbus::kafka::DeliveryLedger::Decode(
      std::string_view(static_cast<const char*>(tp.metadata), tp.metadata_size), tp.offset);
  if (!ledger.ok()) return false;
  *counts = ledger->deliveries;
  return true;
}

// The delivery count the group's committed ledger holds for `offset` of `topic`/0; -1 when it
// cannot be read.
int CommittedCount(const std::string& group, const std::string& topic, std::int64_t offset) {
  std::int64_t committed = -1;
  std::map<std::int64_t, int> counts;
  if (!ReadCommitted(group, topic, &committed, &counts)) return -1;
  auto it = counts.find(offset);
  return it == counts.end() ? 0 : it->second;
}

// What one run of a job saw.
struct Run {
  std::int64_t id = 0;
  int attempt = 0;
  int counted = 0;  // the committed ledger's count for its record when it started
};

class Runs {
 public:
  void Add(Run r) {
    std::lock_guard lock(mu_);
    runs_.push_back(r);
  }
  std::vector<Run> Of(std::int64_t id) const {
    std::lock_guard lock(mu_);
    std::vector<Run> out;
    for (const Run& r : runs_) {
      if (r.id == id) out.push_back(r);
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Run> runs_;
};

struct Rig {
  std::string topic = TestBroker::UniqueName("it-lease");
  std::string group = TestBroker::UniqueName("g");
  Rig() { TestBroker::Get().CreateTopic(topic, 1); }

  // Records each run, with the count the broker holds for it; fails the first `failures` runs.
  kbus::HandlerRegistry Handlers(Runs& runs, int failures = 0) {
    kbus::HandlerRegistry h;
    h.Handle<lt::Job>(
        [this, &runs, failures](const lt::Job& j, kbus::Context& ctx) {
          runs.Add({j.id, ctx.attempt(), CommittedCount(group, topic, ctx.record().offset)});
          if (ctx.attempt() <= failures) throw std::runtime_error("not yet");
        },
        {.topic = topic});
    return h;
  }

  void Send(std::int64_t id) {
    kbus::kafka::Producer producer(it::ProducerConfig());
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(lt::Job{id}, {.topic = topic, .key = "k"})).ok());
  }
};

// The embedded broker's fault injection, or nullptr on real Kafka.
rd_kafka_mock_cluster_t* Mock() {
  kbus::kafka::EmbeddedBroker* broker = TestBroker::Get().embedded_broker();
  return broker == nullptr ? nullptr : kbus::kafka::EmbeddedBrokerFaults::MockCluster(*broker);
}

// The broker's next `n` answers to offset commits are `error` (NO_ERROR: accepted), each sent
// `rtt_ms` late.
void DelayCommits(rd_kafka_mock_cluster_t* mc, int n, rd_kafka_resp_err_t error, int rtt_ms) {
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mc, kBroker, kOffsetCommit, 1, error, rtt_ms),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
}

// The broker received every commit DelayCommits prepared for.
bool CommitsTaken(rd_kafka_mock_cluster_t* mc) {
  std::size_t left = 0;
  return rd_kafka_mock_broker_error_stack_cnt(mc, kBroker, kOffsetCommit, &left) == RD_KAFKA_RESP_ERR_NO_ERROR &&
         left == 0;
}

// The worker committed everything before offset `next` and counts nothing: its next commit is
// the lease of the next job.
bool CommittedUpTo(const Rig& s, std::int64_t next) {
  return WaitFor([&] {
    std::int64_t offset = -1;
    std::map<std::int64_t, int> counts;
    return ReadCommitted(s.group, s.topic, &offset, &counts) && offset == next && counts.empty();
  });
}

// Job `id` sent while the group's worker is idle (everything before it committed), with the
// broker answering the next offset commit, its lease, 1.5 s late: returns once the lease reached
// the broker, so that it is in flight.
void SendWithLeaseInFlight(rd_kafka_mock_cluster_t* mc, Rig& s, std::int64_t id) {
  ASSERT_TRUE(CommittedUpTo(s, id)) << "the worker did not commit the jobs before " << id;
  DelayCommits(mc, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 1500);
  s.Send(id);
  ASSERT_TRUE(WaitFor([&] { return CommitsTaken(mc); })) << "the lease never reached the broker";
}

// Each run started only once the broker held its count, and counts only went up.
void ExpectCountedBeforeRunAndNeverBackwards(const std::vector<Run>& runs) {
  int last = 0;
  for (const Run& r : runs) {
    EXPECT_GE(r.counted, r.attempt) << "attempt " << r.attempt << " ran before the broker recorded it";
    EXPECT_GT(r.attempt, last) << "a delivery count went backwards";
    last = r.attempt;
  }
}

TEST(Lease, EveryDeliveryIsCountedInTheCommittedLedgerBeforeItsHandlerRuns) {
  Rig s;
  Runs runs;
  auto handlers = s.Handlers(runs, /*failures=*/2);
  it::RunningWorker worker(it::WorkerConfigFor(s.group), handlers);
  s.Send(1);
  ASSERT_TRUE(WaitFor([&] { return runs.Of(1).size() >= 3; }));
  const auto seen = runs.Of(1);
  ASSERT_EQ(seen.size(), 3u);
  ExpectCountedBeforeRunAndNeverBackwards(seen);
  EXPECT_EQ(seen.back().attempt, 3);
}

TEST(Lease, ARefusedLeaseRunsNothingAndCountsNothing) {
  rd_kafka_mock_cluster_t* mc = Mock();
  if (mc == nullptr) GTEST_SKIP() << "needs the embedded broker's fault injection";
  Rig s;
  Runs runs;
  auto handlers = s.Handlers(runs);
  it::RunningWorker worker(it::WorkerConfigFor(s.group), handlers);
  s.Send(0);
  ASSERT_TRUE(WaitFor([&] { return runs.Of(0).size() == 1; }));
  // The worker is idle: the next commit is the lease of job 1, refused three times.
  ASSERT_TRUE(CommittedUpTo(s, 1));
  DelayCommits(mc, 3, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, 100);
  s.Send(1);
  ASSERT_TRUE(WaitFor([&] { return runs.Of(1).size() == 1; }));
  EXPECT_TRUE(CommitsTaken(mc)) << "the refusals were not all served: the test proves nothing";
  const auto seen = runs.Of(1);
  EXPECT_EQ(seen[0].attempt, 1) << "a refused lease counted a delivery";
  EXPECT_EQ(seen[0].counted, 1);
  EXPECT_EQ(runs.Of(1).size(), 1u);
}

TEST(Lease, ALeaseInFlightWhenThePartitionIsRevokedIsSettledFirst) {
  rd_kafka_mock_cluster_t* mc = Mock();
  if (mc == nullptr) GTEST_SKIP() << "needs the embedded broker's fault injection";
  Rig s;
  Runs runs;
  auto handlers = s.Handlers(runs, /*failures=*/1);
  it::RunningWorker first(it::WorkerConfigFor(s.group), handlers);
  s.Send(0);  // the group is up and idle before the slow commit
  ASSERT_TRUE(WaitFor([&] { return runs.Of(0).size() == 2; }));
  SendWithLeaseInFlight(mc, s, 1);
  // The lease is in flight: a second member joins, and the partition is revoked meanwhile.
  it::RunningWorker second(it::WorkerConfigFor(s.group), handlers);
  ASSERT_TRUE(WaitFor([&] { return runs.Of(1).size() >= 2; }, std::chrono::seconds(60)));
  const auto seen = runs.Of(1);
  ExpectCountedBeforeRunAndNeverBackwards(seen);
}

TEST(Lease, AWorkerStoppedWithALeaseInFlightLosesNothingAndCountsOn) {
  rd_kafka_mock_cluster_t* mc = Mock();
  if (mc == nullptr) GTEST_SKIP() << "needs the embedded broker's fault injection";
  Rig s;
  Runs runs;
  auto handlers = s.Handlers(runs);
  {
    it::RunningWorker worker(it::WorkerConfigFor(s.group), handlers);
    s.Send(0);
    ASSERT_TRUE(WaitFor([&] { return runs.Of(0).size() == 1; }));
    SendWithLeaseInFlight(mc, s, 1);
    worker.Stop();  // with the lease in flight
  }
  const int counted = CommittedCount(s.group, s.topic, 1);
  if (runs.Of(1).empty()) {
    EXPECT_GE(counted, 1) << "the stop settled the lease, and its clean commit carries the count";
    it::RunningWorker next(it::WorkerConfigFor(s.group), handlers);
    ASSERT_TRUE(WaitFor([&] { return runs.Of(1).size() == 1; }));
  }
  const auto seen = runs.Of(1);
  ASSERT_FALSE(seen.empty());
  ExpectCountedBeforeRunAndNeverBackwards(seen);
}

}  // namespace
