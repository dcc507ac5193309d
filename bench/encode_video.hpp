#pragma once
// The command kbus-bench sends: an EncodeVideo-like message of 208 bytes of JSON (8 fields, one
// of them a nested struct), the shape of a typical command on a video platform's bus. The
// records carry kbus's full envelope (kbus::BuildRecord: type, kind, id, correlation id and
// sent-at headers), so every consumer of the benchmark reads what kbus sends.
//
// Also what a careful hand-written consumer does with it (DecodeRaw): parse with RapidJSON, then
// look up and type-check every field and copy the strings.

#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>

#include "kbus/message.hpp"

namespace bench {

struct VideoParams {
  std::string codec;
  int bitrate = 0;
};

struct EncodeVideo {
  std::string type;
  std::string id;  // "job-" and 10 digits: the record's index
  std::string url;
  int attempt = 0;
  int priority = 0;
  std::string tenant;
  std::int64_t created_at = 0;  // the latency mode writes its send time here
  VideoParams params;
};

}  // namespace bench

template <>
struct kbus::JsonTraits<bench::VideoParams> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("codec", &bench::VideoParams::codec),
                                               kbus::Field("bitrate", &bench::VideoParams::bitrate));
};

template <>
struct kbus::MessageTraits<bench::EncodeVideo> {
  static constexpr std::string_view kType = "bench.EncodeVideo";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "bench.commands";  // each run uses its own topic
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("type", &bench::EncodeVideo::type),
                   kbus::Field("id", &bench::EncodeVideo::id),
                   kbus::Field("url", &bench::EncodeVideo::url),
                   kbus::Field("attempt", &bench::EncodeVideo::attempt),
                   kbus::Field("priority", &bench::EncodeVideo::priority),
                   kbus::Field("tenant", &bench::EncodeVideo::tenant),
                   kbus::Field("created_at", &bench::EncodeVideo::created_at),
                   kbus::Field("params", &bench::EncodeVideo::params));
};

namespace bench {

// The i-th record: 208 bytes of JSON for every i below 10^10.
inline EncodeVideo MakeVideo(std::size_t i) {
  char num[16];
  std::snprintf(num, sizeof num, "%010zu", i);
  EncodeVideo v;
  v.type = "EncodeVideo";
  v.id = std::string("job-") + num;
  v.url = std::string("https://cdn.example.com/v/") + num + ".mp4";
  v.attempt = 1 + static_cast<int>(i % 3);
  v.priority = static_cast<int>(i % 5);
  v.tenant = "tenant-" + std::to_string(100 + i % 900);
  v.created_at = 1700000000000 + static_cast<std::int64_t>(i);
  v.params = {"h264", 1000 + static_cast<int>(i % 1000)};
  return v;
}

inline bool ReadString(const rapidjson::Value& object, const char* name, std::string& out) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd() || !it->value.IsString()) return false;
  out.assign(it->value.GetString(), it->value.GetStringLength());
  return true;
}

template <class I>
bool ReadInt(const rapidjson::Value& object, const char* name, I& out) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd() || !it->value.IsInt64()) return false;
  const std::int64_t v = it->value.GetInt64();
  if (v < std::numeric_limits<I>::min() || v > std::numeric_limits<I>::max()) return false;
  out = static_cast<I>(v);
  return true;
}

// Parse, then look up and type-check every field. False for anything that is not an EncodeVideo.
inline bool DecodeRaw(const void* data, std::size_t size, EncodeVideo& v) {
  rapidjson::Document doc;
  doc.Parse(static_cast<const char*>(data), size);
  if (doc.HasParseError() || !doc.IsObject()) return false;
  const auto params = doc.FindMember("params");
  if (params == doc.MemberEnd() || !params->value.IsObject()) return false;
  return ReadString(doc, "type", v.type) && ReadString(doc, "id", v.id) && ReadString(doc, "url", v.url) &&
         ReadInt(doc, "attempt", v.attempt) && ReadInt(doc, "priority", v.priority) &&
         ReadString(doc, "tenant", v.tenant) && ReadInt(doc, "created_at", v.created_at) &&
         ReadString(params->value, "codec", v.params.codec) && ReadInt(params->value, "bitrate", v.params.bitrate);
}

}  // namespace bench
