// Dead-letter tooling on a real broker: ListDeadLetters reads what a Worker dead-lettered,
// Redrive sends it back where it came from with a cursor committed in Kafka, and the `kbus dlq`
// commands print and redrive the same records.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/dead_letters.hpp"

namespace {

using kbus::kafka::DeadLetterFilter;
using kbus::kafka::DeadLetterRecord;
using kbus::kafka::ListDeadLetters;
using kbus::kafka::Redrive;
using kbus::kafka::RedriveOptions;
using kbus::kafka::RedriveReport;
using kbus::test::Lines;
using kbus::test::ProcessResult;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;

kbus::kafka::ClientConfig Client() {
  kbus::kafka::ClientConfig c;
  c.brokers = TestBroker::Get().bootstrap();
  return c;
}

std::int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t IdOf(const std::string& payload) {
  kbus::JsonDocument doc;
  if (!doc.Parse(payload).ok()) return -1;
  auto id = doc.Root().Find("id");
  return id && id->IsInt64() ? id->GetInt64() : -1;
}

// Waits until "<group>.dlq" holds `count` records; returns them (fewer after a timeout).
std::vector<DeadLetterRecord> WaitForDeadLetters(const std::string& group, std::size_t count) {
  std::vector<DeadLetterRecord> records;
  WaitFor(
      [&] {
        auto listed = ListDeadLetters(Client(), group, {}, seconds(10));
        if (!listed.ok()) return false;  // kNotFound until the first dead letter creates the topic
        records = std::move(*listed);
        return records.size() >= count;
      },
      seconds(90));
  return records;
}

// What a handler saw of one delivery.
struct Seen {
  std::int64_t id = -1;
  std::optional<std::string> redrive_of;
  bool has_dlq_header = false;
  bool has_delivery_count = false;
};

// A worker for it.Work on `topic` that dead-letters the ids in `bad` while `reject` is set, and
// records every delivery it handles.
class RejectingWorker {
 public:
  RejectingWorker(const std::string& topic, const std::string& group, std::set<std::int64_t> bad)
      : bad_(std::move(bad)) {
    handlers_.Handle<it::Work>(
        [this](const it::Work& w, kbus::Context& ctx) {
          if (reject.load() && bad_.contains(w.id)) {
            return kbus::DeadLetter("bad work " + std::to_string(w.id));
          }
          Seen seen{.id = w.id};
          for (const auto& h : ctx.record().headers) {
            if (h.name == kbus::header::kRedriveOf) seen.redrive_of = std::string(h.value);
            if (h.name.starts_with(kbus::header::kDlqPrefix)) seen.has_dlq_header = true;
            if (h.name == kbus::header::kDeliveryCount) seen.has_delivery_count = true;
          }
          tally.Add(w.id);
          std::lock_guard lock(mu_);
          seen_.push_back(std::move(seen));
          return kbus::Ack();
        },
        {.topic = topic});
    worker_ = std::make_unique<it::RunningWorker>(it::WorkerConfigFor(group), handlers_);
  }

  std::vector<Seen> SeenIds(const std::set<std::int64_t>& ids) const {
    std::lock_guard lock(mu_);
    std::vector<Seen> out;
    for (const auto& s : seen_) {
      if (ids.contains(s.id)) out.push_back(s);
    }
    return out;
  }

  std::atomic<bool> reject{true};
  it::Tally tally;

 private:
  std::set<std::int64_t> bad_;
  kbus::HandlerRegistry handlers_;
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
  std::unique_ptr<it::RunningWorker> worker_;  // last: stopped before the rest goes
};

void SendWork(const std::string& topic, std::int64_t count) {
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (std::int64_t i = 0; i < count; ++i) {
    ASSERT_TRUE(producer.Produce(kbus::BuildRecord(it::Work{i, "t", "x"}, {.topic = topic})).ok());
  }
  ASSERT_TRUE(producer.Flush(seconds(60)).ok());
}

TEST(DeadLetters, ListedWithParsedFieldsAndRedrivenOnceToTheHandlerWithoutDiagnostics) {
  const std::string topic = TestBroker::UniqueName("dlq-work");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 2);
  const std::set<std::int64_t> bad = {3, 7, 11, 15, 19};
  RejectingWorker worker(topic, group, bad);
  const std::int64_t started_ms = NowMs();
  SendWork(topic, 20);

