// Bad input never stops a worker and is never lost: each kind lands in <group>.dlq with its
// reason and the original bytes, and the good records around it are handled.

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "it_support.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/envelope.hpp"

namespace {

using kbus::test::ReadRecord;
using kbus::test::ReadTopic;
using kbus::test::TestBroker;
using kbus::test::WaitFor;

kbus::OutgoingRecord Raw(const std::string& topic, std::string payload,
                         std::vector<kbus::Header> headers, std::string key = "k") {
  kbus::OutgoingRecord r;
  r.topic = topic;
  r.key = std::move(key);
  r.payload = std::move(payload);
  r.headers = std::move(headers);
  return r;
}

TEST(BadInput, EachKindGoesToTheDeadLetterTopicWithItsReasonAndTheWorkerGoesOn) {
  const std::string topic = TestBroker::UniqueName("it-bad");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);  // one partition: good and bad records interleave
  it::Tally tally;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>([&](const it::Work& w, kbus::Context&) { tally.Add(w.id); }, {.topic = topic});
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);

  const std::vector<kbus::Header> work_type = {{"kbus-type", "it.Work"}, {"kbus-id", "bad-1"}};
  const std::string one_mb = R"({"id":"not a number","tenant":")" + std::string(1'000'000 - 40, 'x') + R"("})";
  struct Case {
    std::string name;
    kbus::OutgoingRecord record;
    std::string reason;
    std::string error_fragment;
  };
  std::vector<Case> cases = {
      {"malformed", Raw(topic, R"({"id":1,)", work_type), "decode-error", "malformed JSON"},
      {"wrong-type", Raw(topic, R"({"id":"one","tenant":"t"})", work_type), "decode-error", "field 'id'"},
      {"unknown-type", Raw(topic, R"({"id":1})", {{"kbus-type", "it.Nobody"}}), "unknown-type", "it.Nobody"},
      {"empty", Raw(topic, "", work_type), "decode-error", "empty payload"},
      {"one-megabyte", Raw(topic, one_mb, work_type), "decode-error", "field 'id'"},
      {"no-headers", Raw(topic, R"({"id":2,"tenant":"t"})", {}), "unknown-type", "no kbus-type header"},
  };

  kbus::kafka::Producer producer(it::ProducerConfig());
  std::int64_t good = 0;
  auto send_good = [&] {
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{good++, "t", ""}, {.topic = topic})).ok());
  };
  send_good();
  for (auto& c : cases) {
    c.record.SetHeader("x-case", c.name);
    ASSERT_TRUE(producer.SendSync(c.record).ok()) << c.name;
    send_good();
  }
  // An event nobody in this group handles: skipped and counted, not dead-lettered.
  ASSERT_TRUE(producer.SendSync(Raw(topic, "{}", {{"kbus-type", "it.SomeoneElses"}, {"kbus-kind", "event"}})).ok());
  send_good();

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), cases.size(),
                             std::chrono::seconds(90));
  ASSERT_EQ(dlq.size(), cases.size());
  for (const auto& c : cases) {
    auto it = std::find_if(dlq.begin(), dlq.end(),
                           [&](const ReadRecord& r) { return r.FindHeader("x-case") == c.name; });
    ASSERT_NE(it, dlq.end()) << c.name << " is not in the dead-letter topic";
    EXPECT_EQ(it->FindHeader("kbus-dlq-reason"), c.reason) << c.name;
    EXPECT_NE(it->FindHeader("kbus-dlq-error").value_or("").find(c.error_fragment), std::string::npos)
        << c.name << ": " << it->FindHeader("kbus-dlq-error").value_or("");
    EXPECT_EQ(it->payload, c.record.payload) << c.name << ": the original bytes are kept";
    EXPECT_EQ(it->key, "k") << c.name;
    EXPECT_EQ(it->FindHeader("kbus-dlq-original-topic"), topic);
    EXPECT_EQ(it->FindHeader("kbus-dlq-group"), group);
    EXPECT_EQ(it->FindHeader("kbus-dlq-attempts"), "1") << "bad input is not retried";
    EXPECT_TRUE(it->FindHeader("kbus-dlq-original-offset").has_value());
    EXPECT_TRUE(it->FindHeader("kbus-dlq-host").has_value());
  }
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == static_cast<std::size_t>(good); }))
      << "good records after bad ones were not all handled";
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().skipped == 1; }));
  // The count follows the broker's acknowledgement, which may come after a reader saw the record.
  EXPECT_TRUE(WaitFor([&] { return worker.Stats().dead_lettered == cases.size(); }))
      << worker.Stats().dead_lettered;
}

