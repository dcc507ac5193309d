#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kbus/codec.hpp"
#include "kbus/testing/matchers.hpp"
#include "test_messages.hpp"

namespace {

using kbus::ErrorCode;
using kbus::FromJson;
using kbus::ToJson;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using kbus_test::EncodeVideo;
using ::testing::HasSubstr;

EncodeVideo FullVideo() {
  EncodeVideo v;
  v.video_id = "v-1 \"quoted\" \\ \n ünïcode";
  v.height = 1080;
  v.size_bytes = -9'000'000'000LL;
  v.priority = 4'000'000'000U;
  v.speed = 1.5;
  v.draft = true;
  v.timeout = std::chrono::minutes(90);
  v.args = {"-i", "in.mp4", "; rm -rf /"};
  v.env = {{"LANG", "C"}, {"TZ", "UTC"}};
  v.note = "first try";
  v.params = {"h264", 4500};
  v.renditions = {{"vp9", 1000}, {"av1", 800}};
  return v;
}

TEST(Codec, RoundTripsEveryFieldType) {
  const EncodeVideo in = FullVideo();
  auto out = FromJson<EncodeVideo>(ToJson(in));
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->video_id, in.video_id);
  EXPECT_EQ(out->height, 1080);
  EXPECT_EQ(out->size_bytes, in.size_bytes);
  EXPECT_EQ(out->priority, in.priority);
  EXPECT_DOUBLE_EQ(out->speed, 1.5);
  EXPECT_TRUE(out->draft);
  EXPECT_EQ(out->timeout, std::chrono::minutes(90));
  EXPECT_EQ(out->args, in.args);
  EXPECT_EQ(out->env, in.env);
  EXPECT_EQ(out->note, in.note);
  EXPECT_EQ(out->params.codec, "h264");
  EXPECT_EQ(out->params.bitrate, 4500);
  ASSERT_EQ(out->renditions.size(), 2u);
  EXPECT_EQ(out->renditions[1].codec, "av1");
}

TEST(Codec, WritesDurationsAsMillisecondsAndLeavesOutEmptyOptionals) {
  EncodeVideo v;
  v.video_id = "v";
  v.timeout = std::chrono::seconds(2);
  const std::string json = ToJson(v);
  EXPECT_THAT(json, HasSubstr("\"timeout_ms\":2000"));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("note")));
}

TEST(Codec, OptionalFieldsKeepTheirDefaultsWhenMissing) {
  auto out = FromJson<EncodeVideo>(R"({"video_id":"v"})");
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->height, 720);
  EXPECT_DOUBLE_EQ(out->speed, 1.0);
  EXPECT_FALSE(out->note.has_value());
}

TEST(Codec, DecodesFieldsInAnyOrder) {
  auto out = FromJson<EncodeVideo>(
      R"({"params":{"bitrate":5,"codec":"vp9"},"extra":1,"draft":true,"height":480,"video_id":"v"})");
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->video_id, "v");
  EXPECT_EQ(out->height, 480);
  EXPECT_TRUE(out->draft);
  EXPECT_EQ(out->params.codec, "vp9");
  EXPECT_EQ(out->params.bitrate, 5);
}

TEST(Codec, IgnoresUnknownFieldsSoProducersCanAddThem) {
  auto out = FromJson<EncodeVideo>(R"({"video_id":"v","added_later":{"x":[1,2]}})");
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->video_id, "v");
}

TEST(Codec, NullForAnOptionalFieldMeansAbsent) {
  auto out = FromJson<EncodeVideo>(R"({"video_id":"v","note":null,"height":null})");
  ASSERT_THAT(out, IsOk());
  EXPECT_FALSE(out->note.has_value());
  EXPECT_EQ(out->height, 720);
}

struct DecodeErrorCase {
  const char* json;
  const char* expected;
};

class CodecDecodeError : public ::testing::TestWithParam<DecodeErrorCase> {};

TEST_P(CodecDecodeError, NamesTheFieldAndWhatWasWrong) {
  auto out = FromJson<EncodeVideo>(GetParam().json);
  EXPECT_THAT(out, ErrorIs(ErrorCode::kDecode, HasSubstr(GetParam().expected)));
}

