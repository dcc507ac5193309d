#include "kbus/dispatcher.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "kbus/uuid.hpp"
#include "fake_record.hpp"
#include "test_messages.hpp"

namespace {

using kbus::DispatchResult;
using kbus_test::EncodeVideo;
using kbus_test::FakeRecord;
using kbus_test::RecordOf;
using kbus_test::VideoEncoded;
using ::testing::HasSubstr;

class DispatcherTest : public ::testing::Test {
 protected:
  kbus::HandlerRegistry registry;
  kbus::Dispatcher dispatcher{registry};
};

TEST_F(DispatcherTest, AckSendsTheHandlersOutgoingMessages) {
  registry.Handle<EncodeVideo>([](const EncodeVideo& v, kbus::Context& ctx) {
    ctx.Publish(VideoEncoded{v.video_id});
    return kbus::Ack();
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  ASSERT_EQ(r.kind, DispatchResult::Kind::kAck);
  ASSERT_EQ(r.outgoing.size(), 1u);
  EXPECT_EQ(r.outgoing[0].topic, "test.events");
  EXPECT_EQ(r.outgoing[0].payload, R"({"video_id":"v1"})");
  EXPECT_EQ(r.outgoing[0].FindHeader("kbus-type"), "test.VideoEncoded");
  EXPECT_EQ(r.outgoing[0].FindHeader("kbus-kind"), "event");
}

TEST_F(DispatcherTest, TheHandlerSeesTheDeliveryCountTheTransportKept) {
  int seen_count = -1, seen_attempt = -1;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context& ctx) {
    seen_count = ctx.envelope().delivery_count;
    seen_attempt = ctx.attempt();
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  ASSERT_EQ(dispatcher.Dispatch(rec.View(), 3).kind, DispatchResult::Kind::kAck);
  EXPECT_EQ(seen_attempt, 3);
  EXPECT_EQ(seen_count, 2) << "two deliveries came before the third";
  ASSERT_EQ(dispatcher.Dispatch(rec.View(), 1).kind, DispatchResult::Kind::kAck);
  EXPECT_EQ(seen_count, 0);
}

TEST_F(DispatcherTest, DropsOutgoingMessagesWhenTheHandlerAsksForARetry) {
  registry.Handle<EncodeVideo>([](const EncodeVideo& v, kbus::Context& ctx) {
    ctx.Publish(VideoEncoded{v.video_id});
    return kbus::Retry(std::chrono::seconds(3), "encoder busy");
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kRetry);
  EXPECT_EQ(r.retry_after, std::chrono::seconds(3));
  EXPECT_EQ(r.error, "encoder busy");
  EXPECT_TRUE(r.outgoing.empty());
}

TEST_F(DispatcherTest, DropsOutgoingMessagesWhenTheHandlerThrows) {
  registry.Handle<EncodeVideo>([](const EncodeVideo& v, kbus::Context& ctx) -> kbus::Outcome {
    ctx.Publish(VideoEncoded{v.video_id});
    throw std::runtime_error("disk full");
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kRetry);
  EXPECT_THAT(r.error, HasSubstr("disk full"));
  EXPECT_TRUE(r.outgoing.empty());
}

TEST_F(DispatcherTest, DropsOutgoingMessagesWhenTheHandlerDeadLetters) {
  registry.Handle<EncodeVideo>([](const EncodeVideo& v, kbus::Context& ctx) {
    ctx.Publish(VideoEncoded{v.video_id});
    return kbus::DeadLetter("corrupt source file");
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(r.reason, "rejected");
  EXPECT_EQ(r.error, "corrupt source file");
  EXPECT_TRUE(r.outgoing.empty());
}

TEST_F(DispatcherTest, VoidHandlersAck) {
  int calls = 0;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context&) { ++calls; });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  EXPECT_EQ(dispatcher.Dispatch(rec.View(), 1).kind, DispatchResult::Kind::kAck);
  EXPECT_EQ(calls, 1);
}

TEST_F(DispatcherTest, OutgoingMessagesInheritCorrelationWorkflowAndTrace) {
  registry.Handle<EncodeVideo>([](const EncodeVideo& v, kbus::Context& ctx) {
    ctx.Publish(VideoEncoded{v.video_id});
    ctx.Publish(VideoEncoded{v.video_id + "-again"});
    return kbus::Ack();
  });
  kbus::SendOptions options;
  options.workflow_id = "wf-7";
  options.headers.push_back({"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"});
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"}, options);
  const kbus::Envelope parent = kbus::ParseEnvelope(rec.View().headers);

  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  ASSERT_EQ(r.outgoing.size(), 2u);
  const auto& child = r.outgoing[0];
  EXPECT_EQ(child.FindHeader("kbus-correlation-id"), parent.correlation_id);
  EXPECT_EQ(child.FindHeader("kbus-causation-id"), parent.message_id);
  EXPECT_EQ(child.FindHeader("kbus-workflow-id"), "wf-7");
  EXPECT_EQ(child.FindHeader("traceparent"), parent.traceparent);
  EXPECT_EQ(child.key, "wf-7") << "one workflow's messages share a partition";
  EXPECT_NE(child.FindHeader("kbus-id"), parent.message_id);
  EXPECT_NE(r.outgoing[1].FindHeader("kbus-id"), child.FindHeader("kbus-id"));
}

TEST_F(DispatcherTest, AHandlerThatRunsTwiceSendsTheSameMessageIds) {
  registry.Handle<EncodeVideo>([](const EncodeVideo& v, kbus::Context& ctx) {
    ctx.Publish(VideoEncoded{v.video_id});
    return kbus::Ack();
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  const auto first = dispatcher.Dispatch(rec.View(), 1);
  const auto second = dispatcher.Dispatch(rec.View(), 2);
  ASSERT_EQ(first.outgoing.size(), 1u);
  ASSERT_EQ(second.outgoing.size(), 1u);
  EXPECT_EQ(first.outgoing[0].FindHeader("kbus-id"), second.outgoing[0].FindHeader("kbus-id"));
}

TEST_F(DispatcherTest, TopLevelMessagesStartTheirOwnCorrelation) {
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  const kbus::Envelope e = kbus::ParseEnvelope(rec.View().headers);
  EXPECT_EQ(e.correlation_id, e.message_id);
  EXPECT_TRUE(e.causation_id.empty());
  EXPECT_EQ(rec.key, e.correlation_id);
  EXPECT_GT(e.sent_at_ms, 1'600'000'000'000);
}

TEST_F(DispatcherTest, ASenderMayJoinAnExistingConversation) {
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"}, {.correlation_id = "conv-9"});
  const kbus::Envelope e = kbus::ParseEnvelope(rec.View().headers);
  EXPECT_EQ(e.correlation_id, "conv-9");
  EXPECT_NE(e.message_id, "conv-9");
  EXPECT_EQ(rec.key, "conv-9") << "one conversation's messages share a partition";
}

TEST_F(DispatcherTest, HandlerSeesEnvelopeAndAttempt) {
  std::string seen_id;
  int seen_attempt = 0;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context& ctx) {
    seen_id = std::string(ctx.envelope().message_id);
    seen_attempt = ctx.attempt();
    EXPECT_EQ(ctx.record().partition, 3);
    EXPECT_EQ(ctx.record().offset, 42);
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  dispatcher.Dispatch(rec.View(), 4);
  EXPECT_EQ(seen_id, kbus::ParseEnvelope(rec.View().headers).message_id);
  EXPECT_EQ(seen_attempt, 4);
}

TEST_F(DispatcherTest, DeadLettersAnUnknownCommandType) {
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
  FakeRecord rec = RecordOf(kbus_test::Unhandled{"x"});
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(r.reason, "unknown-type");
  EXPECT_THAT(r.error, HasSubstr("test.Unhandled"));
}

TEST_F(DispatcherTest, RoutesATypeByTheTopicItWasReadFrom) {
  std::string ran;
  registry.Handle<VideoEncoded>([&](const VideoEncoded&, kbus::Context&) { ran = "a"; }, {.topic = "a.in"});
  registry.Handle<VideoEncoded>([&](const VideoEncoded&, kbus::Context&) { ran = "b"; }, {.topic = "b.in"});
  FakeRecord rec = RecordOf(VideoEncoded{"v"}, {.topic = "b.in"});
  ASSERT_EQ(dispatcher.Dispatch(rec.View(), 1).kind, DispatchResult::Kind::kAck);
  EXPECT_EQ(ran, "b");
  rec.topic = "a.in";
  ASSERT_EQ(dispatcher.Dispatch(rec.View(), 1).kind, DispatchResult::Kind::kAck);
  EXPECT_EQ(ran, "a");

  // A copy in a retry tier goes to the route of the topic it was first read from.
  ran.clear();
  rec.topic = "g.retry.5s";
  rec.headers.push_back({std::string(kbus::header::kRetryTopic), "b.in"});
  ASSERT_EQ(dispatcher.Dispatch(rec.View(), 2).kind, DispatchResult::Kind::kAck);
  EXPECT_EQ(ran, "b");
}

TEST_F(DispatcherTest, ATypeWithSeveralRoutesNoneOnTheTopicIsUnknownThereNamingItsTopics) {
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {}, {.topic = "a.in"});
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {}, {.topic = "b.in"});
  registry.Handle<VideoEncoded>([](const VideoEncoded&, kbus::Context&) {}, {.topic = "a.in"});
  registry.Handle<VideoEncoded>([](const VideoEncoded&, kbus::Context&) {}, {.topic = "b.in"});
  FakeRecord command = RecordOf(EncodeVideo{.video_id = "v1"}, {.topic = "c.in"});
  DispatchResult r = dispatcher.Dispatch(command.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(r.reason, "unknown-type");
  EXPECT_THAT(r.error, HasSubstr("no handler for type 'test.EncodeVideo' on topic 'c.in'"));
  EXPECT_THAT(r.error, HasSubstr("has handlers only on topics 'a.in', 'b.in'"));
  // An event is skipped there, as an event type nobody here handles is.
  FakeRecord event = RecordOf(VideoEncoded{"v"}, {.topic = "c.in"});
  EXPECT_EQ(dispatcher.Dispatch(event.View(), 1).kind, DispatchResult::Kind::kSkip);
}

TEST_F(DispatcherTest, SkipsAnEventTypeThisGroupDoesNotHandle) {
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
  FakeRecord rec = RecordOf(VideoEncoded{"v"});
  rec.topic = "test.commands";  // even on a command topic, the kbus-kind header says event
  EXPECT_EQ(dispatcher.Dispatch(rec.View(), 1).kind, DispatchResult::Kind::kSkip);
}

TEST_F(DispatcherTest, WithoutAKindHeaderTheTopicDecides) {
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
  registry.Handle<VideoEncoded>([](const VideoEncoded&, kbus::Context&) {});
  FakeRecord on_commands{"test.commands", "k", "{}", {{"kbus-type", "other.Thing"}}, {}};
  FakeRecord on_events{"test.events", "k", "{}", {{"kbus-type", "other.Thing"}}, {}};
  EXPECT_EQ(dispatcher.Dispatch(on_commands.View(), 1).kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(dispatcher.Dispatch(on_events.View(), 1).kind, DispatchResult::Kind::kSkip);
}

TEST_F(DispatcherTest, DeadLettersACommandWithoutTypeHeader) {
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
  FakeRecord rec{"test.commands", "k", R"({"video_id":"v"})", {}, {}};
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(r.reason, "unknown-type");
  EXPECT_THAT(r.error, HasSubstr("no kbus-type header"));
}

TEST_F(DispatcherTest, DeadLettersUndecodablePayloadsWithTheFieldName) {
  int calls = 0;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context&) { ++calls; });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  rec.payload = R"({"video_id":"v1","height":"tall"})";
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(r.reason, "decode-error");
  EXPECT_THAT(r.error, HasSubstr("field 'height'"));
  rec.payload = "{not json";
  EXPECT_THAT(dispatcher.Dispatch(rec.View(), 1).error, HasSubstr("malformed JSON at byte 1"));
  rec.payload = "";
  EXPECT_THAT(dispatcher.Dispatch(rec.View(), 1).error, HasSubstr("empty payload"));
  EXPECT_EQ(calls, 0);
}

TEST_F(DispatcherTest, SurvivesPathologicalPayloads) {
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  // Nesting deep enough to overflow the stack of a recursive parser.
  rec.payload = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(r.reason, "decode-error");
  EXPECT_THAT(r.error, HasSubstr("nests deeper than 128 levels"));
  // Around the depth limit, in arrays and in objects.
  for (std::size_t depth : {128u, 129u, 1025u}) {
    rec.payload = std::string(depth, '[') + std::string(depth, ']');
    EXPECT_EQ(dispatcher.Dispatch(rec.View(), 1).reason, "decode-error") << depth;
  }
  rec.payload = std::string("{\"video_id\":\"\xff\xfe\x00\",\"x\":1}", 25);  // bad UTF-8, a NUL
  EXPECT_EQ(dispatcher.Dispatch(rec.View(), 1).reason, "decode-error");
  rec.payload = "{\"video_id\":\"\xff\xfe\",\"x\":1}";
  r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.reason, "decode-error");
  EXPECT_THAT(r.error, HasSubstr("field 'video_id' is not valid UTF-8"));
}

TEST_F(DispatcherTest, DeadLettersARecordWhoseInheritedEnvelopeHeadersAreNotUtf8) {
  int calls = 0;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context&) { ++calls; });
  for (const char* name : {"kbus-id", "kbus-correlation-id", "kbus-workflow-id", "traceparent"}) {
    FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
    rec.headers.push_back({name, "ok\xc3\x28"});
    const DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
    EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter) << name;
    EXPECT_EQ(r.reason, "decode-error") << name;
    EXPECT_THAT(r.error, HasSubstr("header '" + std::string(name) + "' is not valid UTF-8"));
  }
  EXPECT_EQ(calls, 0) << "nothing the handler sends may inherit those bytes";
}

TEST_F(DispatcherTest, AHandlerSendingAStringThatIsNotUtf8FailsItsAttemptAndSendsNothing) {
  registry.Handle<EncodeVideo>([](const EncodeVideo& v, kbus::Context& ctx) {
    ctx.Publish(VideoEncoded{v.video_id});
    ctx.Publish(VideoEncoded{v.video_id + "\xff"});
    return kbus::Ack();
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  const DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kRetry);
  EXPECT_THAT(r.error, HasSubstr("test.VideoEncoded: cannot encode as JSON: field 'video_id' is not valid UTF-8"));
  EXPECT_TRUE(r.outgoing.empty());
}

TEST_F(DispatcherTest, SendRawRefusesAPayloadOrKbusHeaderThatIsNotUtf8) {
  std::string what;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context& ctx) {
    try {
      ctx.SendRaw("test.Raw", kbus::MessageKind::kCommand, "{\"a\":\"\xff\"}", {.topic = "t"});
    } catch (const kbus::EncodeError& e) {
      what = e.what();
    }
    ctx.SendRaw("test.Raw", kbus::MessageKind::kCommand, "{}",
                {.topic = "t", .headers = {{"kbus-idempotency-key", "\xc0\xaf"}}});
    return kbus::Ack();
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  const DispatchResult r = dispatcher.Dispatch(rec.View(), 1);
  EXPECT_THAT(what, HasSubstr("test.Raw: cannot send the payload: field 'a' is not valid UTF-8"));
  EXPECT_EQ(r.kind, DispatchResult::Kind::kRetry);
  EXPECT_THAT(r.error, HasSubstr("header 'kbus-idempotency-key' is not valid UTF-8"));
  EXPECT_TRUE(r.outgoing.empty());
}

TEST_F(DispatcherTest, AnExceptionThePolicyCallsNonRetryableIsDeadLetteredAtOnce) {
  registry.Handle<EncodeVideo>(
      [](const EncodeVideo& v, kbus::Context&) {
        if (v.video_id == "bad") throw std::invalid_argument("codec 'xyz' is not supported");
        throw std::runtime_error("storage unavailable");
      },
      {.policy = {.non_retryable = [](const std::exception& e) {
         return dynamic_cast<const std::invalid_argument*>(&e) != nullptr;
       }}});
  FakeRecord bad = RecordOf(EncodeVideo{.video_id = "bad"});
  DispatchResult r = dispatcher.Dispatch(bad.View(), 1);
  EXPECT_EQ(r.kind, DispatchResult::Kind::kDeadLetter);
  EXPECT_EQ(r.reason, kbus::reason::kNonRetryable);
  EXPECT_THAT(r.error, HasSubstr("codec 'xyz' is not supported"));
  FakeRecord flaky = RecordOf(EncodeVideo{.video_id = "v"});
  EXPECT_EQ(dispatcher.Dispatch(flaky.View(), 1).kind, DispatchResult::Kind::kRetry);
}

TEST_F(DispatcherTest, APredicateThatThrowsLeavesTheFailureRetryable) {
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) { throw std::runtime_error("x"); },
                               {.policy = {.non_retryable = [](const std::exception&) -> bool {
                                  throw std::logic_error("buggy predicate");
                                }}});
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v"});
  EXPECT_EQ(dispatcher.Dispatch(rec.View(), 1).kind, DispatchResult::Kind::kRetry);
}

