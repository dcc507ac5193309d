// Broker faults, injected with the embedded broker's fault injection (librdkafka's mock cluster),
// while a worker handles 5,000 commands and publishes one event per command: offset commits,
// produce and fetch requests that fail, and the broker going away for 3 s. After each fault the
// worker must recover by itself and lose nothing: every command handled, every event present,
// and copies of one event (from a command that ran twice) sharing their kbus-id. A send the
// broker answers late must make its partition reported as stalled, until it moves again.
//
// Registered for the embedded broker only: real Kafka has no fault injection.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "broker_faults.hpp"
#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/kafka/embedded_broker.hpp"
#include "rb_support.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using kbus::test::ReadTopic;
using kbus::test::TestBroker;
using kbus::test::WaitFor;

// Kafka protocol API keys: rdkafka_mock.h takes them as plain numbers, and 2.0.2's RD_KAFKAP_*
// constants live in a private header (rdkafka_protocol.h).
constexpr std::int16_t kProduce = 0;
constexpr std::int16_t kFetch = 1;
constexpr std::int16_t kOffsetCommit = 8;
constexpr std::int32_t kBroker = 1;  // the embedded broker's only broker

constexpr std::int64_t kCommands = 5'000;
constexpr std::int64_t kFirstHalf = 2'500;
constexpr int kPartitions = 4;

// Errors for one API key on the broker's own error stack, each answered after `rtt_ms`. The
// broker's stack (unlike the cluster's) can be counted, so the test knows the fault was served.
void PushErrors(rd_kafka_mock_cluster_t* mc, std::int16_t api_key,
                const std::vector<rd_kafka_resp_err_t>& errors, int rtt_ms) {
  for (rd_kafka_resp_err_t e : errors) {
    ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mc, kBroker, api_key, 1, e, rtt_ms),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
}

bool ErrorsServed(rd_kafka_mock_cluster_t* mc, std::int16_t api_key) {
  std::size_t left = 0;
  return rd_kafka_mock_broker_error_stack_cnt(mc, kBroker, api_key, &left) == RD_KAFKA_RESP_ERR_NO_ERROR &&
         left == 0;
}

struct Fault {
  // Injects the fault; may block for as long as the fault lasts.
  std::function<void(rd_kafka_mock_cluster_t*)> inject;
  // True once the broker has served the whole fault.
  std::function<bool(rd_kafka_mock_cluster_t*)> served;
  // Inject before the second half of the commands is produced (so fetches carry data while it
  // lasts), or after (so that the test's own producer does not take the errors meant for the
  // worker's).
  bool before_second_half = true;
  // A permanent produce error may use up a command's deliveries: the worker then dead-letters it
  // with reason publish-error (docs/delivery.md), which is accounted for, not lost.
  bool dead_letters_allowed = false;
};

// The "id" of an it::WorkDone or it::Work payload, both of which start with it.
std::int64_t PayloadId(const std::string& payload) {
  long long id = -1;
  return std::sscanf(payload.c_str(), "{\"id\":%lld", &id) == 1 ? id : -1;
}

std::int64_t Stored(const std::string& bootstrap, const std::string& topic) {
  std::int64_t n = 0;
  for (const auto& w : rb::Watermarks(bootstrap, topic, kPartitions)) n += w.high;
  return n;
}

