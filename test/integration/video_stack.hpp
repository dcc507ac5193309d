#pragma once
// The video example's launcher and workflow host, each in its own group, on topics of the test's
// own (video_topics.hpp), running the fake encoder: what the video and console tests drive.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "encode_workflow.hpp"
#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "services.hpp"
#include "video_topics.hpp"

namespace video_test {

struct Stack {
  explicit Stack(video::EncodeSettings s, int max_processes) {
    using namespace std::chrono_literals;
    tag = MakeTopics(s, "vid");
    s.encoder = "fake";
    settings = s;
    events_topic = s.events_topic;
    command_topic = s.command_topic;
    group = WorkflowGroup(tag);
    dlq = kbus::DeadLetterTopic(group);
    auto allow = kbus::handlers::AllowList::Parse("fake-encoder = " FAKE_ENCODER_PATH "\n");
    EXPECT_TRUE(allow.ok());
    kbus::handlers::LauncherConfig lc;
    lc.max_processes = max_processes;
    lc.kill_grace = 1s;
    lc.default_heartbeat = 1s;
    lc.host = "test";
    lc.reply_topics = {s.name + ".in"};  // the workflow's input, where DelegatedCommand wants its events
    launcher = std::make_unique<video::LauncherService>(it::WorkerConfigFor(tag + "-launcher"), std::move(*allow), lc,
                                                        s.launcher_topic, s.control_topic);
    encoder = std::make_unique<video::EncodeService>(it::WorkerConfigFor(group), s);
    launcher_thread = std::thread([this] { launcher->Run(); });
    encoder_thread = std::thread([this] { encoder->Run(); });
  }
  ~Stack() {
    encoder->Stop();
    launcher->Stop();
    encoder_thread.join();
    launcher_thread.join();
  }
  void Send(const video::EncodeVideo& v) { ASSERT_TRUE(producer.Send(v, {.topic = command_topic}).ok()); }

  video::EncodeSettings settings;
  std::string tag, command_topic, events_topic, group, dlq;
  kbus::kafka::Producer producer{it::ProducerConfig()};
  std::unique_ptr<video::LauncherService> launcher;
  std::unique_ptr<video::EncodeService> encoder;
  std::thread launcher_thread, encoder_thread;
};

}  // namespace video_test
