#pragma once
// The video service's messages: two long commands (an encoding, a thumbnail), and what became
// of them.

#include <string>

#include "kbus/message.hpp"

namespace video {

// Encode `source` at `height` lines. Handled by EncodeVideoWorkflow, which hands the work to a
// launcher and follows it to the end.
struct EncodeVideo {
  std::string video_id;
  std::string source;
  int height = 720;
};

struct VideoEncoded {
  std::string video_id;
  int attempts = 0;
  std::string output;  // the encoded file, as the launcher wrote it ("" for the fake encoder)
};

// The result an encoding run records (docs/workflows.md, "Results"), for the ffmpeg encoder: the
// file made and its height. The fake encoder reports {"output", "frames"} itself.
struct EncodeResult {
  std::string output;
  int height = 0;
};

struct VideoEncodingFailed {
  std::string video_id;
  int attempts = 0;
  std::string outcome;  // the last attempt's: failed, timed_out, lost, ...
  std::string error;
};

// Make a still of `source`, `height` lines tall, from `at_seconds` into it. Handled by
// ThumbnailWorkflow, a second delegated workflow in the same worker (thumbnail_workflow.hpp).
struct MakeThumbnail {
  std::string video_id;
  std::string source;
  int height = 180;
  double at_seconds = 1;
};

struct ThumbnailMade {
  std::string video_id;
  int attempts = 0;
  std::string output;  // the image, as the launcher wrote it ("" for the fake encoder)
};

struct ThumbnailFailed {
  std::string video_id;
  int attempts = 0;
  std::string outcome;  // the last attempt's
  std::string error;
};

}  // namespace video

template <>
struct kbus::MessageTraits<video::EncodeVideo> {
  using T = video::EncodeVideo;
  static constexpr std::string_view kType = "video.EncodeVideo";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "video.commands";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("video_id", &T::video_id), kbus::Field("source", &T::source),
                   kbus::Field("height", &T::height, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<video::VideoEncoded> {
  using T = video::VideoEncoded;
  static constexpr std::string_view kType = "video.VideoEncoded";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "video.events";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("video_id", &T::video_id), kbus::Field("attempts", &T::attempts),
                   kbus::Field("output", &T::output, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<video::VideoEncodingFailed> {
  using T = video::VideoEncodingFailed;
  static constexpr std::string_view kType = "video.VideoEncodingFailed";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "video.events";
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("video_id", &T::video_id), kbus::Field("attempts", &T::attempts),
      kbus::Field("outcome", &T::outcome), kbus::Field("error", &T::error, kbus::kOptional));
};

template <>
struct kbus::JsonTraits<video::EncodeResult> {
  using T = video::EncodeResult;
  static constexpr auto kFields = kbus::Fields(kbus::Field("output", &T::output), kbus::Field("height", &T::height));
};

template <>
struct kbus::MessageTraits<video::MakeThumbnail> {
  using T = video::MakeThumbnail;
  static constexpr std::string_view kType = "video.MakeThumbnail";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "video.commands";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("video_id", &T::video_id), kbus::Field("source", &T::source),
                   kbus::Field("height", &T::height, kbus::kOptional),
                   kbus::Field("at_seconds", &T::at_seconds, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<video::ThumbnailMade> {
  using T = video::ThumbnailMade;
  static constexpr std::string_view kType = "video.ThumbnailMade";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "video.events";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("video_id", &T::video_id), kbus::Field("attempts", &T::attempts),
                   kbus::Field("output", &T::output, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<video::ThumbnailFailed> {
  using T = video::ThumbnailFailed;
  static constexpr std::string_view kType = "video.ThumbnailFailed";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "video.events";
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("video_id", &T::video_id), kbus::Field("attempts", &T::attempts),
      kbus::Field("outcome", &T::outcome), kbus::Field("error", &T::error, kbus::kOptional));
};
