#include "kbus/testing/in_memory_bus.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../../examples/quickstart/handlers.hpp"
#include "test_messages.hpp"

namespace {

TEST(InMemoryBus, RunsTheQuickstartChainWithoutABroker) {
  kbus::HandlerRegistry handlers;
  shop::RegisterHandlers(handlers);
  kbus::testing::InMemoryBus bus(handlers);
  bus.Send(shop::PlaceOrder{"o-1", "beans", 3});
  bus.RunUntilIdle();

  const auto completed = bus.Messages<shop::OrderCompleted>();
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0].order_id, "o-1");
  EXPECT_EQ(completed[0].charged_cents, 3 * shop::kUnitPriceCents);
  // The event belongs to the conversation the order started.
  const auto& order = bus.Records("shop.commands").front();
  const auto& event = bus.Records("shop.events").front();
  EXPECT_EQ(event.FindHeader("kbus-correlation-id"), order.FindHeader("kbus-id"));
  EXPECT_TRUE(bus.DeadLetters().empty());
}

TEST(InMemoryBus, AnInvalidOrderIsDeadLetteredAsRejected) {
  kbus::HandlerRegistry handlers;
  shop::RegisterHandlers(handlers);
  kbus::testing::InMemoryBus bus(handlers, {.group = "shop"});
  bus.Send(shop::PlaceOrder{"o-2", "beans", 0});
  bus.RunUntilIdle();
  ASSERT_EQ(bus.DeadLetters().size(), 1u);
  EXPECT_EQ(bus.DeadLetters()[0].topic, "shop.dlq");
  EXPECT_EQ(bus.DeadLetters()[0].FindHeader("kbus-dlq-reason"), "rejected");
  EXPECT_TRUE(bus.Messages<shop::ChargeCard>().empty());
}

TEST(InMemoryBus, RetriesAFailingHandlerUpToMaxDeliveriesThenDeadLetters) {
  kbus::HandlerRegistry handlers;
  int calls = 0;
  handlers.Handle<kbus_test::EncodeVideo>([&](const kbus_test::EncodeVideo&, kbus::Context& ctx) {
    ++calls;
    EXPECT_EQ(ctx.attempt(), calls);
    return kbus::Retry();
  });
  kbus::testing::InMemoryBus bus(handlers, {.group = "g", .max_deliveries = 3});
  bus.Send(kbus_test::EncodeVideo{.video_id = "v"});
  bus.RunUntilIdle();
  EXPECT_EQ(calls, 3);
  ASSERT_EQ(bus.DeadLetters().size(), 1u);
  EXPECT_EQ(bus.DeadLetters()[0].FindHeader("kbus-dlq-reason"), "handler-error");
  EXPECT_EQ(bus.DeadLetters()[0].FindHeader("kbus-dlq-attempts"), "3");
}

TEST(InMemoryBus, AMessageTypesOwnPolicyBeatsTheBusDefault) {
  kbus::HandlerRegistry handlers;
  int calls = 0;
  handlers.Handle<kbus_test::EncodeVideo>(
      [&](const kbus_test::EncodeVideo&, kbus::Context&) {
        ++calls;
        return kbus::Retry();
      },
      {.policy = {.max_deliveries = 2}});
  kbus::testing::InMemoryBus bus(handlers, {.group = "g", .max_deliveries = 5});
  bus.Send(kbus_test::EncodeVideo{.video_id = "v"});
  bus.RunUntilIdle();
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(bus.DeadLetters().size(), 1u);
  EXPECT_EQ(bus.DeadLetters()[0].FindHeader("kbus-dlq-attempts"), "2");
}

TEST(InMemoryBus, AHandlerThatRecoversIsNotDeadLettered) {
  kbus::HandlerRegistry handlers;
  int calls = 0;
  handlers.Handle<kbus_test::EncodeVideo>([&](const kbus_test::EncodeVideo& v, kbus::Context& ctx) {
    if (++calls < 3) throw std::runtime_error("flaky");
    ctx.Publish(kbus_test::VideoEncoded{v.video_id});
    return kbus::Ack();
  });
  kbus::testing::InMemoryBus bus(handlers);
  bus.Send(kbus_test::EncodeVideo{.video_id = "v"});
  bus.RunUntilIdle();
  EXPECT_EQ(bus.Messages<kbus_test::VideoEncoded>().size(), 1u) << "only the successful attempt publishes";
  EXPECT_TRUE(bus.DeadLetters().empty());
}

// What one delivery looked like to the handler.
struct Seen {
  std::int32_t partition;
  std::int64_t offset;
  std::string video_id;
  bool operator==(const Seen&) const = default;
};

kbus::OutgoingRecord VideoRecord(const std::string& id, std::int32_t partition) {
  kbus::OutgoingRecord r = kbus::BuildRecord(kbus_test::EncodeVideo{.video_id = id}, {});
  r.partition = partition;
  return r;
}

TEST(InMemoryBus, DeliversARecordOnItsPartitionWithOffsetsCountedPerPartition) {
  kbus::HandlerRegistry handlers;
  std::vector<Seen> seen;
  handlers.Handle<kbus_test::EncodeVideo>([&](const kbus_test::EncodeVideo& v, kbus::Context& ctx) {
    seen.push_back({ctx.record().partition, ctx.record().offset, v.video_id});
    return kbus::Ack();
  });
  kbus::testing::InMemoryBus bus(handlers);
  bus.Append(VideoRecord("a", 2));
  bus.Append(VideoRecord("b", 2));
  bus.Append(VideoRecord("c", -1));
  bus.Append(VideoRecord("d", 0));
  bus.RunUntilIdle();
  EXPECT_EQ(seen, (std::vector<Seen>{{2, 0, "a"}, {2, 1, "b"}, {0, 0, "c"}, {0, 1, "d"}}))
      << "the partitioner's choice (-1) is partition 0";
  const auto& stored = bus.Records("test.commands");
  ASSERT_EQ(stored.size(), 4u);
  EXPECT_EQ(stored[0].partition, 2);
  EXPECT_EQ(stored[2].partition, -1) << "kept as sent";
}