  const auto all = WaitForDeadLetters(group, bad.size());
  ASSERT_EQ(all.size(), bad.size());
  ASSERT_TRUE(WaitFor([&] { return worker.tally.Distinct() == 15; }));

  auto rejected = ListDeadLetters(Client(), group, {.reasons = {"rejected", "decode-error"}});
  ASSERT_TRUE(rejected.ok()) << rejected.error().ToString();
  ASSERT_EQ(rejected->size(), bad.size());
  std::set<std::int64_t> ids;
  for (const auto& r : *rejected) {
    const std::int64_t id = IdOf(r.payload);
    ids.insert(id);
    EXPECT_EQ(r.reason, "rejected");
    EXPECT_EQ(r.error, "bad work " + std::to_string(id));
    EXPECT_EQ(r.type, "it.Work");
    EXPECT_EQ(r.id.size(), 36u) << "kbus-id is kept";
    EXPECT_EQ(r.original_topic, topic);
    EXPECT_TRUE(r.original_partition == 0 || r.original_partition == 1) << r.original_partition;
    EXPECT_GE(r.original_offset, 0);
    EXPECT_GE(r.original_timestamp_ms, started_ms - 60'000);
    EXPECT_EQ(r.attempts, 1);
    EXPECT_GE(r.at_ms, started_ms);
    EXPECT_LE(r.at_ms, NowMs());
    EXPECT_EQ(r.FindHeader(kbus::header::kDlqGroup), group);
    EXPECT_GE(r.offset, 0);
  }
  EXPECT_EQ(ids, bad);

  auto none = ListDeadLetters(Client(), group, {.types = {"it.Nobody"}});
  ASSERT_TRUE(none.ok()) << none.error().ToString();
  EXPECT_EQ(none->size(), 0u);
  none = ListDeadLetters(Client(), group, {.reasons = {"decode-error"}});
  ASSERT_TRUE(none.ok()) << none.error().ToString();
  EXPECT_EQ(none->size(), 0u);
  none = ListDeadLetters(Client(), group, {.since_ms = NowMs() + 3'600'000});
  ASSERT_TRUE(none.ok()) << none.error().ToString();
  EXPECT_EQ(none->size(), 0u);
  auto two = ListDeadLetters(Client(), group, {.types = {"it.Work"}, .limit = 2});
  ASSERT_TRUE(two.ok()) << two.error().ToString();
  EXPECT_EQ(two->size(), 2u);

  // A dry run reports and moves nothing.
  auto dry = Redrive(Client(), group, {.dry_run = true});
  ASSERT_TRUE(dry.ok()) << dry.error().ToString();
  EXPECT_EQ(dry->redriven, bad.size());

  worker.reject = false;
  auto report = Redrive(Client(), group, {});
  ASSERT_TRUE(report.ok()) << report.error().ToString();
  EXPECT_EQ(report->redriven, bad.size());
  EXPECT_EQ(report->skipped, 0u);
  EXPECT_FALSE(report->stopped);
  ASSERT_TRUE(WaitFor([&] { return worker.tally.Distinct() == 20; }))
      << "missing " << worker.tally.Missing(20).size();

  std::set<std::string> expected_origins;
  for (const auto& r : *rejected) {
    expected_origins.insert(group + ".dlq/" + std::to_string(r.partition) + "/" +
                            std::to_string(r.offset));
  }
  std::set<std::string> origins;
  for (const auto& seen : worker.SeenIds(bad)) {
    ASSERT_TRUE(seen.redrive_of.has_value()) << "id " << seen.id;
    origins.insert(*seen.redrive_of);
    EXPECT_FALSE(seen.has_dlq_header) << "id " << seen.id;
    EXPECT_FALSE(seen.has_delivery_count) << "id " << seen.id;
  }
  EXPECT_EQ(origins, expected_origins);

  // The cursor was committed: a second run finds nothing left.
  auto again = Redrive(Client(), group, {});
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->redriven, 0u);
  EXPECT_EQ(again->skipped, 0u);
  EXPECT_EQ(worker.tally.Deliveries(), 20u) << "nothing was handled twice";
}