// One worker, 5,000 commands, the fault injected once a fifth of them were handled.
void RunThroughFault(const char* name, const Fault& fault) {
  kbus::kafka::EmbeddedBroker broker;
  rd_kafka_mock_cluster_t* mc = kbus::kafka::EmbeddedBrokerFaults::MockCluster(broker);
  const std::string in_topic = TestBroker::UniqueName(std::string("rb-") + name);
  const std::string events_topic = in_topic + "-events";
  const std::string group = TestBroker::UniqueName("g");
  ASSERT_TRUE(broker.CreateTopic(in_topic, kPartitions).ok());
  ASSERT_TRUE(broker.CreateTopic(events_topic, kPartitions).ok());

  it::Tally tally;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        // ~1 ms per command, so the stream lasts several seconds and the fault lands mid-stream.
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        tally.Add(w.id);
        ctx.Publish(it::WorkDone{w.id}, {.topic = events_topic});
      },
      {.topic = in_topic});

  kbus::kafka::ProducerConfig pc;
  pc.client.brokers = broker.bootstrap();
  kbus::kafka::Producer producer(pc);
  auto produce = [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t i = from; i < to; ++i) {
      ASSERT_TRUE(producer.Produce(kbus::BuildRecord(it::Work{i, "t", "x"}, {.topic = in_topic})).ok());
    }
    ASSERT_TRUE(producer.Flush(std::chrono::seconds(60)).ok());
  };
  produce(0, kFirstHalf);
  ASSERT_FALSE(testing::Test::HasFatalFailure());

  it::RunningWorker worker(it::WorkerConfigFor(group, broker.bootstrap()), handlers);  // its own broker
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() >= kCommands / 5; }, std::chrono::seconds(60)))
      << "the worker never got going";
  ASSERT_LT(tally.Distinct(), static_cast<std::size_t>(kFirstHalf)) << "the fault came too late to test";

  const auto injected_at = Clock::now();
  if (fault.before_second_half) fault.inject(mc);
  produce(kFirstHalf, kCommands);
  if (!fault.before_second_half) fault.inject(mc);
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  ASSERT_TRUE(WaitFor([&] { return fault.served(mc); }, std::chrono::seconds(60)))
      << "the broker never served the whole fault: the worker stopped sending such requests";
  const auto served_at = Clock::now();

  // Recovered by itself: it keeps handling until every command ran.
  const bool all = WaitFor(
      [&] { return tally.Distinct() == kCommands && worker.Stats().handled >= kCommands; },
      std::chrono::seconds(120));
  const auto recovered_at = Clock::now();
  ASSERT_TRUE(all) << "lost or stuck: " << tally.Missing(kCommands).size() << " of " << kCommands
                   << " commands never handled; stats: handled " << worker.Stats().handled
                   << ", retried " << worker.Stats().retried << ", dead-lettered "
                   << worker.Stats().dead_lettered << ", assigned " << worker.Stats().assigned_partitions;

  // Every event written: wait until the events topic holds one per command (less those
  // dead-lettered), then stop the worker (a clean stop waits for its sends) and read all of it.
  auto stored = [&] { return Stored(broker.bootstrap(), events_topic); };
  const bool written = WaitFor(
      [&] { return stored() + static_cast<std::int64_t>(worker.Stats().dead_lettered) >= kCommands; },
      std::chrono::seconds(60));
  worker.Stop();
  const auto stats = worker.Stats();
  ASSERT_TRUE(written) << "only " << stored() << " events stored and " << stats.dead_lettered
                       << " commands dead-lettered";
  const std::int64_t total_events = stored();
  const auto events = ReadTopic(broker.bootstrap(), events_topic, static_cast<std::size_t>(total_events),
                                std::chrono::seconds(60));
  ASSERT_EQ(static_cast<std::int64_t>(events.size()), total_events);

  // One event per command, by its id; copies of it (the command ran again) carry the same kbus-id,
  // so consumers can drop them.
  std::map<std::int64_t, std::string> first_kbus_id;
  std::map<std::string, std::int64_t> event_of_kbus_id;
  std::int64_t mismatched = 0;
  std::int64_t shared = 0;
  for (const auto& e : events) {
    const std::int64_t id = PayloadId(e.payload);
    ASSERT_TRUE(id >= 0 && id < kCommands) << "unexpected event payload " << e.payload;
    const std::string kbus_id = e.FindHeader("kbus-id").value_or("");
    ASSERT_FALSE(kbus_id.empty()) << "event without kbus-id at " << e.partition << "/" << e.offset;
    auto [it, fresh] = first_kbus_id.emplace(id, kbus_id);
    if (!fresh && it->second != kbus_id) ++mismatched;
    auto [jt, new_id] = event_of_kbus_id.emplace(kbus_id, id);
    if (!new_id && jt->second != id) ++shared;
  }
  EXPECT_EQ(mismatched, 0) << "copies of one command's event carry different kbus-ids";
  EXPECT_EQ(shared, 0) << "events of different commands share a kbus-id";

  // Commands whose event is missing must be in the dead-letter topic, as publish errors.
  std::set<std::int64_t> dead;
  if (stats.dead_lettered > 0) {
    const auto dlq = ReadTopic(broker.bootstrap(), kbus::DeadLetterTopic(group),
                               static_cast<std::size_t>(stats.dead_lettered), std::chrono::seconds(30));
    ASSERT_EQ(dlq.size(), stats.dead_lettered);
    for (const auto& r : dlq) {
      EXPECT_EQ(r.FindHeader("kbus-dlq-reason"), "publish-error") << r.payload;
      dead.insert(PayloadId(r.payload));
    }
  }
  if (!fault.dead_letters_allowed) {
    EXPECT_EQ(stats.dead_lettered, 0u) << "a command was dead-lettered although its handler succeeds";
  }
  std::int64_t lost = 0;
  std::string sample;
  for (std::int64_t i = 0; i < kCommands; ++i) {
    if (!first_kbus_id.contains(i) && !dead.contains(i)) {
      if (++lost <= 10) sample += " " + std::to_string(i);
    }
  }
  EXPECT_EQ(lost, 0) << "commands with neither their event nor a dead letter:" << sample;
  EXPECT_EQ(stats.assigned_partitions, 0u) << "the stopped worker still holds partitions";

  // Nothing held back: the clean stop committed every input partition up to its end.
  const auto ends = rb::Watermarks(broker.bootstrap(), in_topic, kPartitions);
  const auto committed = rb::Committed(broker.bootstrap(), group, in_topic, kPartitions);
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(committed[static_cast<std::size_t>(p)], ends[static_cast<std::size_t>(p)].high)
        << "partition " << p << " was not committed to its end";
  }

  // Duplicates the test's own producer wrote (idempotent, so there should be none) would show up as
  // handler duplicates that are not the worker's doing.
  const std::int64_t input_duplicates = Stored(broker.bootstrap(), in_topic) - kCommands;
  EXPECT_EQ(input_duplicates, 0) << "the input topic holds duplicates of the test's commands";
  const auto handler_duplicates = tally.Deliveries() - tally.Distinct();
  const auto event_duplicates = events.size() - first_kbus_id.size();
  const auto ms = [](Clock::duration d) {
    return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  testing::Test::RecordProperty("handler_duplicates", static_cast<int>(handler_duplicates));
  testing::Test::RecordProperty("event_duplicates", static_cast<int>(event_duplicates));
  testing::Test::RecordProperty("retried", static_cast<int>(stats.retried));
  testing::Test::RecordProperty("dead_lettered", static_cast<int>(stats.dead_lettered));
  testing::Test::RecordProperty("fault_served_ms", ms(served_at - injected_at));
  testing::Test::RecordProperty("all_handled_ms", ms(recovered_at - injected_at));
  std::printf("broker_faults %s: %lld commands, %zu handler duplicates, %zu event duplicates, %llu "
              "retried, %llu dead-lettered; fault served after %d ms, all handled %d ms after the "
              "fault\n",
              name, static_cast<long long>(kCommands), handler_duplicates, event_duplicates,
              static_cast<unsigned long long>(stats.retried),
              static_cast<unsigned long long>(stats.dead_lettered), ms(served_at - injected_at),
              ms(recovered_at - injected_at));
}

