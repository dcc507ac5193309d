#include "kbus/handler_registry.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "test_messages.hpp"

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

TEST(HandlerRegistry, TopicCanBeOverriddenPerHandler) {
  kbus::HandlerRegistry registry;
  registry.Handle<EncodeVideo>([](const EncodeVideo&, kbus::Context&) {}, {.topic = "video.priority"});
  EXPECT_EQ(registry.Topics(), std::vector<std::string>{"video.priority"});
  EXPECT_TRUE(registry.IsCommandTopic("video.priority"));
}

}  // namespace
