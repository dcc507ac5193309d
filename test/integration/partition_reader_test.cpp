// kafka::PartitionReader, the plain reader under dead-letter listing and redrive,
// StateTopic::Load and `kbus tail`: what it reads from given offsets, where it stops, which
// client properties it takes, and how it reports a topic that is not there. Runs on both brokers.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "kbus/kafka/partition_reader.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/testing/matchers.hpp"
#include "test_broker.hpp"

namespace {

using kbus::ErrorCode;
using kbus::OutgoingRecord;
using kbus::kafka::ClientConfig;
using kbus::kafka::OffsetReset;
using kbus::kafka::PartitionReader;
using kbus::kafka::PartitionSpan;
using kbus::kafka::ReaderRecord;
using kbus::test::TestBroker;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

ClientConfig Client() { return {.brokers = TestBroker::Get().bootstrap()}; }

// A topic of `partitions` partitions holding `per_partition[p]` records in partition p: key
// "k<p>-<i>", payload "v<p>-<i>" and a header "n: <i>".
std::string TopicWith(const std::string& prefix, const std::vector<int>& per_partition) {
  const std::string topic = TestBroker::UniqueName(prefix);
  TestBroker::Get().CreateTopic(topic, static_cast<int>(per_partition.size()));
  kbus::kafka::Producer producer({.client = Client()});
  for (std::size_t p = 0; p < per_partition.size(); ++p) {
    for (int i = 0; i < per_partition[p]; ++i) {
      const std::string id = std::to_string(p) + "-" + std::to_string(i);
      OutgoingRecord r{.topic = topic, .key = "k" + id, .payload = "v" + id, .headers = {{"n", std::to_string(i)}}};
      r.partition = static_cast<std::int32_t>(p);
      EXPECT_THAT(producer.SendSync(r), IsOk());
    }
  }
  return topic;
}

std::unique_ptr<PartitionReader> Open(const std::string& topic, ClientConfig client = Client()) {
  auto reader = PartitionReader::Open(client, {.topic = topic});
  EXPECT_THAT(reader, IsOk());
  return reader.ok() ? std::move(*reader) : nullptr;
}

// "<partition>/<offset>" of everything ReadToEnd hands out.
std::vector<std::string> ReadAll(PartitionReader& reader, std::vector<ReaderRecord>* records = nullptr) {
  std::vector<std::string> out;
  EXPECT_THAT(reader.ReadToEnd(30s,
                               [&](ReaderRecord&& r) {
                                 out.push_back(std::to_string(r.partition) + "/" + std::to_string(r.offset));
                                 if (records != nullptr) records->push_back(std::move(r));
                                 return true;
                               }),
              IsOk());
  return out;
}

TEST(PartitionReader, ReadsExactlyTheRecordsFromTheGivenOffsetsToTheEndsAndStopsThere) {
  const std::string topic = TopicWith("reader-exact", {5, 3, 0});
  auto reader = Open(topic);
  ASSERT_NE(reader, nullptr);
  auto partitions = reader->Partitions();
  ASSERT_THAT(partitions, IsOk());
  ASSERT_EQ(partitions->size(), 3u);
  EXPECT_EQ((*partitions)[0].low, 0);
  EXPECT_EQ((*partitions)[0].high, 5);
  EXPECT_EQ((*partitions)[1].high, 3);
  EXPECT_EQ((*partitions)[2].high, 0);

  ASSERT_THAT(reader->Assign({{.partition = 0, .from = 2, .to = 5},
                              {.partition = 1, .from = PartitionSpan::kBeginning, .to = 3},
                              {.partition = 2, .from = 0, .to = 0}}),
              IsOk());
  std::vector<ReaderRecord> records;
  std::vector<std::string> read = ReadAll(*reader, &records);
  std::sort(read.begin(), read.end());
  EXPECT_EQ(read, (std::vector<std::string>{"0/2", "0/3", "0/4", "1/0", "1/1", "1/2"}));
  EXPECT_TRUE(reader->AtEnd());
  for (const auto& r : records) {
    const std::string id = std::to_string(r.partition) + "-" + std::to_string(r.offset);
    EXPECT_EQ(r.key, "k" + id);
    EXPECT_EQ(r.payload, "v" + id);
    ASSERT_EQ(r.headers.size(), 1u);
    EXPECT_EQ(r.headers[0].name, "n");
    EXPECT_EQ(r.headers[0].value, std::to_string(r.offset));
    ASSERT_EQ(r.HeaderViews().size(), 1u);
    EXPECT_EQ(r.HeaderViews()[0].value, std::to_string(r.offset));
    EXPECT_GT(r.timestamp_ms, 0);
  }

  // Written after the ends were taken: not part of this read.
  kbus::kafka::Producer producer({.client = Client()});
  OutgoingRecord later{.topic = topic, .key = "later", .payload = "x"};
  later.partition = 0;
  ASSERT_THAT(producer.SendSync(later), IsOk());
  auto next = reader->Next(500ms);
  ASSERT_THAT(next, IsOk());
  EXPECT_FALSE(next->has_value());

  // A partition read to its end can be read again, up to a new end.
  ASSERT_THAT(reader->Assign({{.partition = 0, .from = 4, .to = 6}}), IsOk());
  EXPECT_EQ(ReadAll(*reader), (std::vector<std::string>{"0/4", "0/5"}));
}

TEST(PartitionReader, KeepsANullKeyAndANullValueApartFromEmptyOnes) {
  const std::string topic = TopicWith("reader-null", {0});
  kbus::kafka::Producer producer({.client = Client()});
  OutgoingRecord tombstone{.topic = topic, .key = "gone"};
  tombstone.partition = 0;
  tombstone.tombstone = true;
  ASSERT_THAT(producer.SendSync(tombstone), IsOk());
  OutgoingRecord keyless{.topic = topic, .payload = ""};
  keyless.partition = 0;
  ASSERT_THAT(producer.SendSync(keyless), IsOk());

  auto reader = Open(topic);
  ASSERT_NE(reader, nullptr);
  ASSERT_THAT(reader->Assign({{.partition = 0, .from = PartitionSpan::kBeginning, .to = 2}}), IsOk());
  std::vector<ReaderRecord> records;
  ReadAll(*reader, &records);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].key, "gone");
  EXPECT_FALSE(records[0].payload.has_value()) << "a tombstone";
  EXPECT_FALSE(records[1].key.has_value()) << "no key";
  EXPECT_EQ(records[1].payload, "") << "an empty value is not a null one";
}

