// Bad input never stops a worker and is never lost: each kind lands in <group>.dlq with its
// reason and the original bytes, and the good records around it are handled.

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <mutex>
#include <set>
#include <vector>

#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "kbus/log.hpp"

namespace {

using kbus::test::ReadRecord;
using kbus::test::ReadTopic;
using kbus::test::TestBroker;
using kbus::test::WaitFor;

kbus::OutgoingRecord Raw(const std::string& topic, std::string payload,
                         std::vector<kbus::Header> headers, std::string key = "k") {
  kbus::OutgoingRecord r;
  r.topic = topic;
  r.key = std::move(key);
  r.payload = std::move(payload);
  r.headers = std::move(headers);
  return r;
}

// A bad record sent with an "x-case" header, and what its dead letter must say.
struct Case {
  std::string name;
  kbus::OutgoingRecord record;
  std::string reason;
  std::string error_fragment;
};

// Reads `group`'s dead letters and checks that each case is there with its reason, an error
// naming what was wrong, and the original bytes. Returns each case's dead letter, in order.
std::vector<ReadRecord> ExpectEachDeadLettered(const std::string& group, const std::vector<Case>& cases) {
  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), cases.size(),
                             std::chrono::seconds(90));
  EXPECT_EQ(dlq.size(), cases.size());
  std::vector<ReadRecord> found;
  for (const auto& c : cases) {
    auto it = std::find_if(dlq.begin(), dlq.end(),
                           [&](const ReadRecord& r) { return r.FindHeader("x-case") == c.name; });
    if (it == dlq.end()) {
      ADD_FAILURE() << c.name << " is not in the dead-letter topic";
      continue;
    }
    EXPECT_EQ(it->FindHeader("kbus-dlq-reason"), c.reason) << c.name;
    const std::string error = it->FindHeader("kbus-dlq-error").value_or("");
    EXPECT_NE(error.find(c.error_fragment), std::string::npos) << c.name << ": " << error;
    EXPECT_EQ(it->payload, c.record.payload) << c.name << ": the original bytes are kept";
    found.push_back(*it);
  }
  return found;
}

TEST(BadInput, EachKindGoesToTheDeadLetterTopicWithItsReasonAndTheWorkerGoesOn) {
  const std::string topic = TestBroker::UniqueName("it-bad");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);  // one partition: good and bad records interleave
  it::Tally tally;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>([&](const it::Work& w, kbus::Context&) { tally.Add(w.id); }, {.topic = topic});
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);

  const std::vector<kbus::Header> work_type = {{"kbus-type", "it.Work"}, {"kbus-id", "bad-1"}};
  const std::string one_mb = R"({"id":"not a number","tenant":")" + std::string(1'000'000 - 40, 'x') + R"("})";
  std::vector<Case> cases = {
      {"malformed", Raw(topic, R"({"id":1,)", work_type), "decode-error", "malformed JSON"},
      {"wrong-type", Raw(topic, R"({"id":"one","tenant":"t"})", work_type), "decode-error", "field 'id'"},
      {"unknown-type", Raw(topic, R"({"id":1})", {{"kbus-type", "it.Nobody"}}), "unknown-type", "it.Nobody"},
      {"empty", Raw(topic, "", work_type), "decode-error", "empty payload"},
      {"one-megabyte", Raw(topic, one_mb, work_type), "decode-error", "field 'id'"},
      {"no-headers", Raw(topic, R"({"id":2,"tenant":"t"})", {}), "unknown-type", "no kbus-type header"},
  };

  kbus::kafka::Producer producer(it::ProducerConfig());
  std::int64_t good = 0;
  auto send_good = [&] {
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{good++, "t", ""}, {.topic = topic})).ok());
  };
  send_good();
  for (auto& c : cases) {
    c.record.SetHeader("x-case", c.name);
    ASSERT_TRUE(producer.SendSync(c.record).ok()) << c.name;
    send_good();
  }
  // An event nobody in this group handles: skipped and counted, not dead-lettered.
  ASSERT_TRUE(producer.SendSync(Raw(topic, "{}", {{"kbus-type", "it.SomeoneElses"}, {"kbus-kind", "event"}})).ok());
  send_good();

  const std::vector<ReadRecord> dlq = ExpectEachDeadLettered(group, cases);
  ASSERT_EQ(dlq.size(), cases.size());
  for (const ReadRecord& r : dlq) {
    EXPECT_EQ(r.key, "k") << *r.FindHeader("x-case");
    EXPECT_EQ(r.FindHeader("kbus-dlq-original-topic"), topic);
    EXPECT_EQ(r.FindHeader("kbus-dlq-group"), group);
    EXPECT_EQ(r.FindHeader("kbus-dlq-attempts"), "1") << "bad input is not retried";
    EXPECT_TRUE(r.FindHeader("kbus-dlq-original-offset").has_value());
    EXPECT_TRUE(r.FindHeader("kbus-dlq-host").has_value());
  }
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == static_cast<std::size_t>(good); }))
      << "good records after bad ones were not all handled";
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().skipped == 1; }));
  // The count follows the broker's acknowledgement, which may come after a reader saw the record.
  EXPECT_TRUE(WaitFor([&] { return worker.Stats().dead_lettered == cases.size(); }))
      << worker.Stats().dead_lettered;
}