TEST(DeadLetters, AnInterruptedRedriveLosesNothingAndTheNextRunCompletesIt) {
  const std::string topic = TestBroker::UniqueName("dlq-stop");
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(topic, 3);
  constexpr std::int64_t kCount = 30;
  std::set<std::int64_t> all;
  for (std::int64_t i = 0; i < kCount; ++i) all.insert(i);
  RejectingWorker worker(topic, group, all);
  SendWork(topic, kCount);
  ASSERT_EQ(WaitForDeadLetters(group, kCount).size(), static_cast<std::size_t>(kCount));
  worker.reject = false;

  std::atomic<std::size_t> acknowledged{0};
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    WaitFor([&] { return acknowledged.load() >= 5; });
    stop = true;
  });
  RedriveOptions options;
  // Slow enough that the run is still going when the stop comes: a new producer's first
  // acknowledgement takes about a second (on both brokers), and the re-sends queued until
  // then are all in flight at once.
  options.max_per_second = 10;
  options.on_record = [&](const DeadLetterRecord&, bool, const RedriveReport& so_far) {
    acknowledged = so_far.redriven;
  };
  const auto started = std::chrono::steady_clock::now();
  auto first = Redrive(Client(), group, options, &stop);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  stopper.join();
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  EXPECT_TRUE(first->stopped);
  EXPECT_GE(first->redriven, 5u);
  EXPECT_LT(first->redriven, static_cast<std::size_t>(kCount));
  // 10 per second, evenly spaced: n re-sends take at least (n - 1) / 10 s.
  EXPECT_GE(elapsed, milliseconds(100) * static_cast<int>(first->redriven - 1));

  auto second = Redrive(Client(), group, {});
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_FALSE(second->stopped);
  // A stop waits for the re-sends in flight and commits them, so the runs split the records.
  EXPECT_EQ(first->redriven + second->redriven, static_cast<std::size_t>(kCount));

  ASSERT_TRUE(WaitFor([&] { return worker.tally.Distinct() == kCount; }))
      << "lost " << worker.tally.Missing(kCount).size();
  const std::size_t duplicates = worker.tally.Deliveries() - worker.tally.Distinct();
  RecordProperty("duplicates", static_cast<int>(duplicates));
  std::printf("interrupted redrive: first run %zu in %lld ms, second %zu, %zu handled twice\n",
              first->redriven,
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(elapsed).count()),
              second->redriven, duplicates);
  // Redrive itself re-sends nothing twice after a clean stop (checked just above); allow one
  // repeat from the worker's side, which commits its own progress every 200 ms.
  EXPECT_LE(duplicates, 1u);
}

// Dead letters written directly, as a worker of `group` would have.
void WriteDeadLetters(const std::string& group, const std::string& original_topic,
                      const std::vector<std::string>& reasons) {
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (std::size_t i = 0; i < reasons.size(); ++i) {
    kbus::OutgoingRecord original = kbus::BuildRecord(
        it::Work{static_cast<std::int64_t>(i), "t", reasons[i]}, {.topic = original_topic});
    original.SetHeader(kbus::header::kDeliveryCount, "4");
    original.SetHeader("x-app", "kept");
    std::vector<kbus::HeaderView> views;
    for (const auto& h : original.headers) views.push_back({h.name, h.value});
    const std::string key = "key-" + std::to_string(i);
    const kbus::InboundRecord inbound{.topic = original_topic,
                                      .partition = 0,
                                      .offset = static_cast<std::int64_t>(i),
                                      .timestamp_ms = NowMs(),
                                      .key = key,
                                      .payload = original.payload,
                                      .headers = views};
    const kbus::OutgoingRecord dead = kbus::MakeDeadLetter(
        inbound, {.group = group, .reason = reasons[i], .error = "error " + std::to_string(i),
                  .attempts = 2, .host = "test-host"});
    ASSERT_TRUE(producer.SendSync(dead).ok());
  }
}

