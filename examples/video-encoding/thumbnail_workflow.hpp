#pragma once
// ThumbnailWorkflow: a MakeThumbnail command becomes launcher attempts, followed by a second
// DelegatedCommand workflow in the same worker as EncodeVideoWorkflow. Both take the launcher's
// events (ProcessStarted, ProcessHeartbeat, ProcessExited...): each asks the launcher to reply
// to its own input topic, and the worker routes an event by the topic it arrives on
// (docs/workflows.md, "Several delegated commands in one worker").
//
// It shares the encoding's settings (launcher, topics, encoder, retries, heartbeats, output
// directory): one service, one set of flags. Its workflow id, and so its job id at the launcher,
// is "VIDEO_ID.thumbnail": a launch is named by (job id, attempt), and the encoding of the same
// video already uses VIDEO_ID.

#include <chrono>
#include <cmath>
#include <string>
#include <utility>

#include "encode_workflow.hpp"
#include "kbus/workflows/delegated_command.hpp"
#include "messages.hpp"

namespace video {

struct ThumbnailSettings {
  std::string name = "video.thumbnail";  // the workflow: topics video.thumbnail.in and .state
  kbus::workflows::WorkflowOptions workflow;
  // A still takes seconds: an attempt still running after this is stopped by the launcher.
  std::chrono::milliseconds run_timeout{std::chrono::minutes(5)};
};

// The latest point a still is taken from (a day into the video).
inline constexpr double kMaxThumbnailSeconds = 24 * 3600;

inline std::string ThumbnailId(const MakeThumbnail& t) { return t.video_id + ".thumbnail"; }

// Where ffmpeg writes the still of `t`, as the launcher sees it: OUTPUT_DIR/VIDEO_ID.HEIGHTp.jpg,
// or beside the source without an output directory.
inline std::string ThumbnailPath(const MakeThumbnail& t, const EncodeSettings& s) {
  const std::string name = "." + std::to_string(t.height) + "p.jpg";
  if (s.output_dir.empty()) return t.source + name;
  std::string dir = s.output_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return (dir == "/" ? "" : dir) + "/" + t.video_id + name;
}

// Why `t` can never be made, or "": the same rules as CheckEncode, and a point in the video from
// 0 to kMaxThumbnailSeconds. The fake encoder runs anything.
inline std::string CheckThumbnail(const MakeThumbnail& t, const EncodeSettings& s) {
  if (s.encoder == "fake") return {};
  if (std::string why = CheckEncode(EncodeVideo{t.video_id, t.source, t.height}, s); !why.empty()) return why;
  if (!std::isfinite(t.at_seconds) || t.at_seconds < 0 || t.at_seconds > kMaxThumbnailSeconds) {
    return "at_seconds must be from 0 to " + std::to_string(static_cast<int>(kMaxThumbnailSeconds));
  }
  return {};
}

// One attempt: ffmpeg seeks to at_seconds and writes one scaled frame (the allow-list's fixed
// arguments come first, as for an encoding); the fake encoder runs briefly and reports
// VIDEO_ID.jpg, failing as the source's name says (FakeAttemptFails).
inline kbus::workflows::LaunchSpec ThumbnailLaunch(const MakeThumbnail& t, int attempt, const EncodeSettings& s) {
  if (s.encoder != "fake") {
    return {"ffmpeg",
            {"-ss", std::to_string(t.at_seconds), "-i", "file:" + t.source, "-frames:v", "1", "-vf",
             "scale=-2:" + std::to_string(t.height), "-update", "1", "file:" + ThumbnailPath(t, s)},
            {}};
  }
  kbus::workflows::LaunchSpec spec{
      "fake-encoder", {"--seconds", std::to_string(s.fake_seconds / 4), "--steps", "2", "--output", t.video_id + ".jpg"}, {}};
  if (FakeAttemptFails(t.source, attempt)) {
    spec.args.insert(spec.args.end(), {"--exit-code", "1", "--stderr", t.source + ": no frame at that point"});
  }
  return spec;
}

inline kbus::workflows::Workflow<kbus::workflows::DelegatedState> ThumbnailWorkflow(const EncodeSettings& s,
                                                                                    ThumbnailSettings t) {
  using kbus::handlers::ProcessExited;
  using kbus::workflows::WorkflowContext;
  kbus::workflows::DelegatedOptions<MakeThumbnail> o;
  o.id = [](const MakeThumbnail& m) { return ThumbnailId(m); };
  o.launch = [s](const MakeThumbnail& m, int attempt) { return ThumbnailLaunch(m, attempt, s); };
  o.check = [s](const MakeThumbnail& m) { return CheckThumbnail(m, s); };
  ShareSettings(o, s);
  o.run_timeout = t.run_timeout;  // its own: a still takes seconds
  o.workflow = std::move(t.workflow);
  o.on_succeeded = [s](const MakeThumbnail& m, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(ThumbnailMade{m.video_id, e.attempt, s.encoder == "fake" ? std::string() : ThumbnailPath(m, s)},
                {.topic = s.events_topic});
    if (s.encoder != "fake") ctx.Complete(EncodeResult{ThumbnailPath(m, s), m.height});
  };
  o.on_failed = [topic = s.events_topic](const MakeThumbnail& m, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(ThumbnailFailed{m.video_id, e.attempt, e.outcome, e.error.empty() ? e.stderr_tail : e.error},
                {.topic = topic});
  };
  return kbus::workflows::DelegatedCommand<MakeThumbnail>(t.name, std::move(o));
}

}  // namespace video