// kbus promises plain JSON on the wire: a field that is not UTF-8 is a decode error naming it,
// and no message kbus sends carries such bytes, whatever its input or its handler held.
TEST(BadInput, InvalidUtf8IsDeadLetteredAsADecodeErrorNamingTheFieldAndNeverSentOn) {
  const std::string topic = TestBroker::UniqueName("it-utf8");
  const std::string out = topic + "-out";
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  TestBroker::Get().CreateTopic(out, 1);
  it::Tally tally;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        // Echoes the tenant on; "cut" makes the handler send half a character, as a careless
        // truncation does: the attempt must fail rather than send it.
        ctx.Send(it::Work{w.id, w.tenant, ""}, {.topic = out});
        if (w.tenant == "cut") ctx.Send(it::Work{w.id, "caf\xc3", ""}, {.topic = out});
        tally.Add(w.id);
      },
      {.topic = topic, .policy = {.max_deliveries = 2}});
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);

  const std::vector<kbus::Header> work_type = {{"kbus-type", "it.Work"}, {"kbus-id", "utf8-1"}};
  std::vector<Case> cases = {
      {"ff-fe", Raw(topic, "{\"id\":100,\"tenant\":\"\xff\xfe\"}", work_type), "decode-error",
       "field 'tenant' is not valid UTF-8"},
      {"c3-28", Raw(topic, "{\"id\":101,\"tenant\":\"t\",\"body\":\"\xc3\x28\"}", work_type),
       "decode-error", "field 'body' is not valid UTF-8"},
      {"overlong", Raw(topic, "{\"id\":102,\"tenant\":\"\xc0\xaf\"}", work_type), "decode-error",
       "field 'tenant' is not valid UTF-8"},
      {"surrogate", Raw(topic, "{\"id\":103,\"tenant\":\"\xed\xa0\x80\"}", work_type), "decode-error",
       "field 'tenant' is not valid UTF-8"},
      {"escape", Raw(topic, R"({"id":104,"tenant":"\ud800"})", work_type), "decode-error",
       "field 'tenant' is not valid UTF-8"},
      {"header", Raw(topic, R"({"id":105,"tenant":"t"})",
                     {{"kbus-type", "it.Work"}, {"kbus-id", "utf8-2"}, {"kbus-correlation-id", "\xff"}}),
       "decode-error", "header 'kbus-correlation-id' is not valid UTF-8"},
      {"handler-cut", Raw(topic, R"({"id":106,"tenant":"cut"})", work_type), "handler-error",
       "field 'tenant' is not valid UTF-8"},
  };

  kbus::kafka::Producer producer(it::ProducerConfig());
  // kbus's own producer refuses to send such a message at all.
  const kbus::Status refused = producer.Send(it::Work{99, "caf\xc3", ""}, {.topic = topic});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), kbus::ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().message().find("field 'tenant' is not valid UTF-8"), std::string::npos)
      << refused.error().message();
  std::int64_t good = 0;
  auto send_good = [&] {
    ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{good++, "caf\xc3\xa9", ""}, {.topic = topic})).ok());
  };
  send_good();
  for (auto& c : cases) {
    c.record.SetHeader("x-case", c.name);
    ASSERT_TRUE(producer.SendSync(c.record).ok()) << c.name;
    send_good();
  }

  for (const ReadRecord& r : ExpectEachDeadLettered(group, cases)) {
    for (const auto& h : r.headers) {
      if (h.name.starts_with("kbus-dlq-")) {
        EXPECT_TRUE(kbus::IsValidUtf8(h.value)) << *r.FindHeader("x-case") << ": " << h.name;
      }
    }
  }
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == static_cast<std::size_t>(good); }))
      << "good records after bad ones were not all handled";
  // What the handlers sent: the good records' echoes, each valid UTF-8 JSON, nothing else.
  const auto sent = ReadTopic(TestBroker::Get().bootstrap(), out, static_cast<std::size_t>(good));
  ASSERT_EQ(sent.size(), static_cast<std::size_t>(good));
  std::set<std::int64_t> ids;
  for (const auto& r : sent) {
    auto work = kbus::FromJson<it::Work>(r.payload);
    ASSERT_TRUE(work.ok()) << work.error().message();
    EXPECT_EQ(work->tenant, "caf\xc3\xa9");
    ids.insert(work->id);
    for (const auto& h : r.headers) EXPECT_TRUE(kbus::IsValidUtf8(h.value)) << h.name;
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(good)) << "only the good records' echoes were sent";
  EXPECT_LT(*ids.rbegin(), 100) << "an echo of a refused record was sent";
}

