// The envelope and application headers survive the trip through a real broker, and a handler's
// outgoing messages carry the sticky ids.

#include <gtest/gtest.h>

#include <mutex>

#include "it_support.hpp"

namespace {

using kbus::test::ReadTopic;
using kbus::test::TestBroker;
using kbus::test::WaitFor;

TEST(Envelope, HeadersSurviveTheRoundTripAndPropagateToOutgoingMessages) {
  const std::string in_topic = TestBroker::UniqueName("it-env-in");
  const std::string out_topic = TestBroker::UniqueName("it-env-out");
  TestBroker::Get().CreateTopic(in_topic, 2);
  TestBroker::Get().CreateTopic(out_topic, 2);

  const std::string binary("bin\0ary\xff", 8);
  std::mutex mu;
  std::map<std::string, std::string> seen;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        {
          std::lock_guard lock(mu);
          const auto& e = ctx.envelope();
          seen["type"] = e.type;
          seen["id"] = e.message_id;
          seen["correlation"] = e.correlation_id;
          seen["workflow"] = e.workflow_id;
          seen["traceparent"] = e.traceparent;
          seen["tenant-header"] = ctx.record().FindHeader("x-tenant").value_or("");
          seen["binary-header"] = ctx.record().FindHeader("x-binary").value_or("");
          seen["key"] = ctx.record().key;
          seen["body"] = w.body;
        }
        ctx.Publish(it::WorkDone{w.id}, {.topic = out_topic});
        return kbus::Ack();
      },
      {.topic = in_topic});
  it::RunningWorker worker(it::WorkerConfigFor(TestBroker::UniqueName("g")), handlers);

  kbus::kafka::Producer producer(it::ProducerConfig());
  kbus::SendOptions options;
  options.topic = in_topic;
  options.workflow_id = "wf-42";
  options.headers = {{"x-tenant", "acme"},
                     {"x-binary", binary},
                     {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}};
  const std::string body = "unicode ✓ and \"quotes\"";
  kbus::OutgoingRecord sent = kbus::BuildRecord(it::Work{7, "acme", body}, options);
  ASSERT_TRUE(producer.SendSync(sent).ok());

  auto events = ReadTopic(TestBroker::Get().bootstrap(), out_topic, 1, std::chrono::seconds(60));
  ASSERT_EQ(events.size(), 1u);
  std::lock_guard lock(mu);
  EXPECT_EQ(seen["type"], "it.Work");
  EXPECT_EQ(seen["id"], *sent.FindHeader("kbus-id"));
  EXPECT_EQ(seen["correlation"], *sent.FindHeader("kbus-id"));
  EXPECT_EQ(seen["workflow"], "wf-42");
  EXPECT_EQ(seen["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(seen["tenant-header"], "acme");
  EXPECT_EQ(seen["binary-header"], binary) << "header values are bytes, NULs included";
  EXPECT_EQ(seen["key"], "wf-42");
  EXPECT_EQ(seen["body"], body);

  const auto& e = events[0];
  EXPECT_EQ(e.FindHeader("kbus-type"), "it.WorkDone");
  EXPECT_EQ(e.FindHeader("kbus-kind"), "event");
  EXPECT_EQ(e.FindHeader("kbus-causation-id"), *sent.FindHeader("kbus-id"));
  EXPECT_EQ(e.FindHeader("kbus-correlation-id"), *sent.FindHeader("kbus-id"));
  EXPECT_EQ(e.FindHeader("kbus-workflow-id"), "wf-42");
  EXPECT_EQ(e.FindHeader("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(e.key, "wf-42");
  EXPECT_EQ(e.payload, R"({"id":7})");
}

}  // namespace