TEST(BrokerFaults, RefusedOffsetCommitsLoseNothing) {
  RunThroughFault("commit", {
      .inject = [](rd_kafka_mock_cluster_t* mc) {
        PushErrors(mc, kOffsetCommit,
                   {RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                    RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR},
                   0);
      },
      .served = [](rd_kafka_mock_cluster_t* mc) { return ErrorsServed(mc, kOffsetCommit); },
  });
}

TEST(BrokerFaults, RetriableProduceErrorsOnTheWorkersEventsLoseNothing) {
  RunThroughFault("produce", {
      .inject = [](rd_kafka_mock_cluster_t* mc) {
        PushErrors(mc, kProduce,
                   {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT},
                   0);
      },
      .served = [](rd_kafka_mock_cluster_t* mc) { return ErrorsServed(mc, kProduce); },
      .before_second_half = false,
  });
}

// A permanent error is not retried by librdkafka: the worker sees a failed delivery report, and
// must send the handler's messages again (same event ids) instead of committing past the
// command, without running the handler again. librdkafka also marks the topic as failed and
// refuses new records for it until its next metadata refresh (about a second), so the worker
// waits at least a second between rounds; five rounds span the fault, and nothing is
// dead-lettered (docs/delivery.md).
TEST(BrokerFaults, PermanentProduceErrorsMakeTheWorkerSendAgain) {
  RunThroughFault("produce-permanent", {
      .inject = [](rd_kafka_mock_cluster_t* mc) {
        PushErrors(mc, kProduce,
                   {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED},
                   0);
      },
      .served = [](rd_kafka_mock_cluster_t* mc) { return ErrorsServed(mc, kProduce); },
      .before_second_half = false,
  });
}

