// Delayed messages end to end, on both brokers: a message sent with a delay reaches its topic at
// its time, never early, with its envelope unchanged; a cancelled one never arrives; pending
// messages survive the scheduler's restart; what kbus refuses is refused with the field named.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "kbus/context.hpp"
#include "kbus/envelope.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/message.hpp"
#include "kbus/testing/matchers.hpp"
#include "kbus/testing/matchers.hpp"
#include "schedules_it_support.hpp"

namespace reminders {
struct Remind {
  std::string text;
};
}  // namespace reminders

template <>
struct kbus::MessageTraits<reminders::Remind> {
  static constexpr std::string_view kType = "test.Remind";
  static constexpr MessageKind kKind = MessageKind::kCommand;
  static constexpr std::string_view kTopic = "test.reminders";
  static constexpr auto kFields = kbus::Fields(kbus::Field("text", &reminders::Remind::text));
};

namespace {

using kbus::ErrorCode;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using sit::Follower;
using sit::ProducerOptions;
using sit::Running;
using sit::TestBroker;
using kbus::test::WaitFor;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

struct Sent {
  std::string id;
  std::int64_t due_ms;
};

Sent SendDelayed(kbus::kafka::Producer& producer, const kbus::schedules::SchedulerConfig& config,
                 const std::string& topic, const std::string& text, std::chrono::milliseconds delay) {
  kbus::SendOptions options;
  options.topic = topic;
  options.delay = delay;
  options.pending_topic = config.pending_topic;
  options.headers = {{"x-app", "reminders"}};
  kbus::OutgoingRecord r = kbus::BuildRecord(reminders::Remind{text}, options);
  EXPECT_THAT(producer.SendSync(r), IsOk());
  return {std::string(r.FindHeader(kbus::header::kId).value()),
          std::stoll(std::string(r.FindHeader(kbus::header::kDeliverAt).value()))};
}

TEST(Delayed, ArrivesAtItsTimeNeverEarlyWithItsEnvelope) {
  auto config = sit::Config("delayed-time");
  const std::string target = TestBroker::UniqueName("reminders");
  TestBroker::Get().CreateTopic(target, 2);
  Follower arrived(target);
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return scheduler.Ready(4); }, 30s)) << "the scheduler owns and loaded its 4 partitions";

  kbus::kafka::Producer producer(ProducerOptions());
  std::vector<Sent> sent;
  for (int i = 0; i < 5; ++i) {
    sent.push_back(SendDelayed(producer, config, target, "r" + std::to_string(i), std::chrono::milliseconds(1500 + 300 * i)));
  }
  EXPECT_EQ(arrived.Count(), 0u) << "nothing reaches the topic before its time";
  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= sent.size(); }, 30s));

  for (const auto& a : arrived.Arrivals()) {
    const auto id = a.Header(std::string(kbus::header::kId));
    ASSERT_TRUE(id.has_value());
    auto it = std::find_if(sent.begin(), sent.end(), [&](const Sent& s) { return s.id == *id; });
    ASSERT_NE(it, sent.end()) << "the delivered copy keeps the id it was sent with";
    // The record's timestamp is when the scheduler produced it.
    EXPECT_GE(a.record.timestamp_ms, it->due_ms) << "never early";
    EXPECT_LE(a.record.timestamp_ms, it->due_ms + 1000) << "within 1 s of its time";
    EXPECT_EQ(a.Header(std::string(kbus::header::kType)), "test.Remind");
    EXPECT_EQ(a.Header("x-app"), "reminders") << "application headers travel with it";
    EXPECT_EQ(a.Header(std::string(kbus::header::kDeliverAt)), std::to_string(it->due_ms));
    EXPECT_FALSE(a.Header(std::string(kbus::header::kDeliverTopic)).has_value());
    EXPECT_EQ(a.record.key, std::optional<std::string>(a.Header(std::string(kbus::header::kCorrelationId))))
        << "the key it would have had if sent at once (its correlation id)";
  }
  EXPECT_EQ(arrived.Count(), sent.size()) << "each once";
  EXPECT_TRUE(WaitFor([&] { return scheduler.scheduler().Stats().pending == 0; }, 10s))
      << "delivered messages leave the pending topic (tombstones)";
}