TEST(DeadLetters, RecordsTheFilterSkipsAreBehindTheCursorUntilARunFromTheBeginning) {
  const std::string group = TestBroker::UniqueName("g");
  const std::string target = TestBroker::UniqueName("dlq-target");
  TestBroker::Get().CreateTopic(kbus::DeadLetterTopic(group), 1);
  TestBroker::Get().CreateTopic(target, 1);
  WriteDeadLetters(group, "it.work.elsewhere",
                   {"rejected", "decode-error", "rejected", "decode-error"});

  auto first = Redrive(Client(), group, {.filter = {.reasons = {"rejected"}}, .to_topic = target});
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  EXPECT_EQ(first->redriven, 2u);
  EXPECT_EQ(first->skipped, 2u);

  const auto copies = kbus::test::ReadTopic(TestBroker::Get().bootstrap(), target, 2, seconds(30));
  ASSERT_EQ(copies.size(), 2u);
  for (const auto& c : copies) {
    EXPECT_EQ(c.FindHeader("x-app"), "kept");
    EXPECT_EQ(c.FindHeader(std::string(kbus::header::kType)), "it.Work");
    EXPECT_FALSE(c.FindHeader(std::string(kbus::header::kDeliveryCount)).has_value())
        << "the delivery count starts over";
    EXPECT_FALSE(c.FindHeader(std::string(kbus::header::kDlqReason)).has_value());
    EXPECT_FALSE(c.FindHeader(std::string(kbus::header::kDlqAt)).has_value());
    const std::int64_t id = IdOf(c.payload);
    EXPECT_TRUE(id == 0 || id == 2) << c.payload;
    EXPECT_EQ(c.key, "key-" + std::to_string(id));
    EXPECT_EQ(c.FindHeader(std::string(kbus::header::kRedriveOf)),
              kbus::DeadLetterTopic(group) + "/0/" + std::to_string(id));
  }

  // The skipped records are behind the cursor now.
  auto second = Redrive(Client(), group, {.to_topic = target});
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_EQ(second->redriven, 0u);
  EXPECT_EQ(second->skipped, 0u);

  auto dry =
      Redrive(Client(), group, {.to_topic = target, .dry_run = true, .from_beginning = true});
  ASSERT_TRUE(dry.ok()) << dry.error().ToString();
  EXPECT_EQ(dry->redriven, 4u);
  auto reset = Redrive(
      Client(), group,
      {.filter = {.reasons = {"decode-error"}}, .to_topic = target, .from_beginning = true});
  ASSERT_TRUE(reset.ok()) << reset.error().ToString();
  EXPECT_EQ(reset->redriven, 2u);
  EXPECT_EQ(reset->skipped, 2u);
  EXPECT_EQ(kbus::test::ReadTopic(TestBroker::Get().bootstrap(), target, 4, seconds(30)).size(),
            4u);
}

TEST(DeadLetters, ListingTheDeadLettersOfAGroupWithoutATopicSaysSo) {
  auto listed = ListDeadLetters(Client(), TestBroker::UniqueName("nobody"), {}, seconds(10));
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.error().code(), kbus::ErrorCode::kNotFound) << listed.error().ToString();
}

// ---- the kbus dlq commands ----

