// Two delegated workflows in one worker, on a broker: the video example's EncodeService hosts
// EncodeVideoWorkflow and ThumbnailWorkflow in one group, the real launcher runs the fake encoder
// for both, and its events come back to each workflow's own input topic. Both jobs of a clip
// finish, retries included, and neither workflow hears the other's launches.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "encode_workflow.hpp"
#include "it_support.hpp"
#include "services.hpp"
#include "thumbnail_workflow.hpp"
#include "video_endings.hpp"
#include "video_topics.hpp"

namespace {

using kbus::test::TestBroker;
using namespace std::chrono_literals;

// The launcher and one EncodeService hosting both workflows, on topics of this test's own.
struct TwoWorkflowStack {
  TwoWorkflowStack() {
    settings.fake_seconds = 0.4;
    settings.retry.initial_interval = 200ms;
    settings.retry.maximum_interval = 1s;
    settings.retry.maximum_attempts = 3;
    settings.run_timeout = 30s;
    settings.heartbeat_interval = 500ms;
    settings.heartbeat_timeout = 10s;
    tag = video_test::MakeTopics(settings, "vth");
    settings.encoder = "fake";
    thumbnails.name = tag + ".thumbnail";
    // The embedded broker needs every topic before a group subscribes to it.
    TestBroker::Get().CreateTopic(thumbnails.name + ".in", 4);
    TestBroker::Get().CreateTopic(thumbnails.name + ".state", 4);
    auto allow = kbus::handlers::AllowList::Parse("fake-encoder = " FAKE_ENCODER_PATH "\n");
    EXPECT_TRUE(allow.ok());
    kbus::handlers::LauncherConfig lc;
    lc.max_processes = 4;
    lc.kill_grace = 1s;
    lc.default_heartbeat = 500ms;
    lc.host = "test";
    lc.reply_topics = {settings.name + ".in", thumbnails.name + ".in"};
    launcher = std::make_unique<video::LauncherService>(it::WorkerConfigFor(tag + "-launcher"), std::move(*allow), lc,
                                                        settings.launcher_topic, settings.control_topic);
    service = std::make_unique<video::EncodeService>(it::WorkerConfigFor(video_test::WorkflowGroup(tag)), settings,
                                                     thumbnails);
    launcher_thread = std::thread([this] { launcher->Run(); });
    service_thread = std::thread([this] { service->Run(); });
  }
  ~TwoWorkflowStack() {
    service->Stop();
    launcher->Stop();
    service_thread.join();
    launcher_thread.join();
  }

  std::string tag;
  video::EncodeSettings settings;
  video::ThumbnailSettings thumbnails;
  kbus::kafka::Producer producer{it::ProducerConfig()};
  std::unique_ptr<video::LauncherService> launcher;
  std::unique_ptr<video::EncodeService> service;
  std::thread launcher_thread, service_thread;
};

TEST(VideoThumbnail, OneWorkerHostsTheEncodingAndTheThumbnailAndBothJobsOfAClipFinish) {
  TwoWorkflowStack stack;
  video_test::VideoEndings endings(stack.settings.events_topic,
                                   kbus::DeadLetterTopic(video_test::WorkflowGroup(stack.tag)));
  const std::string p = TestBroker::UniqueName("c") + "-";
  // Each job of the flaky clip fails its first attempt: its retry's events must find their way too.
  for (const auto& [id, source] : {std::pair<std::string, std::string>{p + "ok", "holiday.mp4"},
                                   {p + "flaky", "flaky-1-interview.mp4"}}) {
    const kbus::SendOptions to{.topic = stack.settings.command_topic};
    ASSERT_TRUE(stack.producer.Send(video::EncodeVideo{id, source, 720}, to).ok());
    ASSERT_TRUE(stack.producer.Send(video::MakeThumbnail{id, source, 180, 1}, to).ok());
  }

  auto ended = endings.WaitForEndings(4, 120s);
  // The two jobs' events have different keys (VIDEO_ID, VIDEO_ID.thumbnail): in either order.
  for (auto& [id, what] : ended) std::sort(what.begin(), what.end());
  EXPECT_EQ(ended[p + "ok"], (std::vector<std::string>{"encoded:1", "thumbnail:1"}));
  EXPECT_EQ(ended[p + "flaky"], (std::vector<std::string>{"encoded:2", "thumbnail:2"})) << "each failed once";

  kbus::workflows::WorkflowHost& encode = stack.service->host();
  kbus::workflows::WorkflowHost* thumbnail = stack.service->thumbnail_host();
  ASSERT_NE(thumbnail, nullptr);
  for (const std::string clip : {"ok", "flaky"}) {
    auto e = encode.Instance(p + clip);
    auto t = thumbnail->Instance(p + clip + ".thumbnail");
    ASSERT_TRUE(e.has_value() && t.has_value()) << clip;
    EXPECT_EQ(e->status, "completed") << clip;
    EXPECT_EQ(t->status, "completed") << clip;
    // The fake encoder's result line, as each job's launches asked for it.
    EXPECT_EQ(e->result_json, R"({"output":")" + p + clip + R"(.mp4","frames":100})");
    EXPECT_EQ(t->result_json, R"({"output":")" + p + clip + R"(.jpg","frames":50})");
  }
  EXPECT_FALSE(encode.Instance(p + "ok.thumbnail").has_value()) << "a thumbnail's run is not the encoder's";
  EXPECT_FALSE(thumbnail->Instance(p + "ok").has_value());
  // An event that reached the wrong workflow would find no instance of its job id there.
  const auto es = encode.Stats();
  const auto ts = thumbnail->Stats();
  EXPECT_EQ(es.started, 2u);
  EXPECT_EQ(es.completed, 2u);
  EXPECT_EQ(ts.started, 2u);
  EXPECT_EQ(ts.completed, 2u);
  EXPECT_EQ(es.not_found, 0u) << "the encoding heard no thumbnail's events";
  EXPECT_EQ(ts.not_found, 0u) << "the thumbnail heard no encoding's events";
}

}  // namespace
