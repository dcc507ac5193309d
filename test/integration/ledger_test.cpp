// The delivery ledger at its size bound. Real Kafka refuses commit metadata over 4096 bytes;
// a worker that wrote more would have every lease refused and stall. Here a worker takes over
// a partition whose previous owner left a dirty ledger of almost 4 KiB (counts that do not
// compress), and must still handle every record, carrying the counts it could record.

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "it_support.hpp"
#include "kbus/kafka/delivery_ledger.hpp"

namespace {

using kbus::test::TestBroker;
using kbus::test::WaitFor;

// Commits `offset` with `metadata` for `group`, as a member-less client (no subscription).
void CommitAs(const std::string& group, const std::string& topic, std::int64_t offset,
              const std::string& metadata) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", TestBroker::Get().bootstrap().c_str(), err, sizeof err), RD_KAFKA_CONF_OK);
  ASSERT_EQ(rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err), RD_KAFKA_CONF_OK);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  ASSERT_NE(rk, nullptr) << err;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(list, topic.c_str(), 0);
  tp->offset = offset;
  tp->metadata = std::malloc(metadata.size());
  std::memcpy(tp->metadata, metadata.data(), metadata.size());
  tp->metadata_size = metadata.size();
  const rd_kafka_resp_err_t e = rd_kafka_commit(rk, list, 0);
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  ASSERT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(e);
}

TEST(Ledger, AWorkerTakingOverAFullLedgerStaysUnderKafkasMetadataLimit) {
  const std::string topic = TestBroker::UniqueName("it-ledger");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  constexpr int kRecords = 2500;
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(it::Work{i, "t", ""}, {.topic = topic})).ok());
  }
  ASSERT_TRUE(producer.Flush(std::chrono::seconds(30)).ok());

  // The previous owner's ledger: alternating counts 1 and 2 (nothing merges), as large as Kafka
  // takes, and dirty: every counted record is a suspect that runs alone.
  kbus::kafka::DeliveryLedger previous;
  previous.clean = false;
  for (int i = 0; i < kRecords; ++i) previous.deliveries[i] = 1 + i % 2;
  std::int64_t covered = 0;
  const std::string text = previous.Encode(0, 4000, &covered);
  ASSERT_GT(text.size(), kbus::kafka::kMaxLedgerBytes) << "the test must start above the worker's own bound";
  CommitAs(group, topic, 0, text);

  std::mutex mu;
  std::map<std::int64_t, int> attempt;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        std::lock_guard lock(mu);
        attempt[w.id] = ctx.attempt();
      },
      {.topic = topic});
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);
  const bool all = WaitFor(
      [&] {
        std::lock_guard lock(mu);
        return attempt.size() == kRecords;
      },
      std::chrono::seconds(120));
  std::lock_guard lock(mu);
  ASSERT_TRUE(all) << attempt.size() << " of " << kRecords
                   << " handled: a lease over the metadata limit would stall the partition";
  // Counts carried over: delivered once before, so this is delivery 2; twice before, 3.
  EXPECT_EQ(attempt[0], 2);
  EXPECT_EQ(attempt[1], 3);
  EXPECT_EQ(attempt[covered], 2 + covered % 2);
  RecordProperty("prior_ledger_bytes", static_cast<int>(text.size()));
  std::printf("ledger: took over a %zu-byte ledger covering %lld records; all %d handled\n",
              text.size(), static_cast<long long>(covered + 1), kRecords);
}

}  // namespace
