// Dead-letter and retry-tier copies (kbus/dead_letter.hpp): what they keep of the record and
// what they add.
#include "kbus/dead_letter.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "fake_record.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "test_messages.hpp"

namespace {

using kbus_test::EncodeVideo;
using kbus_test::FakeRecord;
using kbus_test::RecordOf;

TEST(DeadLetter, KeepsTheOriginalRecordAndAddsDiagnostics) {
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v1"});
  rec.headers.push_back({"kbus-dlq-reason", "stale from an earlier dead-lettering"});
  rec.headers.push_back({"app-header", "kept"});
  const kbus::InboundRecord in = rec.View();
  kbus::OutgoingRecord dlq = kbus::MakeDeadLetter(
      in, {"billing", "handler-error", std::string(10000, 'x'), 5, "host-1"});
  EXPECT_EQ(dlq.topic, "billing.dlq");
  EXPECT_EQ(dlq.key, rec.key);
  EXPECT_EQ(dlq.payload, rec.payload);
  EXPECT_EQ(dlq.FindHeader("app-header"), "kept");
  EXPECT_EQ(dlq.FindHeader("kbus-type"), "test.EncodeVideo");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-reason"), "handler-error");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-original-topic"), "test.commands");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-original-partition"), "3");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-original-offset"), "42");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-original-timestamp"), "1700000000000");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-group"), "billing");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-attempts"), "5");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-host"), "host-1");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-error")->size(), 4096u) << "error text is bounded";
  // Error text quoting input is made valid UTF-8, and cut between characters.
  const std::string quoting = "no handler for type '" + std::string(2000, 'x') + "\xff" +
                              std::string(3000, 'y') + "\xe2\x82\xac'";
  for (const std::string& error : {quoting, std::string(4095, 'x') + "\xe2\x82\xac"}) {
    dlq = kbus::MakeDeadLetter(in, {"billing", "unknown-type", error, 1, "host-1"});
    const std::string text(*dlq.FindHeader("kbus-dlq-error"));
    EXPECT_TRUE(kbus::IsValidUtf8(text));
    EXPECT_LE(text.size(), 4096u);
  }
  const auto reasons = std::count_if(dlq.headers.begin(), dlq.headers.end(),
                                     [](const kbus::Header& h) { return h.name == "kbus-dlq-reason"; });
  EXPECT_EQ(reasons, 1) << "old diagnostics are replaced, not repeated";
}

TEST(RetryCopies, KeepTheRecordAndTheFirstOriginAcrossTiersAndTheDeadLetterNamesIt) {
  FakeRecord rec = RecordOf(EncodeVideo{.video_id = "v"});
  rec.headers.push_back({"traceparent", "00-abc-def-01"});
  const kbus::OutgoingRecord first =
      kbus::MakeRetry(rec.View(), {.topic = "g.retry.10s", .deliveries = 3, .due_ms = 1234, .error = "boom"});
  EXPECT_EQ(first.topic, "g.retry.10s");
  EXPECT_EQ(first.key, rec.key);
  EXPECT_EQ(first.payload, rec.payload);
  auto header = [](const kbus::OutgoingRecord& r, std::string_view name) {
    std::vector<std::string> values;
    for (const auto& h : r.headers) {
      if (h.name == name) values.push_back(h.value);
    }
    return values;
  };
  EXPECT_THAT(header(first, "traceparent"), ::testing::ElementsAre("00-abc-def-01"));
  EXPECT_THAT(header(first, kbus::header::kRetryTopic), ::testing::ElementsAre("test.commands"));
  EXPECT_THAT(header(first, kbus::header::kRetryOffset), ::testing::ElementsAre("42"));
  EXPECT_THAT(header(first, kbus::header::kDeliveryCount), ::testing::ElementsAre("3"));
  EXPECT_THAT(header(first, kbus::header::kRetryDue), ::testing::ElementsAre("1234"));

  // Consumed from the tier (another topic and offset), it fails again: the origin stays.
  FakeRecord in_tier{"g.retry.10s", first.key, first.payload, first.headers, {}};
  const kbus::OutgoingRecord second =
      kbus::MakeRetry(in_tier.View(), {.topic = "g.retry.1m", .deliveries = 4, .due_ms = 5678, .error = "again"});
  EXPECT_THAT(header(second, kbus::header::kRetryTopic), ::testing::ElementsAre("test.commands"));
  EXPECT_THAT(header(second, kbus::header::kDeliveryCount), ::testing::ElementsAre("4"));
  EXPECT_THAT(header(second, kbus::header::kRetryError), ::testing::ElementsAre("again"));

  FakeRecord last{"g.retry.1m", second.key, second.payload, second.headers, {}};
  const kbus::OutgoingRecord dead = kbus::MakeDeadLetter(
      last.View(), {.group = "g", .reason = kbus::reason::kHandlerError, .error = "e", .attempts = 5, .host = "h"});
  EXPECT_THAT(header(dead, kbus::header::kDlqTopic), ::testing::ElementsAre("test.commands"));
  EXPECT_THAT(header(dead, kbus::header::kDlqOffset), ::testing::ElementsAre("42"));
  EXPECT_THAT(header(dead, kbus::header::kRetryTopic), ::testing::IsEmpty());
  EXPECT_THAT(header(dead, kbus::header::kDeliveryCount), ::testing::IsEmpty());
  EXPECT_THAT(header(dead, "traceparent"), ::testing::ElementsAre("00-abc-def-01"));
}

}  // namespace