TEST(BrokerFaults, FailingFetchesLoseNothing) {
  RunThroughFault("fetch", {
      // 300 ms apart, so that the errors span the production of the second half.
      .inject = [](rd_kafka_mock_cluster_t* mc) {
        PushErrors(mc, kFetch,
                   {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__TRANSPORT,
                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT},
                   300);
      },
      .served = [](rd_kafka_mock_cluster_t* mc) { return ErrorsServed(mc, kFetch); },
  });
}

// The outage plus librdkafka's reconnect backoff (exponential, up to 10 s) sometimes exceeds the
// 6 s session: the worker then loses its partitions without a commit and takes them over again as
// after a crash, so the records handled since its last commit run again, one at a time (seen: the
// whole second half, 2,500 records, in about one run in three).
TEST(BrokerFaults, ABrokerDownForThreeSecondsLosesNothing) {
  RunThroughFault("down", {
      .inject = [](rd_kafka_mock_cluster_t* mc) {
        ASSERT_EQ(rd_kafka_mock_broker_set_down(mc, kBroker), RD_KAFKA_RESP_ERR_NO_ERROR);
        std::this_thread::sleep_for(std::chrono::seconds(3));  // the fault itself, not a wait
        ASSERT_EQ(rd_kafka_mock_broker_set_up(mc, kBroker), RD_KAFKA_RESP_ERR_NO_ERROR);
      },
      .served = [](rd_kafka_mock_cluster_t*) { return true; },
  });
}

// A handler's event whose send the broker answers only after 6 s: the record's partition has
// work (the record, waiting for its send) and nothing of the worker holds it, so after
// stall_warning it is reported stalled, and once the send is acknowledged it moves again.
TEST(BrokerFaults, APartitionWaitingOnASlowSendIsReportedStalledUntilItMovesAgain) {
  kbus::kafka::EmbeddedBroker broker;
  rd_kafka_mock_cluster_t* mc = kbus::kafka::EmbeddedBrokerFaults::MockCluster(broker);
  const std::string in_topic = TestBroker::UniqueName("rb-stall");
  const std::string events_topic = in_topic + "-events";
  ASSERT_TRUE(broker.CreateTopic(in_topic, 1).ok());
  ASSERT_TRUE(broker.CreateTopic(events_topic, 1).ok());
  kbus::kafka::ProducerConfig pc;
  pc.client.brokers = broker.bootstrap();
  {
    kbus::kafka::Producer producer(pc);
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{1, "t", ""}, {.topic = in_topic})).ok());
  }
  // The next produce request, the worker's event, is answered 6 s late.
  ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(mc, kBroker, kProduce, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 6000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  it::Tally tally;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        tally.Add(w.id);
        ctx.Publish(it::WorkDone{w.id}, {.topic = events_topic});
      },
      {.topic = in_topic});
  kbus::kafka::WorkerConfig config = it::WorkerConfigFor(TestBroker::UniqueName("g"), broker.bootstrap());
  config.stall_warning = std::chrono::seconds(1);
  it::RunningWorker worker(config, handlers);
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == 1; }, std::chrono::seconds(30)));
  EXPECT_TRUE(WaitFor([&] { return worker.Stats().stalled_partitions == 1; }, std::chrono::seconds(5)))
      << "a partition waiting 6 s on a send was not reported after 1 s";
  EXPECT_TRUE(ErrorsServed(mc, kProduce));
  EXPECT_TRUE(WaitFor([&] { return worker.Stats().committed > 0 && worker.Stats().stalled_partitions == 0; },
                      std::chrono::seconds(30)))
      << "the partition moved again, and the report did not clear";
  EXPECT_EQ(ReadTopic(broker.bootstrap(), events_topic, 1).size(), 1u);
}

}  // namespace
