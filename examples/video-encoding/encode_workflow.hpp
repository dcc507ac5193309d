#pragma once
// EncodeVideoWorkflow: an EncodeVideo command becomes launcher attempts, followed to the end by
// a DelegatedCommand workflow: VideoEncoded on success, retries with backoff on a failed,
// timed-out or silent attempt, and after the last attempt the command in the dead-letter topic
// and VideoEncodingFailed.

#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>

#include "kbus/workflows/delegated_command.hpp"
#include "messages.hpp"

namespace video {

struct EncodeSettings {
  std::string name = "video.encode";  // the workflow: topics video.encode.in and .state
  std::string command_topic;          // where EncodeVideo arrives; default video.commands
  std::string launcher_topic{kbus::handlers::kLauncherTopic};
  std::string control_topic{kbus::handlers::kLauncherControlTopic};
  std::string events_topic;  // VideoEncoded and VideoEncodingFailed; default video.events
  kbus::workflows::WorkflowOptions workflow;
  kbus::workflows::RetryPolicy retry;  // 30 s, x2, at most 10 min apart, 5 attempts, ±10 %
  std::chrono::milliseconds run_timeout{std::chrono::minutes(90)};
  std::chrono::milliseconds heartbeat_interval{std::chrono::seconds(10)};
  std::chrono::milliseconds heartbeat_timeout{0};  // 0: 3 heartbeats
  // "ffmpeg" runs the allow-list's ffmpeg; "fake" the fake encoder, which plays a job from the
  // source's name: "broken..." always fails, "flaky-N..." fails its first N attempts, anything
  // else succeeds (the demo and the tests use it).
  std::string encoder = "ffmpeg";
  double fake_seconds = 2;  // how long a fake encoding runs
};

inline kbus::workflows::LaunchSpec EncoderLaunch(const EncodeVideo& v, int attempt, const EncodeSettings& s) {
  if (s.encoder != "fake") {
    return {"ffmpeg", {"-i", v.source, "-vf", "scale=-2:" + std::to_string(v.height), v.source + "." +
                       std::to_string(v.height) + "p.mp4"}, {}};
  }
  kbus::workflows::LaunchSpec spec{"fake-encoder", {"--seconds", std::to_string(s.fake_seconds), "--steps", "4"}, {}};
  int fails = 0;
  if (v.source.starts_with("broken")) {
    fails = attempt;
  } else if (v.source.starts_with("flaky-")) {
    fails = std::atoi(v.source.c_str() + 6);
  }
  if (attempt <= fails) {
    spec.args.insert(spec.args.end(), {"--exit-code", "1", "--stderr", v.source + ": invalid data found"});
  }
  return spec;
}

inline kbus::workflows::Workflow<kbus::workflows::DelegatedState> EncodeVideoWorkflow(EncodeSettings s) {
  using kbus::handlers::ProcessExited;
  using kbus::workflows::WorkflowContext;
  kbus::workflows::DelegatedOptions<EncodeVideo> o;
  o.id = [](const EncodeVideo& v) { return v.video_id; };
  o.launch = [s](const EncodeVideo& v, int attempt) { return EncoderLaunch(v, attempt, s); };
  o.retry = s.retry;
  o.run_timeout = s.run_timeout;
  o.heartbeat_interval = s.heartbeat_interval;
  o.heartbeat_timeout = s.heartbeat_timeout;
  o.command_topic = s.command_topic;
  o.launcher_topic = s.launcher_topic;
  o.control_topic = s.control_topic;
  o.workflow = s.workflow;
  o.on_succeeded = [topic = s.events_topic](const EncodeVideo& v, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(VideoEncoded{v.video_id, e.attempt}, {.topic = topic});
  };
  o.on_failed = [topic = s.events_topic](const EncodeVideo& v, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(VideoEncodingFailed{v.video_id, e.attempt, e.outcome, e.error.empty() ? e.stderr_tail : e.error},
                {.topic = topic});
  };
  return kbus::workflows::DelegatedCommand<EncodeVideo>(s.name, std::move(o));
}

}  // namespace video
