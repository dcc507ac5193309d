#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

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

// ---- UTF-8 and nesting: the rules of everything kbus reads and writes (json.hpp) -------------

namespace {

using kbus::EncodeJson;
using kbus::IsValidUtf8;
using kbus::JsonDocument;
using kbus::JsonWriter;
using kbus::kMaxJsonDepth;
using kbus::ToValidUtf8;

TEST(Utf8, AcceptsWellFormedTextAndRefusesEveryKindOfMalformedSequence) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii, long enough for the eight-byte path"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf"));
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));
  for (const char* bad : {
           "\xff\xfe",          // never in UTF-8
           "\xc3\x28",          // a lead byte without its continuation
           "\x80",              // a stray continuation byte
           "\xc0\xaf",          // overlong '/'
           "\xe0\x80\xaf",      // overlong '/', three bytes
           "\xf0\x80\x80\xaf",  // overlong '/', four bytes
           "\xed\xa0\x80",      // U+D800, a UTF-16 surrogate
           "\xed\xbf\xbf",      // U+DFFF
           "\xf4\x90\x80\x80",  // past U+10FFFF
           "\xe2\x82",          // cut short at the end
           "0123456789abcdef\xe2\x82",
       }) {
    EXPECT_FALSE(IsValidUtf8(bad)) << ToValidUtf8(bad);
  }
}

TEST(Utf8, ToValidUtf8ReplacesEachBadByteAndCutsBetweenCharacters) {
  EXPECT_EQ(ToValidUtf8("ok \xc3\xa9"), "ok \xc3\xa9");
  EXPECT_EQ(ToValidUtf8("a\xff\xfe" "b"), "a\xef\xbf\xbd\xef\xbf\xbd" "b");
  EXPECT_EQ(ToValidUtf8("\xc3\x28"), "\xef\xbf\xbd(");
  EXPECT_EQ(ToValidUtf8("ab\xe2\x82\xac", 4), "ab") << "the euro sign does not fit whole";
  EXPECT_EQ(ToValidUtf8("ab\xe2\x82\xac", 5), "ab\xe2\x82\xac");
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8(std::string(5000, '\xff'), 4096)));
  EXPECT_LE(ToValidUtf8(std::string(5000, '\xff'), 4096).size(), 4096u);
}

struct Utf8Case {
  std::string json;
  std::string expected;
};

class CodecInvalidUtf8 : public ::testing::TestWithParam<Utf8Case> {};

TEST_P(CodecInvalidUtf8, IsADecodeErrorNamingTheField) {
  auto out = FromJson<EncodeVideo>(GetParam().json);
  EXPECT_THAT(out, ErrorIs(ErrorCode::kDecode, HasSubstr(GetParam().expected)));
}

INSTANTIATE_TEST_SUITE_P(
    EveryKind, CodecInvalidUtf8,
    ::testing::Values(
        Utf8Case{"{\"video_id\":\"\xff\xfe\"}", "field 'video_id' is not valid UTF-8"},
        Utf8Case{"{\"video_id\":\"\xc3\x28\"}", "field 'video_id' is not valid UTF-8"},
        Utf8Case{"{\"video_id\":\"\xc0\xaf\"}", "field 'video_id' is not valid UTF-8"},
        Utf8Case{"{\"video_id\":\"\xed\xa0\x80\"}", "field 'video_id' is not valid UTF-8"},
        Utf8Case{R"({"video_id":"a\ud800"})", "field 'video_id' is not valid UTF-8"},
        Utf8Case{R"({"video_id":"a\udc00b"})", "field 'video_id' is not valid UTF-8"},
        Utf8Case{"{\"video_id\":\"v\",\"args\":[\"ok\",\"\xff\"]}", "field 'args[1]' is not valid UTF-8"},
        Utf8Case{"{\"video_id\":\"v\",\"params\":{\"codec\":\"\xff\"}}", "field 'params.codec' is not valid UTF-8"},
        Utf8Case{"{\"video_id\":\"v\",\"env\":{\"A\":\"1\",\"\xff\":\"2\"}}", "a member name in field 'env' is not valid UTF-8"},
        // Unknown members too: the whole payload is refused, not just the fields a decoder reads.
        Utf8Case{"{\"video_id\":\"v\",\"extra\":[{\"x\":\"\xff\"}]}", "field 'extra[0].x' is not valid UTF-8"},
        Utf8Case{"\"\xff\"", "payload: the string is not valid UTF-8"}));