TEST(Delayed, MessagesDueLaterThanThePrefetchAreReadBackAndArriveOnTime) {
  // With a prefetch of 3 s, messages due 5 to 7 s later are not kept when they are first read:
  // each is read back from Kafka shortly before its time (from half the prefetch before it).
  auto config = sit::Config("delayed-readback");
  config.prefetch = 3s;
  const std::string target = TestBroker::UniqueName("reminders");
  TestBroker::Get().CreateTopic(target, 2);
  Follower arrived(target);
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return scheduler.Ready(4); }, 30s));
  kbus::kafka::Producer producer(ProducerOptions());
  std::map<std::string, std::int64_t> due;
  for (int i = 0; i < 40; ++i) {
    const Sent s = SendDelayed(producer, config, target, "r" + std::to_string(i), std::chrono::milliseconds(5000 + 50 * i));
    due[s.id] = s.due_ms;
  }
  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= due.size(); }, 60s));
  for (const auto& a : arrived.Arrivals()) {
    const std::int64_t d = due.at(a.Header(std::string(kbus::header::kId)).value_or(""));
    EXPECT_GE(a.record.timestamp_ms, d) << "never early";
    EXPECT_LE(a.record.timestamp_ms, d + 1000) << "within 1 s of its time";
  }
  EXPECT_EQ(arrived.Count(), due.size());
}

TEST(Delayed, ACancelledMessageNeverArrives) {
  auto config = sit::Config("delayed-cancel");
  const std::string target = TestBroker::UniqueName("reminders");
  TestBroker::Get().CreateTopic(target, 1);
  Follower arrived(target);
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return scheduler.Ready(4); }, 30s));
  kbus::kafka::Producer producer(ProducerOptions());
  const Sent cancelled = SendDelayed(producer, config, target, "cancel me", 2s);
  const Sent kept = SendDelayed(producer, config, target, "keep me", 3s);
  ASSERT_THAT(producer.SendSync(kbus::CancelDelayed(cancelled.id, config.pending_topic)), IsOk());

  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= 1; }, 30s));
  // The kept one was due a second after the cancelled one: had the cancel been lost, the
  // cancelled message would have come first.
  const auto all = arrived.Arrivals();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].Header(std::string(kbus::header::kId)), kept.id);
}

TEST(Delayed, PendingMessagesSurviveARestartOfTheScheduler) {
  auto config = sit::Config("delayed-restart");
  const std::string target = TestBroker::UniqueName("reminders");
  TestBroker::Get().CreateTopic(target, 1);
  Follower arrived(target);
  kbus::kafka::Producer producer(ProducerOptions());
  std::vector<Sent> sent;
  {
    Running first(config);
    ASSERT_TRUE(WaitFor([&] { return first.Ready(4); }, 30s));
    for (int i = 0; i < 20; ++i) sent.push_back(SendDelayed(producer, config, target, "r", 4s));
    ASSERT_TRUE(WaitFor([&] { return first.scheduler().Stats().pending == sent.size(); }, 10s));
  }  // stopped before any was due
  EXPECT_EQ(arrived.Count(), 0u);
  Running second(config);
  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= sent.size(); }, 60s))
      << "a new scheduler reads the pending topic and delivers them";
  std::set<std::string> ids;
  for (const auto& a : arrived.Arrivals()) {
    ids.insert(a.Header(std::string(kbus::header::kId)).value_or(""));
    EXPECT_GE(a.record.timestamp_ms, sent.front().due_ms) << "never early";
  }
  EXPECT_EQ(ids.size(), sent.size()) << "every one of them, with its id";
}