TEST(BadInput, AHandlerThatKeepsFailingIsDeadLetteredAfterMaxDeliveries) {
  const std::string topic = TestBroker::UniqueName("it-fail");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  it::Tally tally;
  std::atomic<int> failing_runs{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) -> kbus::Outcome {
        if (w.tenant == "poison") {
          ++failing_runs;
          EXPECT_EQ(ctx.attempt(), failing_runs.load());
          throw std::runtime_error("cannot process tenant poison");
        }
        tally.Add(w.id);
        return kbus::Ack();
      },
      {.topic = topic});
  auto config = it::WorkerConfigFor(group);
  config.max_deliveries = 4;
  it::RunningWorker worker(config, handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{0, "ok", ""}, {.topic = topic})).ok());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{99, "poison", ""}, {.topic = topic})).ok());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{1, "ok", ""}, {.topic = topic})).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "handler-error");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-attempts"), "4");
  EXPECT_NE(dlq[0].FindHeader("kbus-dlq-error")->find("cannot process tenant poison"), std::string::npos);
  EXPECT_EQ(failing_runs.load(), 4);
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == 2; })) << "the record after the failing one waited forever";
  EXPECT_EQ(worker.Stats().retried, 3u);
}

TEST(BadInput, AMessageTypesPolicyOverridesTheWorkerAndItsBackoffIsRespected) {
  const std::string topic = TestBroker::UniqueName("it-policy");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> runs;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work&, kbus::Context&) {
        std::lock_guard lock(mu);
        runs.push_back(std::chrono::steady_clock::now());
        return kbus::Retry();
      },
      {.topic = topic,
       .policy = {.max_deliveries = 3,
                  .retry_backoff_initial = std::chrono::milliseconds(400),
                  .retry_backoff_max = std::chrono::milliseconds(400)}});
  auto config = it::WorkerConfigFor(group);
  config.max_deliveries = 10;  // the type's 3 wins
  it::RunningWorker worker(config, handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{1, "t", ""}, {.topic = topic})).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-attempts"), "3");
  std::lock_guard lock(mu);
  ASSERT_EQ(runs.size(), 3u);
  // Equal jitter: at least half the backoff is fixed, so no retry comes sooner than 200 ms.
  for (std::size_t i = 1; i < runs.size(); ++i) {
    EXPECT_GE(runs[i] - runs[i - 1], std::chrono::milliseconds(200)) << "retry " << i << " came early";
  }
}

TEST(BadInput, MessagesThatCanNeverBeSentAreSentAgainWithoutRerunningTheHandlerThenDeadLettered) {
  const std::string topic = TestBroker::UniqueName("it-unsendable");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  std::atomic<int> runs{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        ++runs;
        // Larger than any broker takes (message.max.bytes): no round of sends can succeed.
        ctx.SendRaw("it.Huge", kbus::MessageKind::kEvent, "\"" + std::string(2 << 20, 'x') + "\"",
                    {.topic = topic + "-out"});
        (void)w;
      },
      {.topic = topic, .policy = {.max_deliveries = 3}});
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  const kbus::OutgoingRecord sent = kbus::BuildRecord(it::Work{5, "t", ""}, {.topic = topic});
  ASSERT_TRUE(producer.SendSync(sent).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "publish-error");
  // The worker frees a record's parsed headers after a successful run; the copy, made later,
  // still carries every one of them.
  for (const kbus::Header& h : sent.headers) EXPECT_EQ(dlq[0].FindHeader(h.name), h.value) << h.name;
  EXPECT_NE(dlq[0].FindHeader("kbus-dlq-error").value_or("").find("3 rounds"), std::string::npos)
      << dlq[0].FindHeader("kbus-dlq-error").value_or("");
  EXPECT_EQ(runs.load(), 1) << "the handler ran again although only its sends failed";
}

}  // namespace