TEST(Codec, RefusesNestingDeeperThanTheLimitAsADecodeErrorWithoutOverflowingTheStack) {
  // 150,000 levels in 300 KB: a recursive reader or writer of this would run off the stack.
  const std::string deep = std::string(150'000, '[') + std::string(150'000, ']');
  EXPECT_THAT(FromJson<EncodeVideo>(deep),
              ErrorIs(ErrorCode::kDecode, HasSubstr("nests deeper than 128 levels")));
  const std::string deep_objects = [] {
    std::string s;
    for (int i = 0; i < 150'000; ++i) s += "{\"a\":";
    return s + "1" + std::string(150'000, '}');
  }();
  EXPECT_THAT(kbus::ValidateJson(deep_objects),
              ErrorIs(ErrorCode::kDecode, HasSubstr("nests deeper than 128 levels")));
  // Exactly the limit is read and written back; one level more is refused.
  const auto nested = [](int levels) {
    return std::string(static_cast<std::size_t>(levels), '[') +
           std::string(static_cast<std::size_t>(levels), ']');
  };
  JsonDocument doc;
  ASSERT_THAT(doc.Parse(nested(kMaxJsonDepth)), IsOk());
  EXPECT_EQ(doc.Root().ToJson(), nested(kMaxJsonDepth));
  EXPECT_THAT(doc.Parse(nested(kMaxJsonDepth + 1)), ErrorIs(ErrorCode::kDecode, HasSubstr("deeper")));
}

TEST(Codec, RefusesToEncodeAStringThatIsNotUtf8NamingTheField) {
  EncodeVideo v = FullVideo();
  v.args[1] = "in\xc3.mp4";
  EXPECT_THAT(EncodeJson(v), ErrorIs(ErrorCode::kInvalidArgument,
                                     HasSubstr("cannot encode as JSON: field 'args[1]' is not valid UTF-8")));
  v = FullVideo();
  v.env["TZ"] = "\xed\xa0\x80";  // a surrogate
  EXPECT_THAT(EncodeJson(v), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 'env.TZ' is not valid UTF-8")));
  v = FullVideo();
  v.renditions[1].codec = "\xff";
  EXPECT_THAT(EncodeJson(v), ErrorIs(ErrorCode::kInvalidArgument,
                                     HasSubstr("field 'renditions[1].codec' is not valid UTF-8")));
  v = FullVideo();
  v.video_id = "\xc0\xaf";
  try {
    (void)ToJson(v);
    ADD_FAILURE() << "ToJson wrote a string that is not UTF-8";
  } catch (const kbus::EncodeError& e) {
    EXPECT_THAT(e.what(), HasSubstr("field 'video_id' is not valid UTF-8"));
  }
  EXPECT_THAT(EncodeJson(FullVideo()), IsOk());
}

TEST(JsonWriter, RefusesNestingPastTheLimitAndBadUtf8ButReplacesItForPeople) {
  JsonWriter deep;
  for (int i = 0; i <= kMaxJsonDepth; ++i) deep.StartArray();
  EXPECT_FALSE(deep.ok());
  EXPECT_THAT(deep.status(), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("deeper than 128")));

  JsonWriter strict;
  strict.StartObject();
  strict.Key("k");
  strict.String("\xff");
  strict.EndObject();
  EXPECT_FALSE(strict.ok());
  EXPECT_TRUE(IsValidUtf8(strict.View())) << "even refused text is never written raw";
  EXPECT_TRUE(strict.Take().size() > 0);
  EXPECT_TRUE(strict.ok()) << "Take starts over";

  JsonWriter lenient(kbus::InvalidUtf8::kReplace);
  lenient.StartObject();
  lenient.Key("k\xfe");
  lenient.String("a\xff");
  lenient.EndObject();
  EXPECT_TRUE(lenient.ok());
  EXPECT_EQ(lenient.Take(), "{\"k\xef\xbf\xbd\":\"a\xef\xbf\xbd\"}");
}

}  // namespace

// ---- Raw JSON members, kOmitDefault, deques and headers ----------------------------------------

namespace {

// A job record in the shape of a workflow's state record: JSON text held as strings, members
// added later, a bounded history and record headers.
struct Job {
  std::string id;
  std::string state;       // JSON text
  std::string result;      // JSON text, "" for none
  std::int64_t expires_ms = 0;
  int run = 1;
  std::deque<std::string> seen;
  std::vector<kbus::Header> headers;
};

}  // namespace

template <>
struct kbus::JsonTraits<Job> {
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("id", &Job::id), kbus::RawJsonField("state", &Job::state),
                   kbus::RawJsonField("result", &Job::result, kbus::kOmitDefault),
                   kbus::Field("expires_ms", &Job::expires_ms, kbus::kOmitDefault),
                   kbus::Field("run", &Job::run, kbus::kOmitDefault), kbus::Field("seen", &Job::seen),
                   kbus::Field("headers", &Job::headers));
};

