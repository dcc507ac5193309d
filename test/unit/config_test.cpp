#include "kbus/kafka/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <stdexcept>

#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/testing/matchers.hpp"

namespace {

using kbus::ErrorCode;
using kbus::kafka::WorkerConfig;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using ::testing::HasSubstr;

WorkerConfig Valid() {
  WorkerConfig c;
  c.group = "g";
  return c;
}

TEST(WorkerConfig, DefaultsWithAGroupAreValid) { EXPECT_THAT(kbus::kafka::Validate(Valid()), IsOk()); }

TEST(WorkerConfig, ValidationNamesTheOption) {
  auto c = Valid();
  c.group.clear();
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--group")));
  c = Valid();
  c.assignment_strategy = "sticky-ish";
  EXPECT_THAT(kbus::kafka::Validate(c),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--assignment-strategy 'sticky-ish'")));
  c = Valid();
  c.max_deliveries = 0;
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--max-deliveries")));
  c = Valid();
  c.client.brokers.clear();
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--brokers")));
  c = Valid();
  c.session_timeout = std::chrono::milliseconds(10);
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--session-timeout-ms")));
}

TEST(WorkerConfig, PoolOrderingVisibilityAndTiersAreChecked) {
  auto c = Valid();
  EXPECT_EQ(c.handler_threads, 8);
  EXPECT_EQ(c.ordering, kbus::kafka::Ordering::kKey);
  EXPECT_EQ(c.visibility_timeout, std::chrono::seconds(30));
  c.handler_threads = 0;
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--handler-threads")));
  c = Valid();
  c.visibility_timeout = std::chrono::milliseconds(0);
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--visibility-timeout-ms")));
  c = Valid();
  EXPECT_FALSE(c.producer_linger);  // the worker's 1 ms
  c.producer_linger = std::chrono::milliseconds(1001);
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--producer-linger-ms")));
  c.producer_linger = std::chrono::milliseconds(-1);
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--producer-linger-ms")));
  c.producer_linger = std::chrono::milliseconds(0);
  EXPECT_TRUE(kbus::kafka::Validate(c).ok());
  c = Valid();
  c.retry_tiers = {std::chrono::seconds(10), std::chrono::milliseconds(0)};
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--retry-tier")));
  c = Valid();
  c.local_attempts = 0;
  EXPECT_THAT(kbus::kafka::Validate(c), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--local-attempts")));
}

TEST(WorkerConfig, OrderingNamesRoundTripAndUnknownOnesAreRefused) {
  for (auto o : {kbus::kafka::Ordering::kKey, kbus::kafka::Ordering::kPartition, kbus::kafka::Ordering::kUnordered}) {
    auto parsed = kbus::kafka::ParseOrdering(kbus::kafka::OrderingName(o));
    ASSERT_THAT(parsed, IsOk());
    EXPECT_EQ(*parsed, o);
  }
  EXPECT_THAT(kbus::kafka::ParseOrdering("Key"), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("'Key'")));
}

TEST(WorkerConfig, RetryTierTopicsNameTheirDelayInTheLargestWholeUnit) {
  using std::chrono::milliseconds;
  EXPECT_EQ(kbus::kafka::RetryTierTopic("orders", milliseconds(10000)), "orders.retry.10s");
  EXPECT_EQ(kbus::kafka::RetryTierTopic("orders", milliseconds(60000)), "orders.retry.1m");
  EXPECT_EQ(kbus::kafka::RetryTierTopic("orders", milliseconds(600000)), "orders.retry.10m");
  EXPECT_EQ(kbus::kafka::RetryTierTopic("orders", milliseconds(7200000)), "orders.retry.2h");
  EXPECT_EQ(kbus::kafka::RetryTierTopic("orders", milliseconds(90000)), "orders.retry.90s");
  EXPECT_EQ(kbus::kafka::RetryTierTopic("orders", milliseconds(1500)), "orders.retry.1500ms");
}

TEST(WorkerConfig, ConsumerCommitsOnlyWhatKbusMarksFinished) {
  auto props = kbus::kafka::ConsumerProperties(Valid());
  EXPECT_EQ(props["enable.auto.commit"], "false");
  EXPECT_EQ(props["enable.auto.offset.store"], "false");
  EXPECT_EQ(props["auto.offset.reset"], "earliest");
  EXPECT_EQ(props["group.id"], "g");
  EXPECT_EQ(props["partition.assignment.strategy"], "range");
}

TEST(ProducerConfig, ProducerIsIdempotentAndPartitionsLikeJavaClients) {
  auto props = kbus::kafka::ProducerProperties({});
  EXPECT_EQ(props["enable.idempotence"], "true");
  EXPECT_EQ(props["acks"], "all");
  EXPECT_EQ(props["partitioner"], "murmur2_random");
}

TEST(WorkerConfig, WorkerRefusesAnInvalidConfigurationAtConstruction) {
  kbus::HandlerRegistry handlers;
  auto c = Valid();
  c.group.clear();
  EXPECT_THROW(kbus::kafka::Worker(c, handlers), std::invalid_argument);
}

TEST(ProducerConfig, ARawPropertyLibrdkafkaRefusesIsNamed) {
  kbus::kafka::ProducerConfig c;
  c.client.properties["linger.mss"] = "5";
  try {
    kbus::kafka::Producer p(c);
    FAIL() << "an unknown property was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("'linger.mss'"));
  }
}

TEST(Secrets, AreMaskedWhenPrinted) {
  std::ostringstream os;
  os << kbus::kafka::Secret("hunter2");
  EXPECT_EQ(os.str(), "***");
  const std::string described = kbus::kafka::DescribeProperties(
      {{"sasl.password", "hunter2"}, {"ssl.key.password", "p@ss"}, {"linger.ms", "5"}});
  EXPECT_THAT(described, ::testing::Not(HasSubstr("hunter2")));
  EXPECT_THAT(described, ::testing::Not(HasSubstr("p@ss")));
  EXPECT_THAT(described, HasSubstr("sasl.password=***"));
  EXPECT_THAT(described, HasSubstr("linger.ms=5"));
}

}  // namespace
