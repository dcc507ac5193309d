#include "kbus/testing/in_memory_bus.hpp"

#include <gtest/gtest.h>

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

}  // namespace
