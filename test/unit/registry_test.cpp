#include "kbus/handler_registry.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "test_messages.hpp"
#include "worker/delivery_policy.hpp"

namespace {

using kbus_test::EncodeVideo;
using kbus_test::VideoEncoded;

TEST(HandlerRegistry, RefusesASecondHandlerForTheSameType) {
  kbus::HandlerRegistry registry;
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
  try {
    registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
    FAIL() << "a duplicate registration was accepted";
  } catch (const std::logic_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("'test.EncodeVideo' already has a handler"));
  }
  EXPECT_EQ(registry.size(), 1u);
}

TEST(HandlerRegistry, ListsTopicsAndKnowsWhichCarryCommands) {
  kbus::HandlerRegistry registry;
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {});
  registry.Handle<VideoEncoded>([](const VideoEncoded&, kbus::Context&) {});
  EXPECT_EQ(registry.Topics(), (std::vector<std::string>{"test.commands", "test.events"}));
  EXPECT_TRUE(registry.IsCommandTopic("test.commands"));
  EXPECT_FALSE(registry.IsCommandTopic("test.events"));
  ASSERT_NE(registry.Find("test.EncodeVideo"), nullptr);
  EXPECT_EQ(registry.Find("test.EncodeVideo")->kind, kbus::MessageKind::kCommand);
  EXPECT_EQ(registry.Find("nope"), nullptr);
}

TEST(HandlerRegistry, RefusesAnImpossibleDeliveryPolicy) {
  kbus::HandlerRegistry registry;
  auto noop = [](const EncodeVideo&, kbus::Context&) {};
  EXPECT_THROW(registry.Handle<EncodeVideo>(noop, {.policy = {.max_deliveries = 0}}), std::logic_error);
  EXPECT_THROW(registry.Handle<EncodeVideo>(
                   noop, {.policy = {.retry_backoff_initial = std::chrono::seconds(2),
                                     .retry_backoff_max = std::chrono::seconds(1)}}),
               std::logic_error);
  EXPECT_THROW(registry.Handle<EncodeVideo>(noop, {.policy = {.visibility_timeout = std::chrono::milliseconds(0)}}),
               std::logic_error);
  EXPECT_THROW(registry.Handle<EncodeVideo>(noop, {.policy = {.local_attempts = 0}}), std::logic_error);
  EXPECT_THROW(registry.Handle<EncodeVideo>(
                   noop, {.policy = {.retry_tiers = std::vector<std::chrono::milliseconds>{std::chrono::milliseconds(-1)}}}),
               std::logic_error);
  EXPECT_EQ(registry.size(), 0u);
  registry.Handle<EncodeVideo>(noop, {.policy = {.max_deliveries = 2}});
  EXPECT_EQ(registry.Find("test.EncodeVideo")->policy.max_deliveries, 2);
}

// ---- one type on several topics ---------------------------------------------------------------

// A handler that says which of them ran.
auto Marks(std::string& ran, std::string mark) {
  return [&ran, mark](const VideoEncoded&, kbus::Context&) { ran = mark; };
}

TEST(HandlerRegistry, TakesTheSameTypeOnTwoTopics) {
  kbus::HandlerRegistry registry;
  std::string ran;
  registry.Handle<VideoEncoded>(Marks(ran, "a"), {.topic = "a.in", .policy = {.max_deliveries = 2}});
  registry.Handle<VideoEncoded>(Marks(ran, "b"), {.topic = "b.in", .policy = {.max_deliveries = 7}});
  EXPECT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.Topics(), (std::vector<std::string>{"a.in", "b.in"}));
  EXPECT_EQ(registry.TopicsOf("test.VideoEncoded"), (std::vector<std::string>{"a.in", "b.in"}));
  const auto routes = registry.Routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0]->topic, "a.in") << "in the order registered";
  EXPECT_EQ(routes[1]->topic, "b.in");

  const kbus::HandlerRegistry::Route* a = registry.Find("test.VideoEncoded", "a.in");
  const kbus::HandlerRegistry::Route* b = registry.Find("test.VideoEncoded", "b.in");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->topic, "a.in");
  EXPECT_EQ(b->topic, "b.in");
  EXPECT_EQ(a->policy.max_deliveries, 2) << "each route keeps its own policy";
  EXPECT_EQ(b->policy.max_deliveries, 7);
}