TEST_F(DispatcherTest, TheHandlerSeesItsDeadlineAndCancellation) {
  kbus::Visibility visibility(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  bool extended = false, cancelled_seen = false;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context& ctx) {
    const auto before = ctx.Deadline();
    extended = ctx.ExtendVisibility(std::chrono::seconds(60)) && ctx.Deadline() > before;
    visibility.Cancel();  // as the worker does when it abandons the delivery
    cancelled_seen = ctx.Cancelled() && !ctx.ExtendVisibility(std::chrono::seconds(60));
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v"});
  dispatcher.Dispatch(rec.View(), 1, &visibility);
  EXPECT_TRUE(extended);
  EXPECT_TRUE(cancelled_seen);
}

TEST_F(DispatcherTest, WithoutAVisibilityAHandlerHasNoDeadline) {
  bool ok = false;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context& ctx) {
    ok = ctx.Deadline() == std::chrono::steady_clock::time_point::max() && !ctx.Cancelled() &&
         ctx.ExtendVisibility(std::chrono::seconds(1));
  });
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v"});
  dispatcher.Dispatch(rec.View(), 1);
  EXPECT_TRUE(ok);
}

}  // namespace

TEST_F(DispatcherTest, AHandlerKeepsItsDeliverysSlotPastItsReturn) {
  auto slots = std::make_shared<kbus::Slots>(1);
  kbus::SlotHold kept;
  registry.Handle<EncodeVideo>([&](const EncodeVideo&, kbus::Context& ctx) {
    kept = ctx.KeepSlot();
    EXPECT_FALSE(ctx.KeepSlot()) << "kept once";
  });
  ASSERT_TRUE(slots->TryTake());
  kbus::SlotHold delivery_slot(slots);
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  EXPECT_EQ(dispatcher.Dispatch(rec.View(), 1, nullptr, &delivery_slot).kind, DispatchResult::Kind::kAck);
  EXPECT_FALSE(delivery_slot) << "the handler took it";
  EXPECT_TRUE(kept);
  EXPECT_EQ(slots->in_use(), 1);
  kept.Release();
  EXPECT_EQ(slots->in_use(), 0);
}