ProcessResult Kbus(std::vector<std::string> args) {
  args.insert(args.begin(), KBUS_CLI_PATH);
  return kbus::test::RunProcess(args, seconds(60));
}

TEST(KbusDlq, ListPrintsALinePerRecordShowPrintsOneAndRedriveSummarises) {
  const std::string group = TestBroker::UniqueName("g");
  const std::string target = TestBroker::UniqueName("dlq-cli-target");
  TestBroker::Get().CreateTopic(kbus::DeadLetterTopic(group), 1);
  TestBroker::Get().CreateTopic(target, 1);
  WriteDeadLetters(group, target, {"rejected", "decode-error", "rejected"});
  const std::string& brokers = TestBroker::Get().bootstrap();

  ProcessResult list = Kbus({"dlq", "list", "--brokers", brokers, "--group", group});
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  const auto lines = Lines(list.out);
  ASSERT_EQ(lines.size(), 3u) << list.out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    kbus::JsonDocument doc;
    ASSERT_TRUE(doc.Parse(lines[i]).ok()) << lines[i];
    const kbus::JsonValue root = doc.Root();
    EXPECT_EQ(root.Find("offset")->GetInt64(), static_cast<std::int64_t>(i)) << lines[i];
    EXPECT_EQ(root.Find("partition")->GetInt64(), 0) << lines[i];
    EXPECT_EQ(root.Find("reason")->GetString(), i == 1 ? "decode-error" : "rejected") << lines[i];
    EXPECT_EQ(root.Find("type")->GetString(), "it.Work") << lines[i];
    EXPECT_EQ(root.Find("original_topic")->GetString(), target) << lines[i];
    EXPECT_EQ(root.Find("original_offset")->GetInt64(), static_cast<std::int64_t>(i)) << lines[i];
    EXPECT_EQ(root.Find("attempts")->GetInt64(), 2) << lines[i];
    EXPECT_EQ(root.Find("error")->GetString(), "error " + std::to_string(i)) << lines[i];
    EXPECT_EQ(root.Find("key")->GetString(), "key-" + std::to_string(i)) << lines[i];
    EXPECT_TRUE(root.Find("at")->IsInt64()) << lines[i];
  }
  list = Kbus({"dlq", "list", "--brokers", brokers, "--group", group, "--reason", "decode-error"});
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  EXPECT_EQ(Lines(list.out).size(), 1u) << list.out;

  const ProcessResult show = Kbus({"dlq", "show", "--brokers", brokers, "--group", group, "0:1"});
  ASSERT_EQ(show.exit_code, 0) << show.Describe();
  kbus::JsonDocument doc;
  ASSERT_TRUE(doc.Parse(show.out).ok()) << show.out;
  const kbus::JsonValue root = doc.Root();
  ASSERT_TRUE(root.Find("payload") && root.Find("payload")->IsObject()) << show.out;
  EXPECT_EQ(root.Find("payload")->Find("body")->GetString(), "decode-error") << show.out;
  EXPECT_EQ(root.Find("reason")->GetString(), "decode-error") << show.out;
  EXPECT_EQ(root.Find("headers")->Find("x-app")->GetString(), "kept") << show.out;

  const ProcessResult missing =
      Kbus({"dlq", "show", "--brokers", brokers, "--group", group, "0:99"});
  EXPECT_EQ(missing.exit_code, 1) << missing.Describe();
  EXPECT_NE(missing.err.find("no record"), std::string::npos) << missing.err;

  const ProcessResult redrive = Kbus({"dlq", "redrive", "--brokers", brokers, "--group", group,
                                      "--reason", "rejected", "--rate", "100"});
  ASSERT_EQ(redrive.exit_code, 0) << redrive.Describe();
  EXPECT_EQ(redrive.out, "redriven 2, skipped 1\n");
  EXPECT_EQ(kbus::test::ReadTopic(brokers, target, 2, seconds(30)).size(), 2u);
}