// A sink for the whole process's log lines, in a file (a pipe would block a long line), for as
// long as it lives.
class CapturedLog {
 public:
  CapturedLog() : file_(std::tmpfile()) {
    // Appended whatever the offset reading moves.
    ::fcntl(fileno(file_), F_SETFL, ::fcntl(fileno(file_), F_GETFL) | O_APPEND);
    kbus::SetLogSink(kbus::MakeJsonLogSink(fileno(file_)));
  }
  ~CapturedLog() {
    kbus::SetLogSink(nullptr);
    std::fclose(file_);
  }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::vector<std::string> Lines() const {
    std::vector<std::string> out;
    std::rewind(file_);
    std::string line;
    for (int c; (c = std::fgetc(file_)) != EOF;) {
      if (c == '\n') {
        out.push_back(std::move(line));
        line.clear();
      } else {
        line += static_cast<char>(c);
      }
    }
    return out;
  }

 private:
  std::FILE* file_;
};

TEST(BadInput, AHugeTypeHeaderIsDeadLetteredAndTheWorkersLogStaysBounded) {
  const std::string topic = TestBroker::UniqueName("it-huge-type");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>([](const it::Work&, kbus::Context&) {}, {.topic = topic});
  CapturedLog log;
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);
  const std::string huge_type = "it." + std::string(300 * 1024, 'T') + "\xff";
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(Raw(topic, R"({"id":1,"tenant":"t"})", {{"kbus-type", huge_type}})).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1,
                             std::chrono::seconds(90));
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "unknown-type");
  EXPECT_EQ(dlq[0].FindHeader("kbus-type"), huge_type) << "the original header is kept";
  const std::string error = dlq[0].FindHeader("kbus-dlq-error").value_or("");
  EXPECT_LE(error.size(), 4096u);
  EXPECT_TRUE(kbus::IsValidUtf8(error));
  ASSERT_TRUE(WaitFor([&] { return worker.Stats().dead_lettered == 1; }));

  bool logged = false;
  for (const std::string& line : log.Lines()) {
    EXPECT_LT(line.size(), 16u * 1024) << line.substr(0, 200);
    kbus::JsonDocument doc;
    EXPECT_TRUE(doc.Parse(line).ok()) << line.substr(0, 200);
    if (line.find("\"dead-lettering record\"") != std::string::npos) {
      logged = true;
      EXPECT_NE(line.find("(truncated, "), std::string::npos) << line.substr(0, 200);
    }
  }
  EXPECT_TRUE(logged) << "the worker logs each dead-lettered record";
}