TEST(Delayed, MessagesDueWhileNoSchedulerRanArriveWhenOneStarts) {
  auto config = sit::Config("delayed-overdue");
  const std::string target = TestBroker::UniqueName("reminders");
  TestBroker::Get().CreateTopic(target, 1);
  Follower arrived(target);
  kbus::kafka::Producer producer(ProducerOptions());
  const Sent sent = SendDelayed(producer, config, target, "late", 200ms);
  std::this_thread::sleep_for(500ms);  // it is due before any scheduler runs: the point of the test
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return arrived.Count() >= 1; }, 60s));
  EXPECT_EQ(arrived.Arrivals()[0].Header(std::string(kbus::header::kId)), sent.id);
}

TEST(Delayed, EveryMessageOfALongTopicIsLoaded) {
  // Many more records than the scheduler handles between two looks at the clock (10,000):
  // none may fall between two batches.
  auto config = sit::Config("delayed-load", 4);
  const std::string target = TestBroker::UniqueName("reminders");
  kbus::kafka::Producer producer(ProducerOptions());
  constexpr int kMessages = 40000;  // about 3 MB per partition: within the embedded broker's 5 MiB
  std::atomic<int> failed{0};
  for (int i = 0; i < kMessages; ++i) {
    kbus::SendOptions options;
    options.topic = target;
    options.delay = 24h;
    options.pending_topic = config.pending_topic;
    ASSERT_THAT(producer.Produce(kbus::BuildRecord(reminders::Remind{"r"}, options),
                                 [&](const kbus::Status& s) { if (!s.ok()) ++failed; }),
                IsOk());
  }
  ASSERT_THAT(producer.Flush(60s), IsOk());
  ASSERT_EQ(failed.load(), 0);
  Running scheduler(config);
  ASSERT_TRUE(WaitFor([&] { return scheduler.Ready(8); }, 60s));
  EXPECT_EQ(scheduler.scheduler().Stats().pending, static_cast<std::uint64_t>(kMessages));
}

TEST(Delayed, ARecordThatCannotBeDeliveredIsDeadLetteredWithItsReason) {
  auto config = sit::Config("delayed-bad", 1);
  const std::string dlq = config.group + ".dlq";
  TestBroker::Get().CreateTopic(dlq, 1);
  Follower dead(dlq);
  Running scheduler(config);
  kbus::kafka::Producer producer(ProducerOptions());
  kbus::OutgoingRecord bad;  // no destination, no time: not something kbus wrote
  bad.topic = config.pending_topic;
  bad.key = "not-a-kbus-record";
  bad.payload = "{\"x\":1}";
  ASSERT_THAT(producer.SendSync(bad), IsOk());
  ASSERT_TRUE(WaitFor([&] { return dead.Count() >= 1; }, 30s));
  const auto a = dead.Arrivals()[0];
  EXPECT_EQ(a.Header(std::string(kbus::header::kDlqReason)), "bad-pending-record");
  EXPECT_THAT(a.Header(std::string(kbus::header::kDlqError)).value_or(""), HasSubstr("kbus-deliver-topic"));
  EXPECT_EQ(a.record.payload, bad.payload) << "nothing lost";
  EXPECT_TRUE(WaitFor([&] { return scheduler.scheduler().Stats().pending == 0; }, 10s));
}

TEST(Delayed, ADelayBeyondThePendingTopicsLimitIsRefused) {
  kbus::kafka::Producer producer(ProducerOptions());
  kbus::SendOptions options;
  options.delay = kbus::kMaxDelay + 24h;
  EXPECT_THAT(producer.Send(reminders::Remind{"next year"}, options),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("delay: 366d is beyond the pending topic's limit of 365d")));
  kbus::SendOptions both;
  both.delay = 1s;
  both.deliver_at = std::chrono::system_clock::now() + 1h;
  EXPECT_THAT(producer.Send(reminders::Remind{"twice"}, both),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("delay or deliver_at, not both")));
  kbus::SendOptions negative;
  negative.delay = -1s;
  EXPECT_THAT(producer.Send(reminders::Remind{"past"}, negative),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("delay is negative")));
}

}  // namespace