TEST(HandlerRegistry, RefusesTheSameTypeTwiceOnOneTopicNamingBoth) {
  kbus::HandlerRegistry registry;
  std::string ran;
  registry.Handle<VideoEncoded>(Marks(ran, "a"), {.topic = "a.in"});
  try {
    registry.Handle<VideoEncoded>(Marks(ran, "again"), {.topic = "a.in"});
    FAIL() << "a second handler on the same topic was accepted";
  } catch (const std::logic_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("'test.VideoEncoded' already has a handler on topic 'a.in'"));
  }
  // A lane is a topic too: a route whose lanes include a.in overlaps, and so does a plain route
  // on a topic another route reads as a lane.
  EXPECT_THROW(registry.Handle<VideoEncoded>(Marks(ran, "lanes"), {.lanes = {{"x.in", 2}, {"a.in", 1}}}),
               std::logic_error);
  registry.Handle<VideoEncoded>(Marks(ran, "lanes"), {.lanes = {{"u.urgent", 4}, {"u.bulk", 1}}});
  EXPECT_THROW(registry.Handle<VideoEncoded>(Marks(ran, "bulk"), {.topic = "u.bulk"}), std::logic_error);
  EXPECT_EQ(registry.size(), 2u) << "what was refused left nothing behind";
  EXPECT_EQ(registry.Topics(), (std::vector<std::string>{"a.in", "u.bulk", "u.urgent"}));
}

TEST(HandlerRegistry, FindFallsBackToATypesOnlyRoute) {
  kbus::HandlerRegistry registry;
  std::string ran;
  registry.Handle<VideoEncoded>(Marks(ran, "a"), {.topic = "a.in"});
  // One route: whatever topic a record of the type came from (a workflow host's re-keyed copy
  // arrives on the workflow's input topic, not on the route's).
  ASSERT_NE(registry.Find("test.VideoEncoded", "elsewhere"), nullptr);
  EXPECT_EQ(registry.Find("test.VideoEncoded", "elsewhere")->topic, "a.in");
  EXPECT_EQ(registry.Find("test.VideoEncoded"), registry.Find("test.VideoEncoded", "a.in"));
  EXPECT_EQ(registry.Find("nope", "a.in"), nullptr);
  EXPECT_TRUE(registry.TopicsOf("nope").empty());

  // Two routes: the one on the topic, a lane's included; none on another topic, and no only one.
  registry.Handle<VideoEncoded>(Marks(ran, "lanes"), {.lanes = {{"u.urgent", 4}, {"u.bulk", 1}}});
  EXPECT_EQ(registry.Find("test.VideoEncoded", "a.in")->topic, "a.in");
  ASSERT_NE(registry.Find("test.VideoEncoded", "u.bulk"), nullptr);
  EXPECT_EQ(registry.Find("test.VideoEncoded", "u.bulk")->lanes.size(), 2u);
  EXPECT_EQ(registry.Find("test.VideoEncoded", "elsewhere"), nullptr);
  EXPECT_EQ(registry.Find("test.VideoEncoded"), nullptr) << "which of two is not for Find(type) to guess";
  EXPECT_EQ(registry.TopicsOf("test.VideoEncoded"), (std::vector<std::string>{"a.in", "u.bulk", "u.urgent"}));
}

TEST(HandlerRegistry, ACommandTopicIsOneThatSomeRouteReadsCommandsOn) {
  kbus::HandlerRegistry registry;
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {}, {.topic = "a.in"});
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {}, {.topic = "b.in"});
  EXPECT_TRUE(registry.IsCommandTopic("a.in"));
  EXPECT_TRUE(registry.IsCommandTopic("b.in"));
  EXPECT_FALSE(registry.IsCommandTopic("test.commands"));
}

TEST(HandlerRegistry, TheWorkersPolicyIsPerTypeAndTopic) {
  kbus::HandlerRegistry registry;
  std::string ran;
  registry.Handle<VideoEncoded>(Marks(ran, "a"), {.topic = "a.in", .policy = {.max_deliveries = 2}});
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {}, {.policy = {.max_deliveries = 3}});
  kbus::kafka::WorkerConfig config;
  config.max_deliveries = 9;
  kbus::kafka::worker::DeliveryPolicies policies(config, registry);
  EXPECT_EQ(policies.MaxDeliveries(policies.Of("test.VideoEncoded", "a.in")), 2);
  EXPECT_EQ(policies.MaxDeliveries(policies.Of("test.VideoEncoded")), 2) << "the only route";
  registry.Handle<VideoEncoded>(Marks(ran, "b"), {.topic = "b.in", .policy = {.max_deliveries = 7}});
  EXPECT_EQ(policies.MaxDeliveries(policies.Of("test.VideoEncoded", "a.in")), 2);
  EXPECT_EQ(policies.MaxDeliveries(policies.Of("test.VideoEncoded", "b.in")), 7);
  EXPECT_EQ(policies.MaxDeliveries(policies.Of("test.VideoEncoded", "c.in")), 9) << "no route there: the worker's";
  EXPECT_EQ(policies.MaxDeliveries(policies.Of("test.VideoEncoded")), 9) << "two routes: no guess";
  EXPECT_EQ(policies.MaxDeliveries(policies.Of("test.EncodeVideo", "anywhere")), 3);
}

TEST(HandlerRegistry, TopicCanBeOverriddenPerHandler) {
  kbus::HandlerRegistry registry;
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {}, {.topic = "video.priority"});
  EXPECT_EQ(registry.Topics(), std::vector<std::string>{"video.priority"});
  EXPECT_TRUE(registry.IsCommandTopic("video.priority"));
}

}  // namespace