TEST(KbusDlq, ShowPrintsADeadLetterNestedTooDeepAsBoundedTextWithANoteInsteadOfCrashing) {
  const std::string group = TestBroker::UniqueName("g");
  TestBroker::Get().CreateTopic(kbus::DeadLetterTopic(group), 1);
  // Valid JSON, 150,000 levels of arrays and 50,000 of objects, each 300 KB.
  const std::string arrays = std::string(150'000, '[') + std::string(150'000, ']');
  std::string objects;
  for (int i = 0; i < 50'000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(50'000, '}');
  const std::vector<const std::string*> payloads = {&arrays, &objects};
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (const std::string* payload : payloads) {
    const std::vector<kbus::HeaderView> headers = {{"kbus-type", "it.Work"}, {"x-bytes", "\xc3\x28"}};
    const kbus::InboundRecord inbound{.topic = "it.deep", .partition = 0, .offset = 0,
                                      .timestamp_ms = NowMs(), .key = "k", .payload = *payload,
                                      .headers = headers};
    ASSERT_TRUE(producer
                    .SendSync(kbus::MakeDeadLetter(
                        inbound, {.group = group, .reason = "decode-error", .error = "too deep",
                                  .attempts = 1, .host = "test-host"}))
                    .ok());
  }
  const std::string& brokers = TestBroker::Get().bootstrap();
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    const std::string ref = "0:" + std::to_string(i);
    const ProcessResult show = Kbus({"dlq", "show", "--brokers", brokers, "--group", group, ref});
    ASSERT_EQ(show.exit_code, 0) << ref << ": " << show.Describe();
    // 64 KiB of payload, its quotes escaped, and the rest of the record.
    EXPECT_LT(show.out.size(), 2 * 65'536u + 4096) << ref << ": the raw payload is shown bounded";
    kbus::JsonDocument doc;
    ASSERT_TRUE(doc.Parse(show.out).ok()) << show.out.substr(0, 300);
    const kbus::JsonValue root = doc.Root();
    ASSERT_TRUE(root.Find("payload") && root.Find("payload")->IsString()) << ref;
    EXPECT_EQ(root.Find("payload")->GetString().size(), 65536u) << ref;
    ASSERT_TRUE(root.Find("payload_note").has_value()) << show.out.substr(0, 300);
    const std::string note(root.Find("payload_note")->GetString());
    EXPECT_NE(note.find("nests deeper than 128 levels"), std::string::npos) << note;
    EXPECT_NE(note.find("the first 65536 of " + std::to_string(payloads[i]->size()) + " bytes"),
              std::string::npos)
        << note;
    EXPECT_EQ(root.Find("headers")->Find("x-bytes")->GetString(), "\xef\xbf\xbd(") << ref;
    EXPECT_EQ(root.Find("reason")->GetString(), "decode-error") << ref;
  }
  const ProcessResult list = Kbus({"dlq", "list", "--brokers", brokers, "--group", group});
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  EXPECT_EQ(Lines(list.out).size(), 2u) << list.out.substr(0, 300);
}

TEST(KbusDlq, BadUsageExitsWithTwoAndNamesTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"dlq", "show", "--group", "g", "3"}, "PARTITION:OFFSET"},
      {{"dlq", "show", "--group", "g"}, "PARTITION:OFFSET"},
      {{"dlq", "redrive", "--group", "g", "--rate", "-1"}, "--rate"},
      {{"dlq", "list", "--group", "g", "--limit", "0"}, "--limit"},
      {{"dlq", "list", "--group", "g", "--since", "yesterday"}, "--since"},
      {{"dlq", "list"}, "--group"},
      {{"dlq"}, "dlq list"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = c.args;
    if (args.size() > 1) args.insert(args.begin() + 2, {"--brokers", "localhost:1"});
    const ProcessResult r = Kbus(args);
    EXPECT_EQ(r.exit_code, 2) << r.Describe();
    EXPECT_NE(r.err.find(c.names), std::string::npos) << r.err;
  }
}

}  // namespace
