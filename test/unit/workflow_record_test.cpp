// The workflow state record (docs/workflows.md, "The state record"): written with the codec's
// field lists, and every record earlier kbus versions wrote still reads, and writes back the same.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "kbus/json.hpp"
#include "kbus/testing/matchers.hpp"
#include "record.hpp"

namespace {

using kbus::ErrorCode;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using kbus::workflows::detail::Decode;
using kbus::workflows::detail::Encode;
using kbus::workflows::detail::Instance;
using ::testing::HasSubstr;

// docs/workflows.md's example with its elisions filled in, member for member in the order the
// hand-written encoder of earlier versions wrote them.
const std::string kDocumentedRecord =
    R"({"workflow":"video.encode","id":"clip-2","schema":1,"version":7,"run":1,"status":"running",)"
    R"("created_ms":1767225600000,"updated_ms":1767225612000,"finished_ms":0,)"
    R"("correlation_id":"c-1","processed":["m-1","m-2"],"last_message":"m-2",)"
    R"("outbox":[{"topic":"kbus.launcher","key":"clip-2","payload":"{\"job_id\":\"clip-2\"}",)"
    R"("headers":[["kbus-type","kbus.LaunchProcess"],["kbus-id","m-2.0"]]}],)"
    R"("timeouts":[{"id":"m-2#0","name":"retry","due_ms":1767225613000,"payload":""}],)"
    R"("origin":{"topic":"video.encode.in","partition":1,"offset":3,"timestamp_ms":1767225599000,"key":"clip-2",)"
    R"("payload":"{\"video_id\":\"clip-2\"}","headers":[["kbus-type","video.EncodeVideo"]]},)"
    R"("state":{"phase":"encoding","attempt":1,"log":[{"at":1,"what":"started"}]},)"
    R"("result":{"output":"clip-2.mp4","frames":100},"result_expires_ms":1767312012000})";

// A record of a kbus without results, of a run started before origins were kept.
const std::string kOlderRecord =
    R"({"workflow":"shop.order","id":"o-1","schema":2,"version":3,"run":2,"status":"completed",)"
    R"("created_ms":10,"updated_ms":20,"finished_ms":20,"correlation_id":"","processed":[],"last_message":"",)"
    R"("outbox":[],"timeouts":[{"id":"kbus.expire","name":"kbus.expire","due_ms":30,"payload":""}],)"
    R"("state":{"phase":"done"}})";

TEST(WorkflowRecord, DecodesTheDocumentedShapeAndWritesItBackByteForByte) {
  auto in = Decode(kDocumentedRecord);
  ASSERT_THAT(in, IsOk());
  EXPECT_EQ(in->workflow, "video.encode");
  EXPECT_EQ(in->version, 7u);
  EXPECT_EQ(in->created_ms, 1767225600000);
  EXPECT_EQ(in->processed, (std::deque<std::string>{"m-1", "m-2"}));
  ASSERT_EQ(in->outbox.size(), 1u);
  EXPECT_EQ(in->outbox[0].payload, R"({"job_id":"clip-2"})");
  EXPECT_EQ(in->outbox[0].headers, (std::vector<kbus::Header>{{"kbus-type", "kbus.LaunchProcess"},
                                                               {"kbus-id", "m-2.0"}}));
  EXPECT_EQ(in->outbox[0].partition, -1) << "the outbox keeps no partition: the partitioner chooses";
  ASSERT_EQ(in->timeouts.size(), 1u);
  EXPECT_EQ(in->timeouts[0].name, "retry");
  EXPECT_EQ(in->timeouts[0].due_ms, 1767225613000);
  ASSERT_TRUE(in->origin.has_value());
  EXPECT_EQ(in->origin->partition, 1);
  EXPECT_EQ(in->origin->offset, 3);
  EXPECT_EQ(in->origin->timestamp_ms, 1767225599000);
  EXPECT_EQ(in->origin->headers, (std::vector<kbus::Header>{{"kbus-type", "video.EncodeVideo"}}));
  EXPECT_EQ(in->state_json, R"({"phase":"encoding","attempt":1,"log":[{"at":1,"what":"started"}]})");
  EXPECT_EQ(in->result_json, R"({"output":"clip-2.mp4","frames":100})");
  EXPECT_EQ(in->result_expires_ms, 1767312012000);

  EXPECT_EQ(Encode(*in), kDocumentedRecord);
}

TEST(WorkflowRecord, ARecordWithoutOriginOrResultReadsAsNoneAndIsWrittenWithoutThem) {
  auto in = Decode(kOlderRecord);
  ASSERT_THAT(in, IsOk());
  EXPECT_TRUE(in->finished());
  EXPECT_EQ(in->schema, 2);
  EXPECT_FALSE(in->origin.has_value());
  EXPECT_EQ(in->result_json, "");
  EXPECT_EQ(in->result_expires_ms, 0);
  EXPECT_EQ(Encode(*in), kOlderRecord);
}

