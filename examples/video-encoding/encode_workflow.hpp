#pragma once
// EncodeVideoWorkflow: an EncodeVideo command becomes launcher attempts, followed to the end by
// a DelegatedCommand workflow: VideoEncoded on success, retries with backoff on a failed,
// timed-out or silent attempt, and after the last attempt the command in the dead-letter topic
// and VideoEncodingFailed. With the ffmpeg encoder a command whose arguments could not be made
// safe (an odd height, a video_id that is no file name) is dead-lettered as rejected at once.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
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
  // ffmpeg: the directory, as the launcher sees it, where VIDEO_ID.HEIGHTp.mp4 is written.
  // Empty: beside the source, SOURCE.HEIGHTp.mp4.
  std::string output_dir;
};

// The tallest output asked of ffmpeg (8K); an output's height is even, as H.264 in 4:2:0 needs.
inline constexpr int kMinHeight = 16;
inline constexpr int kMaxHeight = 4320;

// Whether `id` can name a file in the output directory as it is: 1 to 200 of [A-Za-z0-9._-],
// beginning with a letter, a digit or '_' (so never ".", "..", a hidden file or an option).
inline bool IsSafeFileName(std::string_view id) {
  auto plain = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (id.empty() || id.size() > 200 || !plain(id.front())) return false;
  return std::all_of(id.begin(), id.end(), [&](char c) { return plain(c) || c == '.' || c == '-'; });
}

// Where ffmpeg writes the encoding of `v`, as the launcher sees it.
inline std::string EncodedPath(const EncodeVideo& v, const EncodeSettings& s) {
  const std::string name = "." + std::to_string(v.height) + "p.mp4";
  if (s.output_dir.empty()) return v.source + name;
  std::string dir = s.output_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return (dir == "/" ? "" : dir) + "/" + v.video_id + name;
}

// Why `v` can never be encoded, or "" (DelegatedOptions::check: such a command is dead-lettered
// with reason "rejected", nothing launched). Only ffmpeg's arguments are checked; the fake
// encoder runs anything.
inline std::string CheckEncode(const EncodeVideo& v, const EncodeSettings& s) {
  if (s.encoder == "fake") return {};
  if (v.source.empty()) return "source is empty";
  if (v.height < kMinHeight || v.height > kMaxHeight || v.height % 2 != 0) {
    return "height must be an even number from " + std::to_string(kMinHeight) + " to " + std::to_string(kMaxHeight) +
           ", not " + std::to_string(v.height);
  }
  if (!s.output_dir.empty() && !IsSafeFileName(v.video_id)) {
    return "video_id '" + v.video_id.substr(0, 200) +
           "' cannot name a file in the output directory: 1 to 200 of [A-Za-z0-9._-], beginning with a letter, a "
           "digit or '_'";
  }
  return {};
}

// Whether the fake encoder's attempt fails, as the source's name plays it: "broken..." always,
// "flaky-N..." its first N attempts, anything else never.
inline bool FakeAttemptFails(const std::string& source, int attempt) {
  if (source.starts_with("broken")) return true;
  if (source.starts_with("flaky-")) return attempt <= std::atoi(source.c_str() + 6);
  return false;
}

// The program and arguments of one attempt. ffmpeg's input and output are `file:` URLs: a
// source beginning with '-' is not an option, and one naming another protocol (pipe:, http:,
// concat:) is a file of that name. The allow-list adds ffmpeg's fixed arguments before these
// (docker/launcher.allow: -progress pipe:1 -nostats -nostdin -y -hide_banner).
inline kbus::workflows::LaunchSpec EncoderLaunch(const EncodeVideo& v, int attempt, const EncodeSettings& s) {
  if (s.encoder != "fake") {
    return {"ffmpeg",
            {"-i", "file:" + v.source, "-vf", "scale=-2:" + std::to_string(v.height), "-c:v", "libx264", "-pix_fmt",
             "yuv420p", "-c:a", "aac", "file:" + EncodedPath(v, s)},
            {}};
  }
  // Its result (`{"output":"VIDEO_ID.mp4","frames":100}`) becomes the run's result.
  kbus::workflows::LaunchSpec spec{
      "fake-encoder",
      {"--seconds", std::to_string(s.fake_seconds), "--steps", "4", "--output", v.video_id + ".mp4"},
      {}};
  if (FakeAttemptFails(v.source, attempt)) {
    spec.args.insert(spec.args.end(), {"--exit-code", "1", "--stderr", v.source + ": invalid data found"});
  }
  return spec;
}

// What every delegated job of this example shares with the encoding: retries, heartbeats,
// the run timeout and the launcher's topics.
template <class M>
void ShareSettings(kbus::workflows::DelegatedOptions<M>& o, const EncodeSettings& s) {
  o.retry = s.retry;
  o.run_timeout = s.run_timeout;
  o.heartbeat_interval = s.heartbeat_interval;
  o.heartbeat_timeout = s.heartbeat_timeout;
  o.command_topic = s.command_topic;
  o.launcher_topic = s.launcher_topic;
  o.control_topic = s.control_topic;
}

inline kbus::workflows::Workflow<kbus::workflows::DelegatedState> EncodeVideoWorkflow(EncodeSettings s) {
  using kbus::handlers::ProcessExited;
  using kbus::workflows::WorkflowContext;
  kbus::workflows::DelegatedOptions<EncodeVideo> o;
  o.id = [](const EncodeVideo& v) { return v.video_id; };
  o.launch = [s](const EncodeVideo& v, int attempt) { return EncoderLaunch(v, attempt, s); };
  o.check = [s](const EncodeVideo& v) { return CheckEncode(v, s); };
  ShareSettings(o, s);
  o.workflow = s.workflow;
  o.on_succeeded = [s](const EncodeVideo& v, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(VideoEncoded{v.video_id, e.attempt, s.encoder == "fake" ? std::string() : EncodedPath(v, s)},
                {.topic = s.events_topic});
    // ffmpeg prints no result line: the workflow records what it made. (The fake encoder's own
    // result line is the run's result already.)
    if (s.encoder != "fake") ctx.Complete(EncodeResult{EncodedPath(v, s), v.height});
  };
  o.on_failed = [topic = s.events_topic](const EncodeVideo& v, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(VideoEncodingFailed{v.video_id, e.attempt, e.outcome, e.error.empty() ? e.stderr_tail : e.error},
                {.topic = topic});
  };
  return kbus::workflows::DelegatedCommand<EncodeVideo>(s.name, std::move(o));
}

}  // namespace video