TEST(BadInput, AHandlerThatKeepsFailingIsDeadLetteredAfterMaxDeliveries) {
  const std::string topic = TestBroker::UniqueName("it-fail");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  it::Tally tally;
  std::atomic<int> failing_runs{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) -> kbus::Outcome {
        if (w.tenant == "poison") {
          ++failing_runs;
          EXPECT_EQ(ctx.attempt(), failing_runs.load());
          EXPECT_EQ(ctx.envelope().delivery_count, failing_runs.load() - 1);
          throw std::runtime_error("cannot process tenant poison");
        }
        tally.Add(w.id);
        return kbus::Ack();
      },
      {.topic = topic});
  auto config = it::WorkerConfigFor(group);
  config.max_deliveries = 4;
  it::RunningWorker worker(config, handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{0, "ok", ""}, {.topic = topic})).ok());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{99, "poison", ""}, {.topic = topic})).ok());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{1, "ok", ""}, {.topic = topic})).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "handler-error");
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-attempts"), "4");
  EXPECT_NE(dlq[0].FindHeader("kbus-dlq-error")->find("cannot process tenant poison"), std::string::npos);
  EXPECT_EQ(failing_runs.load(), 4);
  ASSERT_TRUE(WaitFor([&] { return tally.Distinct() == 2; })) << "the record after the failing one waited forever";
  EXPECT_EQ(worker.Stats().retried, 3u);
}

TEST(BadInput, AMessageTypesPolicyOverridesTheWorkerAndItsBackoffIsRespected) {
  const std::string topic = TestBroker::UniqueName("it-policy");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> runs;
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work&, kbus::Context&) {
        std::lock_guard lock(mu);
        runs.push_back(std::chrono::steady_clock::now());
        return kbus::Retry();
      },
      {.topic = topic,
       .policy = {.max_deliveries = 3,
                  .retry_backoff_initial = std::chrono::milliseconds(400),
                  .retry_backoff_max = std::chrono::milliseconds(400)}});
  auto config = it::WorkerConfigFor(group);
  config.max_deliveries = 10;  // the type's 3 wins
  it::RunningWorker worker(config, handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.SendSync(kbus::BuildRecord(it::Work{1, "t", ""}, {.topic = topic})).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-attempts"), "3");
  std::lock_guard lock(mu);
  ASSERT_EQ(runs.size(), 3u);
  // Equal jitter: at least half the backoff is fixed, so no retry comes sooner than 200 ms.
  for (std::size_t i = 1; i < runs.size(); ++i) {
    EXPECT_GE(runs[i] - runs[i - 1], std::chrono::milliseconds(200)) << "retry " << i << " came early";
  }
}

TEST(BadInput, MessagesThatCanNeverBeSentAreSentAgainWithoutRerunningTheHandlerThenDeadLettered) {
  const std::string topic = TestBroker::UniqueName("it-unsendable");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 1);
  std::atomic<int> runs{0};
  kbus::HandlerRegistry handlers;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context& ctx) {
        ++runs;
        // Larger than any broker takes (message.max.bytes): no round of sends can succeed.
        ctx.SendRaw("it.Huge", kbus::MessageKind::kEvent, "\"" + std::string(2 << 20, 'x') + "\"",
                    {.topic = topic + "-out"});
        (void)w;
      },
      {.topic = topic, .policy = {.max_deliveries = 3}});
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  const kbus::OutgoingRecord sent = kbus::BuildRecord(it::Work{5, "t", ""}, {.topic = topic});
  ASSERT_TRUE(producer.SendSync(sent).ok());

  const auto dlq = ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), 1);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].FindHeader("kbus-dlq-reason"), "publish-error");
  // The worker frees a record's parsed headers after a successful run; the copy, made later,
  // still carries every one of them.
  for (const kbus::Header& h : sent.headers) EXPECT_EQ(dlq[0].FindHeader(h.name), h.value) << h.name;
  EXPECT_NE(dlq[0].FindHeader("kbus-dlq-error").value_or("").find("3 rounds"), std::string::npos)
      << dlq[0].FindHeader("kbus-dlq-error").value_or("");
  EXPECT_EQ(runs.load(), 1) << "the handler ran again although only its sends failed";
}

}  // namespace