TEST(WorkflowRecord, RoundTripsAnInstance) {
  Instance in;
  in.workflow = "w";
  in.id = "i \"quoted\" \xc3\xa9";
  in.version = 18446744073709551615u;
  in.status = std::string(kbus::workflows::detail::kFailed);
  in.created_ms = -1;
  in.processed = {"a", "b"};
  in.outbox.push_back({.topic = "t", .key = "", .payload = "{}", .headers = {{"h", ""}, {"h", "2"}}});
  in.timeouts.push_back({.id = "x", .name = "n", .payload = "{\"n\":1}", .due_ms = 5});
  in.origin = kbus::workflows::detail::Origin{.topic = "in", .partition = 3, .headers = {{"k", "v"}}};
  in.state_json = "[1,\"two\",{\"three\":null}]";
  in.result_json = "\"done\"";
  in.result_expires_ms = 99;
  auto back = Decode(Encode(in));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->id, in.id);
  EXPECT_EQ(back->version, in.version);
  EXPECT_EQ(back->status, "failed");
  EXPECT_EQ(back->created_ms, -1);
  EXPECT_EQ(back->processed, in.processed);
  ASSERT_EQ(back->outbox.size(), 1u);
  EXPECT_EQ(back->outbox[0].headers, in.outbox[0].headers);
  ASSERT_EQ(back->timeouts.size(), 1u);
  EXPECT_EQ(back->timeouts[0].payload, in.timeouts[0].payload);
  EXPECT_EQ(back->timeouts[0].due_ms, 5);
  ASSERT_TRUE(back->origin.has_value());
  EXPECT_EQ(back->origin->partition, 3);
  EXPECT_EQ(back->origin->offset, -1);
  EXPECT_EQ(back->origin->headers, in.origin->headers);
  EXPECT_EQ(back->state_json, in.state_json);
  EXPECT_EQ(back->result_json, in.result_json);
  EXPECT_EQ(back->result_expires_ms, 99);
  EXPECT_EQ(Encode(*back), Encode(in));
}

TEST(WorkflowRecord, AnExpiryWithoutAResultIsNotKept) {
  Instance in;
  in.state_json = "{}";
  in.result_expires_ms = 99;  // e.g. left behind when the result was dropped
  auto back = Decode(Encode(in));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->result_json, "");
  EXPECT_EQ(back->result_expires_ms, 0);
  EXPECT_THAT(Decode(R"({"workflow":"w","id":"i","schema":1,"version":0,"run":1,"status":"running",)"
                     R"("created_ms":0,"updated_ms":0,"finished_ms":0,"correlation_id":"","processed":[],)"
                     R"("last_message":"","outbox":[],"timeouts":[],"state":{},"result":null,"result_expires_ms":5})")
                  ->result_expires_ms,
              0)
      << "a null result is no result";
}

TEST(WorkflowRecord, StateThatIsNotJsonIsWrittenAsNullSoTheRecordStaysReadable) {
  Instance in;
  in.state_json = "{\"cut";
  const std::string text = Encode(in);
  EXPECT_THAT(text, HasSubstr("\"state\":null"));
  auto back = Decode(text);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->state_json, "null");
}

TEST(WorkflowRecord, AHeaderThatIsNotUtf8IsWrittenReplacedAndTheRestOfTheRecordKept) {
  auto in = Decode(kDocumentedRecord);
  ASSERT_THAT(in, IsOk());
  in->origin->headers.push_back({"foreign", "a\xff"});
  auto back = Decode(Encode(*in));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->origin->headers.back().value, "a\xef\xbf\xbd");
  EXPECT_EQ(back->state_json, in->state_json);
  EXPECT_EQ(back->result_json, in->result_json);
}

// `kDocumentedRecord` with `from` replaced by `to`.
std::string Broken(const std::string& from, const std::string& to) {
  std::string s = kDocumentedRecord;
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(WorkflowRecord, DecodeErrorsNameTheField) {
  EXPECT_THAT(Decode("[1]"), ErrorIs(ErrorCode::kDecode, HasSubstr("must be a JSON object")));
  EXPECT_THAT(Decode("{\"workflow\":"), ErrorIs(ErrorCode::kDecode, HasSubstr("malformed JSON")));
  const std::pair<std::string, std::string> cases[][2] = {
      {{R"("status":"running")", R"("status":"paused")"},
       {"field 'status'", "expected running, completed or failed, got 'paused'"}},
      {{R"("version":7)", R"("version":"7")"}, {"field 'version'", "expected a non-negative integer"}},
      {{R"(,"processed":["m-1","m-2"])", ""}, {"field 'processed'", "is missing"}},
      {{R"("processed":["m-1","m-2"])", R"("processed":["m-1",2])"}, {"field 'processed[1]'", "expected a string"}},
      {{R"(["kbus-id","m-2.0"])", R"(["kbus-id"])"},
       {"field 'outbox[0].headers[1]'", "expected a [name, value] pair of strings"}},
      {{R"("due_ms":1767225613000)", R"("due_ms":"soon")"}, {"field 'timeouts[0].due_ms'", "expected an integer"}},
      {{R"("partition":1)", R"("partition":4294967296)"}, {"field 'origin.partition'", "out of range"}},
      {{R"("state":{"phase":"encoding","attempt":1,"log":[{"at":1,"what":"started"}]},)", ""},
       {"field 'state'", "is missing"}},
      {{R"("result_expires_ms":1767312012000)", R"("result_expires_ms":true)"},
       {"field 'result_expires_ms'", "expected an integer"}},
  };
  for (const auto& [edit, expected] : cases) {
    const auto [field, what] = expected;
    EXPECT_THAT(Decode(Broken(edit.first, edit.second)),
                ErrorIs(ErrorCode::kDecode, ::testing::AllOf(HasSubstr("workflow state record: " + field),
                                                             HasSubstr(what))))
        << edit.second;
  }
}

}  // namespace