TEST(InMemoryBus, ShowsTheRecordsAHandlerSentWithTheirPartitionAndTombstone) {
  kbus::HandlerRegistry handlers;
  handlers.Handle<kbus_test::EncodeVideo>([](const kbus_test::EncodeVideo& v, kbus::Context& ctx) {
    kbus::OutgoingRecord state{.topic = "test.state", .key = v.video_id, .payload = "{}"};
    state.partition = ctx.record().partition;  // a state record beside its input
    ctx.AddOutgoing(std::move(state));
    ctx.AddOutgoing(kbus::CancelDelayed("m-1"));
    return kbus::Ack();
  });
  kbus::testing::InMemoryBus bus(handlers);
  bus.Append(VideoRecord("v", 3));
  bus.RunUntilIdle();
  ASSERT_EQ(bus.Records("test.state").size(), 1u);
  EXPECT_EQ(bus.Records("test.state")[0].partition, 3);
  EXPECT_FALSE(bus.Records("test.state")[0].tombstone);
  const auto& pending = bus.Records(kbus::kDefaultPendingTopic);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_TRUE(pending[0].tombstone);
  EXPECT_EQ(pending[0].key, "m-1");
}

// Context::WriteAhead: the record is stored before the handler's messages, its verdict says
// so before they leave, and a handler that fails stores and tells nothing.
TEST(InMemoryBus, StoresWriteAheadRecordsFirstAndTellsTheHandler) {
  kbus::HandlerRegistry handlers;
  std::vector<std::string> seen;  // what the verdict found stored, in order
  kbus::testing::InMemoryBus* bus_ptr = nullptr;
  handlers.Handle<kbus_test::EncodeVideo>([&](const kbus_test::EncodeVideo& v, kbus::Context& ctx) {
    if (v.height == 0) {
      ctx.WriteAhead({.topic = "test.state", .key = v.video_id, .payload = "{\"never\":1}"});
      ctx.OnWriteAheadVerdict([&](const kbus::Status&) { seen.push_back("verdict of a failed run"); });
      return kbus::DeadLetter("no height");
    }
    ctx.Publish(kbus_test::VideoEncoded{v.video_id});
    ctx.WriteAhead({.topic = "test.state", .key = v.video_id, .payload = "{\"step\":1}"});
    ctx.OnWriteAheadVerdict([&](const kbus::Status& s) {
      seen.push_back(std::string(s.ok() ? "ok" : "error") + " states=" +
                     std::to_string(bus_ptr->Records("test.state").size()) +
                     " events=" + std::to_string(bus_ptr->Records("test.events").size()));
    });
    return kbus::Ack();
  });
  kbus::testing::InMemoryBus bus(handlers);
  bus_ptr = &bus;
  bus.Send(kbus_test::EncodeVideo{.video_id = "v", .height = 720});
  bus.Send(kbus_test::EncodeVideo{.video_id = "w", .height = 0});
  bus.RunUntilIdle();
  EXPECT_THAT(seen, testing::ElementsAre("ok states=1 events=0"));
  ASSERT_EQ(bus.Records("test.state").size(), 1u);
  EXPECT_EQ(bus.Records("test.state")[0].payload, "{\"step\":1}");
  EXPECT_EQ(bus.Records("test.events").size(), 1u);
  EXPECT_EQ(bus.DeadLetters().size(), 1u);
}

TEST(InMemoryBus, DeliversATombstoneAsTheWorkerDoesSoItNeverReachesAHandler) {
  kbus::HandlerRegistry handlers;
  int calls = 0;
  handlers.Handle<kbus_test::EncodeVideo>([&](const kbus_test::EncodeVideo&, kbus::Context&) {
    ++calls;
    return kbus::Ack();
  });
  handlers.Handle<kbus_test::VideoEncoded>([&](const kbus_test::VideoEncoded&, kbus::Context&) {
    ++calls;
    return kbus::Ack();
  });
  kbus::testing::InMemoryBus bus(handlers, {.group = "g"});
  // A typed tombstone, whose payload (ignored, as the producer ignores it) would decode.
  kbus::OutgoingRecord typed = VideoRecord("v", -1);
  typed.tombstone = true;
  bus.Append(typed);
  // Tombstones without a type, as CancelDelayed and compaction write them.
  bus.Append({.topic = "test.commands", .key = "k", .tombstone = true});
  bus.Append({.topic = "test.events", .key = "k", .tombstone = true});
  bus.RunUntilIdle();

  EXPECT_EQ(calls, 0);
  EXPECT_EQ(bus.handled(), 0u);
  EXPECT_EQ(bus.skipped(), 1u) << "an event topic's tombstone is skipped";
  ASSERT_EQ(bus.DeadLetters().size(), 2u);
  EXPECT_EQ(bus.DeadLetters()[0].FindHeader("kbus-dlq-reason"), "decode-error");
  EXPECT_THAT(std::string(bus.DeadLetters()[0].FindHeader("kbus-dlq-error").value_or("")),
              ::testing::HasSubstr("empty payload"));
  EXPECT_EQ(bus.DeadLetters()[1].FindHeader("kbus-dlq-reason"), "unknown-type");
  EXPECT_TRUE(bus.Messages<kbus_test::EncodeVideo>().empty()) << "a tombstone is no message";
}

}  // namespace