namespace {

Job FullJob() {
  Job j;
  j.id = "j-1";
  j.state = R"({"phase":"encode","tries":[1,2.5,null],"note":"caf\u00e9 \"x\"","ok":true})";
  j.result = R"(["out.mp4",100])";
  j.expires_ms = 1767312012000;
  j.run = 3;
  j.seen = {"m-1", "m-2"};
  j.headers = {{"kbus-type", "video.EncodeVideo"}, {"kbus-type", "again"}, {"empty", ""}};
  return j;
}

TEST(CodecRawJson, WritesTheTextVerbatimAsAValueAndReadsBackItsCompactText) {
  const std::string json = ToJson(FullJob());
  EXPECT_EQ(json, R"({"id":"j-1","state":{"phase":"encode","tries":[1,2.5,null],"note":"caf\u00e9 \"x\"","ok":true},)"
                  R"("result":["out.mp4",100],"expires_ms":1767312012000,"run":3,"seen":["m-1","m-2"],)"
                  R"("headers":[["kbus-type","video.EncodeVideo"],["kbus-type","again"],["empty",""]]})");
  auto back = FromJson<Job>(json);
  ASSERT_THAT(back, IsOk());
  // The parser resolves escapes: the compact text says the same in RapidJSON's spelling.
  EXPECT_EQ(back->state, "{\"phase\":\"encode\",\"tries\":[1,2.5,null],\"note\":\"caf\xc3\xa9 \\\"x\\\"\",\"ok\":true}");
  EXPECT_EQ(back->result, FullJob().result);
  EXPECT_EQ(back->expires_ms, 1767312012000);
  EXPECT_EQ(back->run, 3);
  EXPECT_EQ(back->seen, FullJob().seen);
  EXPECT_EQ(back->headers, FullJob().headers) << "repeated names and empty values kept, in order";

  // Any JSON value, including scalars and a spaced-out one, which is kept as given.
  for (const std::string raw : {"null", "0", "\"s\"", "[]", "{ \"a\" : [ 1 ] }"}) {
    Job j = FullJob();
    j.state = raw;
    const std::string text = ToJson(j);
    EXPECT_THAT(text, HasSubstr("\"state\":" + raw + ",")) << raw;
    EXPECT_THAT(FromJson<Job>(text), IsOk()) << raw;
  }
  EXPECT_EQ(FromJson<Job>(R"({"id":"j","state":{ "a" : [ 1 ] },"seen":[],"headers":[]})")->state,
            R"({"a":[1]})");
}

TEST(CodecRawJson, LeavesOutDefaultMembersAndReadsThemBackAsDefaults) {
  Job j = FullJob();
  j.result.clear();
  j.expires_ms = 0;
  j.run = 1;  // the in-class default, not int's
  EXPECT_EQ(ToJson(j), R"({"id":"j-1","state":{"phase":"encode","tries":[1,2.5,null],"note":"caf\u00e9 \"x\"",)"
                       R"("ok":true},"seen":["m-1","m-2"],"headers":[["kbus-type","video.EncodeVideo"],)"
                       R"(["kbus-type","again"],["empty",""]]})");
  auto back = FromJson<Job>(R"({"id":"j","state":{},"seen":[],"headers":[]})");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->result, "");
  EXPECT_EQ(back->expires_ms, 0);
  EXPECT_EQ(back->run, 1);
  // Null reads as missing, for a raw member as for the others.
  back = FromJson<Job>(R"({"id":"j","state":null,"result":null,"expires_ms":null,"seen":[],"headers":[]})");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->state, "null") << "a required raw member holds whatever value is there";
  EXPECT_EQ(back->result, "");
  EXPECT_EQ(back->expires_ms, 0);
}