TEST(PartitionReader, FromTheEndWithoutAnEndFollowsOnlyWhatIsWrittenLater) {
  const std::string topic = TopicWith("reader-follow", {2});
  auto reader = Open(topic);
  ASSERT_NE(reader, nullptr);
  ASSERT_THAT(reader->Assign({{.partition = 0, .from = PartitionSpan::kEnd}}), IsOk());
  EXPECT_FALSE(reader->AtEnd());
  // The assignment takes effect with the first fetch: wait until the reader is at the end.
  auto early = reader->Next(2s);
  ASSERT_THAT(early, IsOk());
  EXPECT_FALSE(early->has_value());

  kbus::kafka::Producer producer({.client = Client()});
  OutgoingRecord later{.topic = topic, .key = "later", .payload = "x"};
  later.partition = 0;
  ASSERT_THAT(producer.SendSync(later), IsOk());
  std::optional<ReaderRecord> got;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!got && std::chrono::steady_clock::now() < deadline) {
    auto next = reader->Next(100ms);
    ASSERT_THAT(next, IsOk());
    got = std::move(*next);
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->offset, 2);
  EXPECT_EQ(got->key, "later");
  EXPECT_FALSE(reader->AtEnd());
}

TEST(PartitionReader, TakesTheClientPropertiesOverItsDefaultsButNotThoseItsReadsRestOn) {
  const std::string topic = TopicWith("reader-props", {3});
  // -X bootstrap.servers wins over ClientConfig::brokers (nothing listens on port 1).
  ClientConfig client{.brokers = "127.0.0.1:1"};
  client.properties["bootstrap.servers"] = TestBroker::Get().bootstrap();
  // Ignored: the read must still stop at its end and start where it was told.
  client.properties["enable.partition.eof"] = "false";
  client.properties["auto.offset.reset"] = "latest";
  auto reader = Open(topic, client);
  ASSERT_NE(reader, nullptr);
  ASSERT_THAT(reader->Assign({{.partition = 0, .from = PartitionSpan::kBeginning, .to = 3}}), IsOk());
  EXPECT_EQ(ReadAll(*reader), (std::vector<std::string>{"0/0", "0/1", "0/2"}));

  // A property librdkafka refuses is named; a secret's value never shows.
  ClientConfig bad = Client();
  bad.properties["fetch.wait.max.ms"] = "soon";
  bad.properties["sasl.password"] = "hunter2";
  auto refused = PartitionReader::Open(bad, {.topic = topic});
  EXPECT_THAT(refused, ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("fetch.wait.max.ms")));
  EXPECT_THAT(refused, ErrorIs(ErrorCode::kInvalidArgument, Not(HasSubstr("hunter2"))));
}

TEST(PartitionReader, ATopicThatDoesNotExistIsNotFoundAtOnce) {
  const std::string topic = TestBroker::UniqueName("reader-missing");
  auto reader = Open(topic);
  ASSERT_NE(reader, nullptr);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(reader->Partitions(10s), ErrorIs(ErrorCode::kNotFound, HasSubstr("'" + topic + "' does not exist")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // Asking did not create it (the embedded broker creates topics a client names).
  EXPECT_THAT(reader->Partitions(10s), ErrorIs(ErrorCode::kNotFound, HasSubstr(topic)));
}

TEST(PartitionReader, CommitsAsItsGroupWithoutJoiningIt) {
  const std::string topic = TopicWith("reader-commit", {4, 1});
  const std::string group = TestBroker::UniqueName("reader-commit-group");
  auto reader = PartitionReader::Open(Client(), {.topic = topic, .group = group});
  ASSERT_THAT(reader, IsOk());
  auto before = (*reader)->Committed({0, 1}, 30s);
  ASSERT_THAT(before, IsOk());
  EXPECT_EQ(*before, (std::map<std::int32_t, std::int64_t>{{0, -1}, {1, -1}}));
  ASSERT_THAT((*reader)->Commit({{0, 3}}), IsOk());
  auto after = (*reader)->Committed({0, 1}, 30s);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(*after, (std::map<std::int32_t, std::int64_t>{{0, 3}, {1, -1}}));

  // Without a group there is nothing to commit as.
  auto groupless = Open(topic);
  ASSERT_NE(groupless, nullptr);
  EXPECT_THAT(groupless->Commit({{0, 1}}), ErrorIs(ErrorCode::kInvalidArgument));
}

}  // namespace
