#pragma once
// Message types shared by the unit tests.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kbus/message.hpp"

namespace kbus_test {

struct Params {
  std::string codec;
  int bitrate = 0;
};

struct EncodeVideo {
  std::string video_id;
  int height = 720;
  std::int64_t size_bytes = 0;
  std::uint32_t priority = 0;
  double speed = 1.0;
  bool draft = false;
  std::chrono::milliseconds timeout{0};
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::optional<std::string> note;
  Params params;
  std::vector<Params> renditions;
};

struct VideoEncoded {
  std::string video_id;
};

struct Unhandled {
  std::string id;
};

}  // namespace kbus_test

template <>
struct kbus::JsonTraits<kbus_test::Params> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("codec", &kbus_test::Params::codec),
                                               kbus::Field("bitrate", &kbus_test::Params::bitrate));
};

template <>
struct kbus::MessageTraits<kbus_test::EncodeVideo> {
  using T = kbus_test::EncodeVideo;
  static constexpr std::string_view kType = "test.EncodeVideo";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "test.commands";
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("video_id", &T::video_id), kbus::Field("height", &T::height, kbus::kOptional),
      kbus::Field("size_bytes", &T::size_bytes, kbus::kOptional),
      kbus::Field("priority", &T::priority, kbus::kOptional),
      kbus::Field("speed", &T::speed, kbus::kOptional),
      kbus::Field("draft", &T::draft, kbus::kOptional),
      kbus::Field("timeout_ms", &T::timeout, kbus::kOptional),
      kbus::Field("args", &T::args, kbus::kOptional), kbus::Field("env", &T::env, kbus::kOptional),
      kbus::Field("note", &T::note, kbus::kOptional), kbus::Field("params", &T::params, kbus::kOptional),
      kbus::Field("renditions", &T::renditions, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<kbus_test::VideoEncoded> {
  static constexpr std::string_view kType = "test.VideoEncoded";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "test.events";
  static constexpr auto kFields = kbus::Fields(kbus::Field("video_id", &kbus_test::VideoEncoded::video_id));
};

template <>
struct kbus::MessageTraits<kbus_test::Unhandled> {
  static constexpr std::string_view kType = "test.Unhandled";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "test.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &kbus_test::Unhandled::id));
};
