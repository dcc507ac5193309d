// The flagship example on a broker, with the real launcher running the fake encoder:
// EncodeVideo -> EncodeVideoWorkflow -> launcher attempts -> VideoEncoded or the DLQ. The
// demo's three jobs end as the README says, and 200 concurrent workflows with mixed outcomes
// each end exactly once, correctly.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "encode_workflow.hpp"
#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/kafka/admin.hpp"
#include "services.hpp"
#include "video_endings.hpp"
#include "video_stack.hpp"

namespace {

using kbus::test::TestBroker;
using video_test::Stack;
using video_test::VideoEndings;
using namespace std::chrono_literals;

video::EncodeSettings Quick(int attempts) {
  video::EncodeSettings s;
  s.fake_seconds = 0.3;
  s.retry.initial_interval = 200ms;
  s.retry.maximum_interval = 1s;
  s.retry.maximum_attempts = attempts;
  s.run_timeout = 30s;
  s.heartbeat_interval = 500ms;
  s.heartbeat_timeout = 10s;
  return s;
}

TEST(VideoEncoding, TheDemosThreeJobsEndAsDescribed) {
  Stack stack(Quick(3), 4);
  const std::string p = TestBroker::UniqueName("v") + "-";
  VideoEndings observer(stack.events_topic, stack.dlq);
  stack.Send({p + "ok", "holiday.mp4", 720});
  stack.Send({p + "flaky", "flaky-2-interview.mp4", 720});
  stack.Send({p + "broken", "broken-upload.mp4", 720});

  auto ended = observer.Wait(3, 120s);
  ASSERT_EQ(ended.size(), 3u);
  EXPECT_EQ(ended[p + "ok"], std::vector<std::string>{"encoded:1"});
  EXPECT_EQ(ended[p + "flaky"], std::vector<std::string>{"encoded:3"}) << "failed twice, then encoded";
  EXPECT_EQ(ended[p + "broken"], std::vector<std::string>{"dlq:attempts-exhausted:3:failed"});
  // Published with the dead letter, on another topic: it may arrive after it.
  EXPECT_TRUE(kbus::test::WaitFor([&] { return observer.FailedEvents(p + "broken") >= 1; }))
      << "VideoEncodingFailed published";
  EXPECT_EQ(observer.FailedEvents(p + "broken"), 1) << "VideoEncodingFailed published once";
  // The fake encoder's result line is each finished job's result, for the console to serve.
  auto ok = stack.encoder->host().Instance(p + "ok");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->result_json, R"({"output":")" + p + R"(ok.mp4","frames":100})");
  EXPECT_GT(ok->result_expires_ms, 0);
  EXPECT_EQ(stack.encoder->host().Instance(p + "flaky")->result_json,
            R"({"output":")" + p + R"(flaky.mp4","frames":100})");
  EXPECT_EQ(stack.encoder->host().Instance(p + "broken")->result_json, "") << "a failed run has none";
  const auto stats = stack.encoder->host().Stats();
  EXPECT_EQ(stats.started, 3u);
  EXPECT_EQ(stats.completed, 2u);
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_GE(stats.timeouts_fired, 4u) << "two retries of flaky, two of broken";
}

TEST(VideoEncoding, TwoHundredConcurrentWorkflowsWithMixedOutcomesEachEndExactlyOnce) {
  video::EncodeSettings s = Quick(2);
  s.fake_seconds = 0.1;
  Stack stack(s, 16);
  const std::string p = TestBroker::UniqueName("m") + "-";
  VideoEndings observer(stack.events_topic, stack.dlq);
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 200; ++i) {
    const std::string id = p + std::to_string(i);
    switch (i % 3) {
      case 0:
        stack.Send({id, "ok.mp4", 720});
        expected[id] = "encoded:1";
        break;
      case 1:
        stack.Send({id, "flaky-1.mp4", 720});
        expected[id] = "encoded:2";
        break;
      default:
        stack.Send({id, "broken.mp4", 720});
        expected[id] = "dlq:attempts-exhausted:2:failed";
    }
  }
  observer.Wait(200, 300s);
  const auto ended = observer.Settle(2s);
  ASSERT_EQ(ended.size(), 200u) << "every workflow ended";
  EXPECT_EQ(observer.RepeatedEndings(), 0) << "nothing crashed, so no ending was sent twice";
  int wrong = 0;
  for (const auto& [id, endings] : ended) {
    if (endings != std::vector<std::string>{expected[id]}) {
      ++wrong;
      ADD_FAILURE() << id << " ended " << testing::PrintToString(endings) << ", expected " << expected[id];
      if (wrong > 5) break;
    }
  }
  const auto stats = stack.encoder->host().Stats();
  EXPECT_EQ(stats.started, 200u);
  EXPECT_EQ(stats.completed + stats.failed, 200u);
}

}  // namespace

namespace {

TEST(VideoEncoding, AStateTopicWithAnotherPartitionCountIsRefusedAtStart) {
  video::EncodeSettings s = Quick(2);
  s.name = TestBroker::UniqueName("skew") + ".encode";
  TestBroker::Get().CreateTopic(s.name + ".in", 4);
  TestBroker::Get().CreateTopic(s.name + ".state", 2);
  try {
    video::EncodeService service(it::WorkerConfigFor(TestBroker::UniqueName("skew-g")), s);
    FAIL() << "a host on topics that are not co-partitioned started";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(s.name + ".in has 4 partitions"), std::string::npos) << what;
    EXPECT_NE(what.find(s.name + ".state has 2"), std::string::npos) << what;
  }
}

}  // namespace

namespace {

// A host restarted on its topics must not wait on the admin API, which the embedded broker
// never answers; on Kafka a missing state topic gets the input topic's partition count.
TEST(WorkflowTopics, ExistingTopicsAreLeftAloneAndAMissingStateTopicFollowsTheInput) {
  kbus::kafka::ClientConfig client;
  client.brokers = TestBroker::Get().bootstrap();
  kbus::workflows::WorkflowOptions have;
  have.input_topic = TestBroker::UniqueName("have") + ".in";
  have.state_topic = have.input_topic + ".state";
  TestBroker::Get().CreateTopic(have.input_topic, 3);
  TestBroker::Get().CreateTopic(have.state_topic, 3);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(kbus::workflows::CreateWorkflowTopics(client, have, 4).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "the admin API was asked";

  if (TestBroker::Get().embedded()) return;  // no admin API to create the missing one
  kbus::workflows::WorkflowOptions half;
  half.input_topic = TestBroker::UniqueName("half") + ".in";
  half.state_topic = half.input_topic + ".state";
  TestBroker::Get().CreateTopic(half.input_topic, 2);
  ASSERT_TRUE(kbus::workflows::CreateWorkflowTopics(client, half, 4).ok());
  EXPECT_TRUE(kbus::test::WaitFor(
      [&] {
        auto topics = kbus::kafka::ListTopics(client);
        if (!topics.ok()) return false;
        return std::any_of(topics->begin(), topics->end(),
                           [&](const auto& t) { return t.name == half.state_topic && t.partitions == 2; });
      },
      30s))
      << "the state topic was made with the input topic's 2 partitions";
}

}  // namespace