INSTANTIATE_TEST_SUITE_P(
    EveryKind, CodecDecodeError,
    ::testing::Values(
        DecodeErrorCase{R"({})", "field 'video_id' is missing"},
        DecodeErrorCase{R"({"video_id":null})", "field 'video_id' has the wrong type or value: expected a string, got null"},
        DecodeErrorCase{R"({"video_id":42})", "field 'video_id' has the wrong type or value: expected a string, got a number"},
        DecodeErrorCase{R"({"video_id":"v","height":"720"})", "field 'height' has the wrong type or value: expected an integer, got a string"},
        DecodeErrorCase{R"({"video_id":"v","height":1.5})", "field 'height' has the wrong type or value: expected an integer, got a number"},
        DecodeErrorCase{R"({"video_id":"v","height":3000000000})", "field 'height' has the wrong type or value: 3000000000 is out of range for a 32-bit integer"},
        DecodeErrorCase{R"({"video_id":"v","priority":-1})", "field 'priority' has the wrong type or value: expected a non-negative integer, got a number"},
        DecodeErrorCase{R"({"video_id":"v","draft":"yes"})", "field 'draft' has the wrong type or value: expected a boolean, got a string"},
        DecodeErrorCase{R"({"video_id":"v","speed":"fast"})", "field 'speed' has the wrong type or value: expected a number, got a string"},
        DecodeErrorCase{R"({"video_id":"v","timeout_ms":-5})", "field 'timeout_ms' has the wrong type or value: expected a non-negative integer of milliseconds"},
        DecodeErrorCase{R"({"video_id":"v","args":"-i"})", "field 'args' has the wrong type or value: expected an array, got a string"},
        DecodeErrorCase{R"({"video_id":"v","args":["a","b",3]})", "field 'args[2]' has the wrong type or value: expected a string, got a number"},
        DecodeErrorCase{R"({"video_id":"v","env":{"A":1}})", "field 'env.A' has the wrong type or value: expected a string, got a number"},
        DecodeErrorCase{R"({"video_id":"v","params":{"codec":7}})", "field 'params.codec' has the wrong type or value: expected a string"},
        DecodeErrorCase{R"({"video_id":"v","params":{"bitrate":1}})", "field 'params.codec' is missing"},
        DecodeErrorCase{R"({"video_id":"v","renditions":[{"codec":"a","bitrate":1},{"codec":"b","bitrate":"x"}]})", "field 'renditions[1].bitrate' has the wrong type"},
        DecodeErrorCase{R"([1,2,3])", "payload: expected an object, got an array"},
        DecodeErrorCase{R"("just a string")", "payload: expected an object, got a string"},
        DecodeErrorCase{R"({"video_id":"v",)", "malformed JSON at byte"},
        DecodeErrorCase{R"()", "empty payload"}));

struct Point {
  int x = 0;
  int y = 0;
};

}  // namespace

// A hand-written codec instead of a field list: "x,y" as one string.
template <>
struct kbus::JsonTraits<Point> {
  static void Encode(const Point& p, kbus::JsonWriter& w) {
    w.String(std::to_string(p.x) + "," + std::to_string(p.y));
  }
  static kbus::Result<Point> Decode(const kbus::JsonValue& v) {
    if (!v.IsString()) return kbus::Error(kbus::ErrorCode::kDecode, "expected \"x,y\"");
    const std::string s(v.GetString());
    const auto comma = s.find(',');
    if (comma == std::string::npos) return kbus::Error(kbus::ErrorCode::kDecode, "expected \"x,y\"");
    return Point{std::stoi(s.substr(0, comma)), std::stoi(s.substr(comma + 1))};
  }
};

namespace {

struct Shape {
  std::vector<Point> points;
};

}  // namespace

template <>
struct kbus::JsonTraits<Shape> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("points", &Shape::points));
};

namespace {

TEST(Codec, UsesHandWrittenCodecsForNestedValues) {
  Shape s{{{1, 2}, {3, 4}}};
  EXPECT_EQ(ToJson(s), R"({"points":["1,2","3,4"]})");
  auto back = FromJson<Shape>(R"({"points":["5,6"]})");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->points[0].y, 6);
  EXPECT_THAT(FromJson<Shape>(R"({"points":["56"]})"),
              ErrorIs(ErrorCode::kDecode, HasSubstr("field 'points[0]' has the wrong type or value: expected \"x,y\"")));
}

}  // namespace
