// `kbus schedules` and `kbus delayed`, driven as an operator drives them: the built kbus tool
// against a real kbus-scheduler process, both as child processes, on the test broker (embedded
// or real Kafka). One scheduler serves the whole suite; each test has its own schedules and
// target topics.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "test_broker.hpp"

namespace kbus::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kToolTimeout = seconds(60);
constexpr std::string_view kKnownType = "test.Tick";

const std::string& Bootstrap() { return TestBroker::Get().bootstrap(); }

ProcessResult Kbus(std::vector<std::string> args, std::string stdin_data = {}) {
  args.insert(args.begin(), KBUS_CLI_PATH);
  return RunProcess(args, kToolTimeout, std::move(stdin_data));
}

std::string NewTopic(const std::string& prefix, int partitions) {
  std::string topic = TestBroker::UniqueName(prefix);
  TestBroker::Get().CreateTopic(topic, partitions);
  return topic;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::optional<std::string> HeaderOf(const kafka::ReaderRecord& r, std::string_view name) {
  std::optional<std::string> out;
  for (const auto& h : r.headers) {
    if (h.name == name) out = h.value.value_or("");
  }
  return out;
}

// Reads `topic` from its beginning until `done(records so far)` holds or `timeout` passes;
// returns what it read.
std::vector<kafka::ReaderRecord> ReadUntil(const std::string& topic,
                                           const std::function<bool(const std::vector<kafka::ReaderRecord>&)>& done,
                                           milliseconds timeout) {
  std::vector<kafka::ReaderRecord> out;
  kafka::ClientConfig client;
  client.brokers = Bootstrap();
  auto reader = kafka::PartitionReader::Open(client, {.topic = topic});
  if (!reader.ok()) {
    ADD_FAILURE() << reader.error().message();
    return out;
  }
  auto parts = (*reader)->Partitions();
  if (!parts.ok()) {
    ADD_FAILURE() << parts.error().message();
    return out;
  }
  std::vector<kafka::PartitionSpan> spans;
  for (const auto& p : *parts) spans.push_back({.partition = p.partition});
  if (Status s = (*reader)->Assign(spans); !s.ok()) {
    ADD_FAILURE() << s.error().message();
    return out;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(out) && std::chrono::steady_clock::now() < deadline) {
    auto next = (*reader)->Next(milliseconds(100));
    if (next.ok() && *next) out.push_back(std::move(**next));
  }
  return out;
}

bool HasId(const std::vector<kafka::ReaderRecord>& records, const std::string& id) {
  return std::any_of(records.begin(), records.end(),
                     [&](const kafka::ReaderRecord& r) { return HeaderOf(r, header::kId) == id; });
}

// The lines of `text` after the line starting with `title`, up to the next empty line.
std::vector<std::string> Section(const std::string& text, std::string_view title) {
  std::vector<std::string> out;
  bool in = false;
  for (const auto& line : Lines(text)) {
    if (in && line.empty()) break;
    if (in) out.push_back(line);
    if (line.rfind(title, 0) == 0) in = true;
  }
  return out;
}

// "2026-12-24T18:00:00Z" or with milliseconds.
bool LooksLikeUtcTime(std::string_view text) {
  return text.size() >= 20 && text[4] == '-' && text[10] == 'T' && text.back() == 'Z';
}

TEST(KbusSchedulesHelp, ToolHelpListsTheCommandsAndEachCommandItsFlags) {
  const std::map<std::vector<std::string>, std::vector<std::string>> expected = {
      {{"--help"},
       {"schedules create", "schedules list", "schedules describe", "schedules pause", "schedules resume",
        "schedules trigger", "schedules backfill", "schedules delete", "delayed list", "delayed cancel"}},
      {{"schedules", "create", "--help"},
       {"--brokers", "--schedules-topic", "--wait-ms", "--no-wait", "--id", "--cron", "--every", "--time-zone",
        "--jitter", "--start", "--end", "--type", "--topic", "--key", "--payload", "--header", "--overlap",
        "--catch-up-window", "--catch-up", "--ends-on", "--run-timeout", "--paused", "--note"}},
      {{"schedules", "list", "--help"}, {"--brokers", "--schedules-topic", "--json", "--timeout-ms"}},
      {{"schedules", "describe", "--help"}, {"--brokers", "--schedules-topic", "--json"}},
      {{"schedules", "pause", "--help"}, {"--schedules-topic", "--wait-ms", "--note"}},
      {{"schedules", "resume", "--help"}, {"--schedules-topic", "--wait-ms"}},
      {{"schedules", "trigger", "--help"}, {"--schedules-topic", "--wait-ms"}},
      {{"schedules", "backfill", "--help"}, {"--schedules-topic", "--wait-ms", "--from", "--to"}},
      {{"schedules", "delete", "--help"}, {"--schedules-topic", "--wait-ms"}},
      {{"delayed", "list", "--help"}, {"--brokers", "--pending-topic", "--limit", "--json"}},
      {{"delayed", "cancel", "--help"}, {"--brokers", "--pending-topic"}},
  };
  for (const auto& [args, options] : expected) {
    const ProcessResult r = Kbus(args);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    for (const auto& o : options) {
      EXPECT_NE(r.out.find(o), std::string::npos) << "kbus " << args[0] << "... --help lacks " << o;
    }
  }
  const ProcessResult bare = Kbus({"schedules"});
  EXPECT_EQ(bare.exit_code, 2) << bare.Describe();
  EXPECT_NE(bare.err.find("name a subcommand"), std::string::npos) << bare.err;
}

class SchedulesCli : public ::testing::Test {
 protected:
  // One kbus-scheduler for the suite, on topics of its own; only kKnownType may be scheduled.
  static void SetUpTestSuite() {
    schedules_topic_ = new std::string(NewTopic("cli-schedules", 2));
    pending_topic_ = new std::string(NewTopic("cli-pending", 2));
    log_path_ = new std::string(::testing::TempDir() + TestBroker::UniqueName("kbus-scheduler") + ".log");
    // Its log goes to a file: a pipe nobody reads while the tests run would fill and stall it.
    scheduler_ = new ChildProcess({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>\"$KBUS_TEST_LOG\"", KBUS_SCHEDULER_PATH,
                                   "--brokers", Bootstrap(), "--group", TestBroker::UniqueName("cli-scheduler"),
                                   "--schedules-topic", *schedules_topic_, "--pending-topic", *pending_topic_,
                                   "--run-topics", "", "--known-types", std::string(kKnownType) + ",test.Remind",
                                   "--session-timeout-ms", "6000", "--log-level", "warn"},
                                  {"KBUS_TEST_LOG=" + *log_path_});
  }

  static void TearDownTestSuite() {
    scheduler_->Kill(SIGTERM);
    const ProcessResult r = scheduler_->Wait(seconds(20));
    EXPECT_EQ(r.exit_code, 0) << r.Describe() << "\n" << SchedulerLog();
    delete scheduler_;
    std::remove(log_path_->c_str());
    delete log_path_;
    delete pending_topic_;
    delete schedules_topic_;
  }

  static std::string SchedulerLog() {
    std::ifstream in(*log_path_);
    std::stringstream text;
    text << in.rdbuf();
    return "kbus-scheduler's log:\n" + text.str();
  }

  // `kbus schedules <command> --brokers B --schedules-topic T <args>`.
  static ProcessResult Schedules(const std::string& command, std::vector<std::string> args) {
    args.insert(args.begin(), {"schedules", command, "--brokers", Bootstrap(), "--schedules-topic", *schedules_topic_});
    if (command != "list" && command != "describe") args.insert(args.end(), {"--wait-ms", "30000"});
    return Kbus(args);
  }

  // `kbus schedules create` of a kKnownType schedule to `topic`, with `extra` flags.
  static ProcessResult Create(const std::string& id, const std::string& topic, std::vector<std::string> extra) {
    std::vector<std::string> args = {"--id", id, "--type", std::string(kKnownType), "--topic", topic};
    args.insert(args.end(), extra.begin(), extra.end());
    return Schedules("create", args);
  }

  // `kbus delayed <command> --brokers B --pending-topic T <args>`.
  static ProcessResult Delayed(const std::string& command, std::vector<std::string> args) {
    args.insert(args.begin(), {"delayed", command, "--brokers", Bootstrap(), "--pending-topic", *pending_topic_});
    return Kbus(args);
  }

  // `kbus send --delay D`; returns the id it printed.
  static std::string SendDelayed(const std::string& topic, const std::string& delay) {
    const ProcessResult r = Kbus({"send", "--brokers", Bootstrap(), "--pending-topic", *pending_topic_, "--topic",
                                  topic, "--type", "test.Remind", "--delay", delay, R"({"text":"later"})"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    const std::string id = Trimmed(r.out);
    EXPECT_EQ(id.size(), 36u) << "expected a UUID on stdout: " << r.Describe();
    return id;
  }

  static std::string* schedules_topic_;
  static std::string* pending_topic_;
  static std::string* log_path_;
  static ChildProcess* scheduler_;
};

std::string* SchedulesCli::schedules_topic_ = nullptr;
std::string* SchedulesCli::pending_topic_ = nullptr;
std::string* SchedulesCli::log_path_ = nullptr;
ChildProcess* SchedulesCli::scheduler_ = nullptr;

TEST_F(SchedulesCli, CreateWithAnHourOutOfRangeExitsTwoNamingTheCronField) {
  const ProcessResult r = Create(TestBroker::UniqueName("bad-cron"), "nowhere", {"--cron", "0 25 * * *"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_NE(r.err.find("kbus schedules create: cron: field 2 (hour): 25 is out of range 0-23"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(SchedulesCli, CreateWithAnUnknownTimeZoneExitsTwoNamingTimeZone) {
  const ProcessResult r =
      Create(TestBroker::UniqueName("bad-zone"), "nowhere", {"--cron", "0 2 * * *", "--time-zone", "Mars/Olympus"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_NE(r.err.find("time_zone: unknown time zone 'Mars/Olympus'"), std::string::npos) << r.err;
}

TEST_F(SchedulesCli, ScheduleOfATypeTheSchedulerDoesNotKnowIsRefusedWithExitTwoNamingType) {
  const std::string id = TestBroker::UniqueName("unknown-type");
  const ProcessResult r =
      Schedules("create", {"--id", id, "--every", "1s", "--type", "test.Unknown", "--topic", "nowhere"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe() << SchedulerLog();
  EXPECT_NE(r.err.find("refused by the scheduler: type: 'test.Unknown'"), std::string::npos) << r.err;
  const ProcessResult d = Schedules("describe", {id});
  EXPECT_EQ(d.exit_code, 1) << d.Describe();
  EXPECT_NE(d.err.find("no schedule '" + id + "'"), std::string::npos) << d.err;
}

TEST_F(SchedulesCli, EverySecondScheduleFiresAndListAndDescribeShowItsNextTimes) {
  const std::string target = NewTopic("cli-ticks", 1);
  const std::string id = TestBroker::UniqueName("every-second");
  const ProcessResult created = Create(id, target, {"--every", "1s", "--payload", R"({"schedule":"${schedule}"})"});
  ASSERT_EQ(created.exit_code, 0) << created.Describe() << SchedulerLog();
  const std::string printed = Trimmed(created.out);
  ASSERT_EQ(printed.rfind(id + " next ", 0), 0u) << printed;
  EXPECT_TRUE(LooksLikeUtcTime(printed.substr(id.size() + 6))) << printed;

  const auto fired = ReadUntil(target, [](const auto& rs) { return !rs.empty(); }, seconds(30));
  ASSERT_FALSE(fired.empty()) << "a 1-second schedule fired nothing in 30 s\n" << SchedulerLog();
  EXPECT_EQ(HeaderOf(fired[0], header::kType), std::string(kKnownType));
  EXPECT_EQ(HeaderOf(fired[0], "kbus-schedule-id"), id);
  EXPECT_EQ(fired[0].payload, R"({"schedule":")" + id + R"("})");

  const ProcessResult list = Schedules("list", {});
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  const auto lines = Lines(list.out);
  ASSERT_GE(lines.size(), 2u) << list.out;
  EXPECT_EQ(lines[0].rfind("ID", 0), 0u) << "a header row: " << list.out;
  auto row = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(id + " ", 0) == 0; });
  ASSERT_NE(row, lines.end()) << list.out;
  EXPECT_NE(row->find("every 1s"), std::string::npos) << *row;
  EXPECT_NE(row->find("skip"), std::string::npos) << *row;
  EXPECT_NE(row->find("fired"), std::string::npos) << "the last outcome: " << *row;

  const ProcessResult json = Schedules("list", {"--json"});
  ASSERT_EQ(json.exit_code, 0) << json.Describe();
  bool found = false;
  for (const auto& line : Lines(json.out)) {
    JsonDocument doc;
    ASSERT_TRUE(doc.Parse(line).ok()) << line;
    const auto v = doc.Root().Find("id");
    if (!v || v->GetString() != id) continue;
    found = true;
    const auto next = doc.Root().Find("next");
    ASSERT_TRUE(next && next->IsString()) << line;
    EXPECT_TRUE(LooksLikeUtcTime(next->GetString())) << line;
    EXPECT_EQ(doc.Root().Find("paused")->GetBool(), false) << line;
  }
  EXPECT_TRUE(found) << json.out;

  const ProcessResult described = Schedules("describe", {id});
  ASSERT_EQ(described.exit_code, 0) << described.Describe();
  const auto next = Section(described.out, "next fire times");
  ASSERT_EQ(next.size(), 5u) << described.out;
  for (const auto& line : next) EXPECT_TRUE(LooksLikeUtcTime(Trimmed(line.substr(2)))) << line;
  EXPECT_NE(described.out.find("type             " + std::string(kKnownType)), std::string::npos) << described.out;
  EXPECT_FALSE(Section(described.out, "last runs").empty()) << described.out;

  const ProcessResult deleted = Schedules("delete", {id});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.Describe();
  EXPECT_EQ(Trimmed(deleted.out), "deleted " + id);
}

TEST_F(SchedulesCli, PauseShowsInDescribeWithItsNoteAndTriggerStillSendsTheCommand) {
  const std::string target = NewTopic("cli-trigger", 1);
  const std::string id = TestBroker::UniqueName("hourly");
  const ProcessResult created = Create(id, target, {"--every", "1h"});
  ASSERT_EQ(created.exit_code, 0) << created.Describe() << SchedulerLog();

  const ProcessResult paused = Schedules("pause", {id, "--note", "database migration"});
  ASSERT_EQ(paused.exit_code, 0) << paused.Describe();
  EXPECT_EQ(Trimmed(paused.out), "paused " + id);
  const ProcessResult described = Schedules("describe", {id});
  ASSERT_EQ(described.exit_code, 0) << described.Describe();
  EXPECT_NE(described.out.find("paused           yes: database migration"), std::string::npos) << described.out;

  const ProcessResult triggered = Schedules("trigger", {id});
  ASSERT_EQ(triggered.exit_code, 0) << triggered.Describe();
  EXPECT_EQ(triggered.out.rfind("triggered " + id + " at ", 0), 0u) << triggered.out;
  EXPECT_NE(triggered.out.find(": fired, run "), std::string::npos) << triggered.out;
  const auto fired = ReadUntil(target, [](const auto& rs) { return !rs.empty(); }, seconds(30));
  ASSERT_EQ(fired.size(), 1u) << "the trigger's command";
  EXPECT_EQ(HeaderOf(fired[0], "kbus-schedule-id"), id);
  EXPECT_EQ(HeaderOf(fired[0], header::kType), std::string(kKnownType));
  const std::string run = Trimmed(triggered.out.substr(triggered.out.find(", run ") + 6));
  EXPECT_EQ(HeaderOf(fired[0], header::kId), run) << "the run the command printed";

  const ProcessResult resumed = Schedules("resume", {id});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.Describe();
  const ProcessResult after = Schedules("describe", {id});
  EXPECT_NE(after.out.find("paused           no"), std::string::npos) << after.out;
}

TEST_F(SchedulesCli, ChangeOfAScheduleThatDoesNotExistIsRefusedWithExitOne) {
  const ProcessResult r = Schedules("pause", {TestBroker::UniqueName("missing")});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("refused by the scheduler: no schedule '"), std::string::npos) << r.err;
}

TEST_F(SchedulesCli, CreateWithNoSchedulerOnTheTopicSaysTheRequestWaitsAndExitsOne) {
  const std::string unserved = NewTopic("cli-unserved-schedules", 1);
  const ProcessResult r =
      Kbus({"schedules", "create", "--brokers", Bootstrap(), "--schedules-topic", unserved, "--wait-ms", "1500", "--id",
            TestBroker::UniqueName("waiting"), "--every", "1m", "--type", std::string(kKnownType), "--topic",
            "nowhere"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("no scheduler answered within 1500 ms; the request waits in '" + unserved + "'"),
            std::string::npos)
      << r.err;

  const ProcessResult no_wait =
      Kbus({"schedules", "create", "--brokers", Bootstrap(), "--schedules-topic", unserved, "--no-wait", "--id",
            TestBroker::UniqueName("waiting"), "--every", "1m", "--type", std::string(kKnownType), "--topic",
            "nowhere"});
  EXPECT_EQ(no_wait.exit_code, 0) << no_wait.Describe();
  EXPECT_EQ(no_wait.out.rfind("request ", 0), 0u) << no_wait.out;
}

TEST_F(SchedulesCli, DelayedSendArrivesNoEarlierThanItsDelayWithTheIdSendPrinted) {
  const std::string target = NewTopic("cli-delayed", 1);
  const std::string id = SendDelayed(target, "2s");
  ASSERT_FALSE(id.empty());
  const auto arrived = ReadUntil(target, [](const auto& rs) { return !rs.empty(); }, seconds(30));
  ASSERT_EQ(arrived.size(), 1u) << SchedulerLog();
  const kafka::ReaderRecord& r = arrived[0];
  EXPECT_EQ(HeaderOf(r, header::kId), id);
  const auto deliver_at = HeaderOf(r, header::kDeliverAt);
  const auto sent_at = HeaderOf(r, header::kSentAt);
  ASSERT_TRUE(deliver_at && sent_at);
  EXPECT_GE(std::stoll(*deliver_at) - std::stoll(*sent_at), 2000) << "due 2 s after it was sent";
  EXPECT_GE(r.timestamp_ms, std::stoll(*deliver_at)) << "never early";
}

TEST_F(SchedulesCli, DelayBeyondTheLimitExitsTwoNamingDelay) {
  const ProcessResult r = Kbus({"send", "--brokers", Bootstrap(), "--pending-topic", *pending_topic_, "--topic",
                                "nowhere", "--type", "test.Remind", "--delay", "400d", "{}"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_NE(r.err.find("delay: 400d is beyond"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(SchedulesCli, DelayedListShowsAPendingMessageAndACancelledOneNeverArrives) {
  const std::string target = NewTopic("cli-cancel", 1);
  const std::string cancelled = SendDelayed(target, "4s");
  const std::string marker = SendDelayed(target, "6s");
  ASSERT_FALSE(cancelled.empty());
  ASSERT_FALSE(marker.empty());

  const ProcessResult list = Delayed("list", {});
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  const auto lines = Lines(list.out);
  auto row = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(cancelled, 0) == 0; });
  ASSERT_NE(row, lines.end()) << list.out;
  EXPECT_NE(row->find("test.Remind"), std::string::npos) << *row;
  EXPECT_NE(row->find(target), std::string::npos) << *row;
  const auto cancelled_row = row - lines.begin();
  const auto marker_row =
      std::find_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(marker, 0) == 0; }) -
      lines.begin();
  EXPECT_LT(cancelled_row, marker_row) << "soonest due first: " << list.out;

  const ProcessResult cancel = Delayed("cancel", {cancelled, "never-sent-id"});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.Describe();
  EXPECT_EQ(cancel.out, "cancelled " + cancelled +
                            "\nnever-sent-id not pending (delivered, cancelled or never sent)\n");

  const auto arrived = ReadUntil(target, [&](const auto& rs) { return HasId(rs, marker); }, seconds(30));
  ASSERT_TRUE(HasId(arrived, marker)) << "the marker, due 2 s after the cancelled one, arrived\n" << SchedulerLog();
  EXPECT_FALSE(HasId(arrived, cancelled)) << "had the cancel been lost, it would have arrived first";
  EXPECT_EQ(arrived.size(), 1u);

  const ProcessResult again = Delayed("cancel", {cancelled});
  EXPECT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_EQ(again.out, cancelled + " not pending (delivered, cancelled or never sent)\n");
}

}  // namespace
}  // namespace kbus::test
