#pragma once
// The topics a video workflow test runs on, so that tests sharing one broker never meet.

#include <string>

#include "encode_workflow.hpp"
#include "test_broker.hpp"
#include "kbus/dead_letter.hpp"

namespace video_test {

// The workflow host's consumer group in these tests.
inline std::string WorkflowGroup(const std::string& tag) { return tag + "-wf"; }

// Names the workflow and every topic of `s` after a new tag made from `prefix`, and creates
// them before any group subscribes (a consumer notices a topic created later only at its next
// metadata refresh): the workflow's input and state, the launch and control topics with 4
// partitions each, the command and event topics with 2, and the dead-letter topic of
// WorkflowGroup(tag) with 1. Returns the tag.
inline std::string MakeTopics(video::EncodeSettings& s, const std::string& prefix) {
  auto& broker = kbus::test::TestBroker::Get();
  const std::string tag = kbus::test::TestBroker::UniqueName(prefix);
  s.name = tag + ".encode";
  s.command_topic = tag + ".commands";
  s.launcher_topic = tag + ".launcher";
  s.control_topic = tag + ".control";
  s.events_topic = tag + ".events";
  for (const auto& t : {s.name + ".in", s.name + ".state", s.launcher_topic, s.control_topic}) {
    broker.CreateTopic(t, 4);
  }
  broker.CreateTopic(s.command_topic, 2);
  broker.CreateTopic(s.events_topic, 2);
  broker.CreateTopic(kbus::DeadLetterTopic(WorkflowGroup(tag)), 1);
  return tag;
}

}  // namespace video_test