TEST(CodecRawJson, RefusesToEncodeTextThatIsNotOneJsonValueNamingTheField) {
  for (const auto& [raw, why] : std::vector<std::pair<std::string, std::string>>{
           {"", "field 'state' is not JSON: the text is empty"},
           {"{\"a\":", "field 'state' is not valid JSON (at byte 5)"},
           {"{} {}", "field 'state' is not valid JSON (at byte 3)"},
           {"[1,]", "field 'state' is not valid JSON"},
           {"'single'", "field 'state' is not valid JSON"},
           {"{\"a\":\"\xff\"}", "field 'state' is not valid UTF-8"},
           {R"(["\ud800"])", "field 'state' is not valid UTF-8"},
       }) {
    Job j = FullJob();
    j.state = raw;
    EXPECT_THAT(EncodeJson(j), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("cannot encode as JSON: " + why)))
        << raw;
    // The writer keeps the text readable: null in the refused value's place (and, as after any
    // refused value, the struct's later fields left out).
    JsonWriter w;
    kbus::WriteJson(j, w);
    EXPECT_FALSE(w.ok());
    EXPECT_EQ(w.View(), R"({"id":"j-1","state":null})");
    EXPECT_THAT(kbus::ValidateJson(w.View()), IsOk()) << w.View();
  }
  Job j = FullJob();
  j.result = "nope";
  EXPECT_THAT(EncodeJson(j), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 'result' is not valid JSON")));
}

TEST(CodecRawJson, CountsTheLevelsAroundTheValueTowardsTheDepthLimit) {
  const auto nested = [](int levels) {
    return std::string(static_cast<std::size_t>(levels), '[') + std::string(static_cast<std::size_t>(levels), ']');
  };
  // The record is level 1, so its state may nest one level less than a document of its own.
  Job j = FullJob();
  j.state = nested(kMaxJsonDepth - 1);
  auto json = EncodeJson(j);
  ASSERT_THAT(json, IsOk());
  auto back = FromJson<Job>(*json);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->state, j.state);
  j.state = nested(kMaxJsonDepth);
  EXPECT_THAT(EncodeJson(j), ErrorIs(ErrorCode::kInvalidArgument,
                                     HasSubstr("field 'state' nests deeper than 128 levels")));
  // Deep enough to overflow a recursive checker's stack: refused all the same.
  j.state = nested(150'000);
  EXPECT_THAT(EncodeJson(j), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("nests deeper")));
}

TEST(CodecHeaders, AreNameValuePairsOfStringsAndAnythingElseIsADecodeErrorNamingThePair) {
  for (const std::string bad : {R"(["a"])", R"(["a","b","c"])", R"([1,"b"])", R"({"a":"b"})", R"("a")"}) {
    EXPECT_THAT(FromJson<Job>(R"({"id":"j","state":{},"seen":[],"headers":[["ok","1"],)" + bad + "]}"),
                ErrorIs(ErrorCode::kDecode, HasSubstr("field 'headers[1]' has the wrong type or value: expected a "
                                                      "[name, value] pair of strings")))
        << bad;
  }
  Job j = FullJob();
  j.headers[1].value = "\xff";
  EXPECT_THAT(EncodeJson(j), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("field 'headers[1]' is not valid UTF-8")));
}

TEST(CodecDeque, ReadsAndWritesLikeAVector) {
  auto back = FromJson<Job>(R"({"id":"j","state":{},"seen":["a","b","c"],"headers":[]})");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->seen, (std::deque<std::string>{"a", "b", "c"}));
  EXPECT_THAT(FromJson<Job>(R"({"id":"j","state":{},"seen":["a",2],"headers":[]})"),
              ErrorIs(ErrorCode::kDecode, HasSubstr("field 'seen[1]' has the wrong type or value: expected a string")));
}

}  // namespace
