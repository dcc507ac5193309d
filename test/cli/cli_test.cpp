// The kbus command-line tool, driven as a user drives it: the built binary and kcat as child
// processes against the test broker (embedded or real Kafka), results checked through kcat,
// kbus's own clients and a kbus Worker in this process.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "free_port.hpp"
#include "child_process.hpp"
#include "kbus/envelope.hpp"
#include "kbus/handler_registry.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/admin.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/state_topic.hpp"
#include "kbus/kafka/worker.hpp"
#include "messages.hpp"
#include "test_broker.hpp"

namespace kbus::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kToolTimeout = seconds(60);

const std::string& Bootstrap() { return TestBroker::Get().bootstrap(); }

ProcessResult Kbus(std::vector<std::string> args, std::string stdin_data = {},
                   const std::vector<std::string>& env = {}) {
  args.insert(args.begin(), KBUS_CLI_PATH);
  return RunProcess(args, kToolTimeout, std::move(stdin_data), env);
}

ProcessResult Kcat(std::vector<std::string> args, std::string stdin_data = {}) {
  args.insert(args.begin(), "kcat");
  return RunProcess(args, kToolTimeout, std::move(stdin_data));
}

std::string NewTopic(const std::string& prefix, int partitions) {
  std::string topic = TestBroker::UniqueName(prefix);
  TestBroker::Get().CreateTopic(topic, partitions);
  return topic;
}

// Sends with `kbus send`; returns the printed message id, or "" after a test failure.
std::string KbusSend(const std::string& topic, const std::string& type, const std::string& payload,
                     std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"send", "--brokers", Bootstrap(), "--topic",
                                   topic,  "--type",    type,        payload};
  args.insert(args.end() - 1, extra.begin(), extra.end());
  const ProcessResult r = Kbus(args);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  std::string id = r.out;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  EXPECT_EQ(id.size(), 36u) << "expected a UUID on stdout: " << r.Describe();
  return id;
}

std::optional<std::string> StringMember(const JsonValue& object, std::string_view name) {
  auto v = object.Find(name);
  if (!v || !v->IsString()) return std::nullopt;
  return std::string(v->GetString());
}


std::optional<int> PartitionsOf(const std::string& brokers, const std::string& topic) {
  kafka::ClientConfig client;
  client.brokers = brokers;
  auto topics = kafka::ListTopics(client);
  if (!topics.ok()) return std::nullopt;
  for (const auto& t : *topics) {
    if (t.name == topic) return t.partitions;
  }
  return std::nullopt;
}

TEST(KbusSend, RecordReadBackByKcatHasEnvelopeHeadersKeyAndExactPayload) {
  const std::string topic = NewTopic("cli-send", 3);
  const std::string payload = R"({"order_id":"o-7", "item":"tea","quantity":2})";
  const std::string id =
      KbusSend(topic, "shop.PlaceOrder", payload,
               {"--key", "order-7", "--header", "tenant=acme", "--correlation-id", "corr-7"});
  ASSERT_FALSE(id.empty());

  const ProcessResult r =
      Kcat({"-b", Bootstrap(), "-C", "-t", topic, "-o", "beginning", "-c", "1", "-e", "-J", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  JsonDocument doc;
  ASSERT_TRUE(doc.Parse(r.out).ok()) << r.out;
  const JsonValue record = doc.Root();
  EXPECT_EQ(StringMember(record, "key"), "order-7");
  EXPECT_EQ(StringMember(record, "payload"), payload);  // byte for byte, not re-serialised

  // kcat -J lists headers as ["name", "value", "name", "value", ...].
  auto headers_value = record.Find("headers");
  ASSERT_TRUE(headers_value && headers_value->IsArray()) << r.out;
  std::multimap<std::string, std::string> headers;
  for (std::size_t i = 0; i + 1 < headers_value->Size(); i += 2) {
    headers.emplace(headers_value->At(i).GetString(), headers_value->At(i + 1).GetString());
  }
  auto only = [&](std::string_view name) -> std::optional<std::string> {
    if (headers.count(std::string(name)) != 1) return std::nullopt;
    return headers.find(std::string(name))->second;
  };
  EXPECT_EQ(only(header::kType), "shop.PlaceOrder") << r.out;
  EXPECT_EQ(only(header::kKind), "command") << r.out;
  EXPECT_EQ(only(header::kId), id) << r.out;
  EXPECT_EQ(only(header::kCorrelationId), "corr-7") << r.out;  // the flag replaced the default
  ASSERT_TRUE(only(header::kSentAt).has_value()) << r.out;
  const auto now_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const long long sent_at = std::stoll(*only(header::kSentAt));
  EXPECT_GT(sent_at, now_ms - 120'000);
  EXPECT_LE(sent_at, now_ms);
  EXPECT_EQ(only("tenant"), "acme") << r.out;
}

TEST(Kcat, CommandProducedWithTypeHeaderIsHandledByKbusWorker) {
  const std::string topic = NewTopic("cli-kcat-cmd", 1);
  std::mutex mu;
  std::optional<shop::PlaceOrder> received;
  std::string received_key;
  std::string received_type;
  HandlerRegistry handlers;
  handlers.Handle<shop::PlaceOrder>(
      [&](const shop::PlaceOrder& order, Context& ctx) {
        std::lock_guard lock(mu);
        received = order;
        received_key = std::string(ctx.record().key);
        received_type = std::string(ctx.envelope().type);
        return Ack();
      },
      HandlerOptions{topic});
  kafka::WorkerConfig config;
  config.client.brokers = Bootstrap();
  config.group = TestBroker::UniqueName("cli-kcat-group");
  config.session_timeout = seconds(6);
  kafka::Worker worker(config, handlers);
  std::thread runner([&] { worker.Run(); });
  struct StopOnExit {
    kafka::Worker& worker;
    std::thread& runner;
    ~StopOnExit() {
      worker.Stop();
      runner.join();
    }
  } stop_on_exit{worker, runner};

  const ProcessResult r = Kcat(
      {"-P", "-b", Bootstrap(), "-t", topic, "-H", "kbus-type=shop.PlaceOrder", "-k", "order-9"},
      "{\"order_id\":\"order-9\",\"item\":\"beans\",\"quantity\":3}\n");
  ASSERT_EQ(r.exit_code, 0) << r.Describe();

  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return received.has_value();
  })) << "the worker never handled the command";
  std::lock_guard lock(mu);
  EXPECT_EQ(received->order_id, "order-9");
  EXPECT_EQ(received->item, "beans");
  EXPECT_EQ(received->quantity, 3);
  EXPECT_EQ(received_key, "order-9");
  EXPECT_EQ(received_type, "shop.PlaceOrder");
}

TEST(KbusTail, PrintsSentRecordsWithDecodedEnvelopeAndEmbeddedPayload) {
  const std::string topic = NewTopic("cli-tail", 2);
  const std::string first =
      KbusSend(topic, "shop.PlaceOrder", R"({"order_id":"o-1","item":"tea","quantity":1})",
               {"--header", "tenant=acme", "--workflow-id", "wf-1"});
  // Pretty-printed on stdin: tail must still print one line per record.
  const ProcessResult second_send =
      Kbus({"send", "--brokers", Bootstrap(), "--topic", topic, "--type", "shop.OrderCompleted",
            "--kind", "event"},
           "{\n  \"order_id\": \"o-1\",\n  \"charged_cents\": 1250\n}\n");
  ASSERT_EQ(second_send.exit_code, 0) << second_send.Describe();
  const std::string second = second_send.out.substr(0, second_send.out.find('\n'));
  // Not kbus's and not JSON: tail prints it as a string with an empty envelope.
  ASSERT_EQ(Kcat({"-P", "-b", Bootstrap(), "-t", topic, "-k", "plain"}, "just text\n").exit_code,
            0);

  const ProcessResult r = Kbus({"tail", "--brokers", Bootstrap(), "--topic", topic, "--count", "3",
                                "--timeout-ms", "30000"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.Describe();

  std::map<std::string, JsonDocument> by_key;  // the records' keys: wf-1, the second id, plain
  for (const auto& line : lines) {
    JsonDocument doc;
    ASSERT_TRUE(doc.Parse(line).ok()) << line;
    const JsonValue root = doc.Root();
    EXPECT_EQ(StringMember(root, "topic"), topic) << line;
    for (const char* field : {"partition", "offset", "timestamp"}) {
      auto v = root.Find(field);
      EXPECT_TRUE(v && v->IsInt64() && v->GetInt64() >= 0) << field << " in " << line;
    }
    auto key = StringMember(root, "key");
    ASSERT_TRUE(key.has_value()) << line;
    by_key.emplace(*key, std::move(doc));
  }

  ASSERT_EQ(by_key.count("wf-1"), 1u) << r.out;  // keyed by its workflow id
  {
    const JsonValue root = by_key.at("wf-1").Root();
    auto envelope = root.Find("envelope");
    ASSERT_TRUE(envelope && envelope->IsObject()) << root.ToJson();
    EXPECT_EQ(StringMember(*envelope, "type"), "shop.PlaceOrder");
    EXPECT_EQ(StringMember(*envelope, "kind"), "command");
    EXPECT_EQ(StringMember(*envelope, "id"), first);
    EXPECT_EQ(StringMember(*envelope, "correlation_id"), first);
    EXPECT_EQ(StringMember(*envelope, "workflow_id"), "wf-1");
    EXPECT_FALSE(envelope->Find("causation_id").has_value()) << "absent fields are left out";
    auto sent_at = envelope->Find("sent_at");
    EXPECT_TRUE(sent_at && sent_at->IsInt64() && sent_at->GetInt64() > 0) << root.ToJson();
    auto headers = root.Find("headers");
    ASSERT_TRUE(headers && headers->IsObject()) << root.ToJson();
    EXPECT_EQ(StringMember(*headers, "tenant"), "acme");
    EXPECT_EQ(StringMember(*headers, std::string(header::kId)), first);
    auto payload = root.Find("payload");
    ASSERT_TRUE(payload && payload->IsObject()) << root.ToJson();
    EXPECT_EQ(StringMember(*payload, "order_id"), "o-1");
    EXPECT_EQ(StringMember(*payload, "item"), "tea");
    auto quantity = payload->Find("quantity");
    EXPECT_TRUE(quantity && quantity->IsInt64() && quantity->GetInt64() == 1) << root.ToJson();
  }
  ASSERT_EQ(by_key.count(second), 1u) << r.out;  // keyed by its correlation id, its own id
  {
    const JsonValue root = by_key.at(second).Root();
    auto envelope = root.Find("envelope");
    ASSERT_TRUE(envelope.has_value());
    EXPECT_EQ(StringMember(*envelope, "type"), "shop.OrderCompleted");
    EXPECT_EQ(StringMember(*envelope, "kind"), "event");
    auto payload = root.Find("payload");
    ASSERT_TRUE(payload && payload->IsObject()) << root.ToJson();
    auto cents = payload->Find("charged_cents");
    EXPECT_TRUE(cents && cents->IsInt64() && cents->GetInt64() == 1250) << root.ToJson();
  }
  ASSERT_EQ(by_key.count("plain"), 1u) << r.out;
  {
    const JsonValue root = by_key.at("plain").Root();
    EXPECT_EQ(StringMember(root, "payload"), "just text");
    auto envelope = root.Find("envelope");
    ASSERT_TRUE(envelope && envelope->IsObject());
    EXPECT_EQ(envelope->Size(), 0u) << root.ToJson();
  }
}

// A record a broker holds may be anything: tail shows it, it does not crash on it.
TEST(KbusTail, ShowsAPayloadNestedTooDeepAsBoundedTextWithANoteInsteadOfCrashing) {
  const std::string topic = NewTopic("cli-tail-deep", 1);
  const std::string deep = std::string(150'000, '[') + std::string(150'000, ']');  // valid JSON
  OutgoingRecord record;
  record.topic = topic;
  record.key = "deep";
  record.payload = deep;
  record.headers = {{"kbus-type", "it.Deep"}, {"x-bytes", "\xff\xfe"}};
  kafka::Producer producer(kafka::ProducerConfig{.client = {.brokers = Bootstrap()}});
  ASSERT_TRUE(producer.SendSync(record).ok());
  record.key = "good";
  record.payload = R"({"after":true})";
  ASSERT_TRUE(producer.SendSync(record).ok());

  const ProcessResult r = Kbus({"tail", "--brokers", Bootstrap(), "--topic", topic, "--count", "2",
                                "--timeout-ms", "30000"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.Describe();
  EXPECT_LT(lines[0].size(), 70'000u) << "the raw payload is shown bounded";
  JsonDocument doc;
  ASSERT_TRUE(doc.Parse(lines[0]).ok()) << lines[0].substr(0, 300);
  const JsonValue root = doc.Root();
  const auto payload = StringMember(root, "payload");
  ASSERT_TRUE(payload.has_value()) << lines[0].substr(0, 300);
  EXPECT_EQ(payload->size(), 65536u);
  EXPECT_EQ(payload->substr(0, 4), "[[[[");
  const auto note = StringMember(root, "payload_note").value_or("");
  EXPECT_NE(note.find("nests deeper than 128 levels"), std::string::npos) << note;
  EXPECT_NE(note.find("the first 65536 of 300000 bytes"), std::string::npos) << note;
  // Header bytes that are not UTF-8 show as U+FFFD: the line stays JSON for jq.
  auto headers = root.Find("headers");
  ASSERT_TRUE(headers.has_value());
  EXPECT_EQ(StringMember(*headers, "x-bytes"), "\xef\xbf\xbd\xef\xbf\xbd");

  JsonDocument good;
  ASSERT_TRUE(good.Parse(lines[1]).ok()) << lines[1];
  auto after = good.Root().Find("payload");
  ASSERT_TRUE(after && after->IsObject()) << lines[1];
  EXPECT_FALSE(good.Root().Find("payload_note").has_value()) << lines[1];
}

TEST(KbusTail, InAGroupResumesAfterTheRecordsItPrinted) {
  const std::string topic = NewTopic("cli-tail-group", 2);
  const std::string group = TestBroker::UniqueName("cli-tail-group");
  KbusSend(topic, "shop.PlaceOrder", R"({"order_id":"o-1"})");
  KbusSend(topic, "shop.PlaceOrder", R"({"order_id":"o-2"})");
  const std::vector<std::string> tail = {"tail",
                                         "--brokers",
                                         Bootstrap(),
                                         "--topic",
                                         topic,
                                         "--group",
                                         group,
                                         "--timeout-ms",
                                         "30000",
                                         "-X",
                                         "session.timeout.ms=6000",
                                         "--count"};
  auto with_count = [&](const char* n) {
    auto args = tail;
    args.push_back(n);
    return args;
  };
  const ProcessResult first = Kbus(with_count("2"));
  ASSERT_EQ(first.exit_code, 0) << first.Describe();
  ASSERT_EQ(Lines(first.out).size(), 2u) << first.Describe();

  const std::string third = KbusSend(topic, "shop.PlaceOrder", R"({"order_id":"o-3"})");
  const ProcessResult second = Kbus(with_count("1"));
  ASSERT_EQ(second.exit_code, 0) << second.Describe();
  const auto lines = Lines(second.out);
  ASSERT_EQ(lines.size(), 1u) << second.Describe();
  JsonDocument doc;
  ASSERT_TRUE(doc.Parse(lines[0]).ok()) << lines[0];
  auto envelope = doc.Root().Find("envelope");
  ASSERT_TRUE(envelope.has_value());
  EXPECT_EQ(StringMember(*envelope, "id"), third) << "the group should resume after o-1 and o-2";
}

TEST(KbusSend, RefusesInvalidJsonNamingTheByteOffsetAndSendsNothing) {
  const std::string topic = NewTopic("cli-bad-json", 1);
  const ProcessResult r = Kbus({"send", "--brokers", Bootstrap(), "--topic", topic, "--type",
                                "shop.PlaceOrder", R"({"order_id": })"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("not JSON"), std::string::npos) << r.Describe();
  EXPECT_NE(r.err.find("at byte 13"), std::string::npos) << r.Describe();
  EXPECT_TRUE(r.out.empty()) << r.Describe();
  EXPECT_TRUE(ReadTopic(Bootstrap(), topic, 1, seconds(3)).empty()) << "a record reached the topic";
}

// Usage errors: exit code 2 and one line naming the flag. No broker needed.
void ExpectUsageError(const std::vector<std::string>& args, const std::vector<std::string>& named,
                      const std::vector<std::string>& env = {}) {
  const ProcessResult r = Kbus(args, {}, env);
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  for (const auto& n : named)
    EXPECT_NE(r.err.find(n), std::string::npos) << n << ": " << r.Describe();
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.Describe();
  EXPECT_TRUE(r.out.empty()) << r.Describe();
}

// Publishes launcher events for `job` on `topic`: started, two progress lines, a heartbeat, and
// an exit with `outcome`.
void PublishJobEvents(kafka::Producer& producer, const std::string& topic, const std::string& job,
                      const std::string& outcome) {
  const SendOptions options{.topic = topic, .key = job};
  ASSERT_TRUE(producer.SendSync(BuildRecord(handlers::ProcessStarted{job, 1, "fake-encoder", 4242, "h1"}, options)).ok());
  ASSERT_TRUE(producer.SendSync(BuildRecord(handlers::ProcessProgress{job, 1, 50, "pass 1"}, options)).ok());
  ASSERT_TRUE(producer.SendSync(BuildRecord(handlers::ProcessHeartbeat{job, 1, milliseconds(12000), 50}, options)).ok());
  ASSERT_TRUE(producer.SendSync(BuildRecord(handlers::ProcessProgress{job, 1, 100, "pass 2"}, options)).ok());
  handlers::ProcessExited exited;
  exited.job_id = job;
  exited.attempt = 1;
  exited.outcome = outcome;
  exited.exit_code = outcome == "succeeded" ? 0 : 3;
  exited.duration = milliseconds(1500);
  ASSERT_TRUE(producer.SendSync(BuildRecord(exited, options)).ok());
}

TEST(KbusWatch, FollowsOneJobAsPlainLinesAndExitsWithItsOutcome) {
  const std::string topic = NewTopic("cli-watch", 1);
  kafka::Producer producer(kafka::ProducerConfig{.client = {.brokers = Bootstrap()}});
  // Not launcher events, or malformed ones: skipped.
  KbusSend(topic, "shop.OrderCompleted", R"({"order_id":"o-1","charged_cents":5})");
  KbusSend(topic, "kbus.ProcessProgress", R"({"job_id":"ok-job","percent":"many"})");
  PublishJobEvents(producer, topic, "ok-job", "succeeded");
  PublishJobEvents(producer, topic, "bad-job", "failed");

  const ProcessResult ok = Kbus({"watch", "--brokers", Bootstrap(), "--topic", topic, "--job", "ok-job"});
  EXPECT_EQ(ok.exit_code, 0) << ok.Describe();
  EXPECT_EQ(Lines(ok.out), (std::vector<std::string>{
                               "ok-job attempt 1 started pid 4242 on h1",
                               "ok-job attempt 1 progress 50% pass 1",
                               "ok-job attempt 1 heartbeat 00:12",
                               "ok-job attempt 1 progress 100% pass 2",
                               "ok-job attempt 1 exited succeeded exit_code 0 after 1.5s",
                           }));
  const ProcessResult bad = Kbus({"watch", "--brokers", Bootstrap(), "--topic", topic, "--job", "bad-job"});
  EXPECT_EQ(bad.exit_code, 1) << "the job failed";
  ASSERT_FALSE(Lines(bad.out).empty());
  EXPECT_EQ(Lines(bad.out).back(), "bad-job attempt 1 exited failed exit_code 3 after 1.5s");

  const ProcessResult none =
      Kbus({"watch", "--brokers", Bootstrap(), "--topic", topic, "--job", "no-such-job", "--timeout-ms", "1500"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("no event within 1500 ms"), std::string::npos) << none.err;
}

TEST(KbusWatch, RefusesBadFlagsNamingThem) {
  const ProcessResult attempt = Kbus({"watch", "--brokers", Bootstrap(), "--attempt", "2"});
  EXPECT_EQ(attempt.exit_code, 2);
  EXPECT_NE(attempt.err.find("--attempt"), std::string::npos) << attempt.err;
  const ProcessResult timeout = Kbus({"watch", "--brokers", Bootstrap(), "--job", "j", "--timeout-ms", "0"});
  EXPECT_EQ(timeout.exit_code, 2);
  EXPECT_NE(timeout.err.find("--timeout-ms"), std::string::npos) << timeout.err;
}

TEST(KbusWorkflows, PrintsEachInstancesLatestStateRecordFilteredByStatusOrId) {
  const std::string name = TestBroker::UniqueName("cli-wf");
  TestBroker::Get().CreateTopic(name + ".state", 2);
  kafka::StateTopic state({.brokers = Bootstrap()}, name + ".state");
  auto record = [&](const std::string& id, const std::string& status, int version) {
    return R"({"workflow":")" + name + R"(","id":")" + id + R"(","version":)" + std::to_string(version) +
           R"(,"status":")" + status + R"("})";
  };
  ASSERT_TRUE(state.Write(0, "a", record("a", "running", 1)).ok());
  ASSERT_TRUE(state.Write(0, "a", record("a", "completed", 2)).ok());
  ASSERT_TRUE(state.Write(1, "b", record("b", "running", 1)).ok());
  ASSERT_TRUE(state.Write(1, "gone", record("gone", "failed", 1)).ok());
  ASSERT_TRUE(state.Erase(1, "gone").ok());

  const ProcessResult all = Kbus({"workflows", "--brokers", Bootstrap(), name});
  EXPECT_EQ(all.exit_code, 0) << all.Describe();
  EXPECT_EQ(Lines(all.out), (std::vector<std::string>{record("a", "completed", 2), record("b", "running", 1)}));
  const ProcessResult running = Kbus({"workflows", "--brokers", Bootstrap(), name, "--status", "running"});
  EXPECT_EQ(Lines(running.out), std::vector<std::string>{record("b", "running", 1)});
  const ProcessResult one = Kbus({"workflows", "--brokers", Bootstrap(), name, "--id", "a"});
  EXPECT_EQ(Lines(one.out), std::vector<std::string>{record("a", "completed", 2)});

  const ProcessResult bad = Kbus({"workflows", "--brokers", Bootstrap(), name, "--status", "sleeping"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--status"), std::string::npos) << bad.err;
  const ProcessResult missing = Kbus({"workflows", "--brokers", Bootstrap(), "no-such-workflow"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no-such-workflow.state"), std::string::npos) << missing.err;
}

TEST(KbusFlags, UnknownOptionExitsWithTwoNamingIt) {
  ExpectUsageError({"send", "--bogus", "--type", "t", "--topic", "x", "{}"}, {"--bogus"});
  ExpectUsageError({"tail", "--topic", "x", "--bogus=1"}, {"--bogus"});
  ExpectUsageError({"--bogus"}, {"--bogus"});
  ExpectUsageError({"frobnicate"}, {"frobnicate"});
}

TEST(KbusFlags, PropertyWithoutEqualsSignExitsWithTwoNamingIt) {
  ExpectUsageError(
      {"send", "--brokers", Bootstrap(), "-X", "novalue", "--type", "t", "--topic", "x", "{}"},
      {"-X", "novalue"});
  ExpectUsageError({"tail", "--brokers", Bootstrap(), "--topic", "x", "-X", "novalue"},
                   {"-X", "novalue"});
}

TEST(KbusFlags, UnknownKindExitsWithTwoNamingIt) {
  ExpectUsageError(
      {"send", "--brokers", Bootstrap(), "--kind", "banana", "--type", "t", "--topic", "x", "{}"},
      {"--kind", "banana"});
}

TEST(KbusFlags, BadValuesOfOtherFlagsExitWithTwoNamingThem) {
  ExpectUsageError({"broker", "--port", "0", "--topic", "t1:many"}, {"--topic", "t1:many"});
  ExpectUsageError({"tail", "--topic", "x", "--from", "middle"}, {"--from", "middle"});
  ExpectUsageError({"tail", "--topic", "x", "--count", "lots"}, {"--count", "lots"});
  ExpectUsageError({"send", "--brokers", "embedded", "--type", "t", "--topic", "x", "{}"},
                   {"--brokers", "kbus broker"});
  ExpectUsageError({"send", "--type", "t", "--topic", "x", "--header", "kbus-type=y", "{}"},
                   {"--header", "--type"});
  ExpectUsageError({"send", "--topic", "x", "{}"}, {"--type"});
}

TEST(KbusFlags, EnvironmentVariablesFillOptionsAndFlagsBeatThem) {
  const std::string topic = NewTopic("cli-env", 1);
  // Nothing listens on port 1: the send only works if --brokers wins over KBUS_BROKERS.
  const ProcessResult r = Kbus(
      {"send", "--brokers", Bootstrap(), "--type", "shop.PlaceOrder", R"({"order_id":"o-env"})"},
      {},
      {"KBUS_BROKERS=127.0.0.1:1", "KBUS_TOPIC=" + topic, "KBUS_HEADER=tenant=acme\nregion=eu",
       "KBUS_KIND=event"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const auto records = ReadTopic(Bootstrap(), topic, 1, seconds(30));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].FindHeader("tenant"), "acme");
  EXPECT_EQ(records[0].FindHeader("region"), "eu");
  EXPECT_EQ(records[0].FindHeader(std::string(header::kKind)), "event");

  // A bad value from the environment is named by its variable.
  ExpectUsageError({"send", "--type", "t", "--topic", "x", "{}"}, {"KBUS_KIND", "banana"},
                   {"KBUS_KIND=banana"});
}

TEST(WorkerFlags, AWorkerRefusesBadSettingsNamingTheFlagOrVariable) {
  auto expect = [](const std::vector<std::string>& args, const std::vector<std::string>& env,
                   const std::vector<std::string>& named) {
    std::vector<std::string> argv = {KBUS_QUICKSTART_WORKER_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess child(argv, env);
    const ProcessResult r = child.Wait(seconds(30));
    EXPECT_EQ(r.exit_code, 2) << r.Describe();
    for (const auto& n : named) EXPECT_NE(r.err.find(n), std::string::npos) << n << ": " << r.Describe();
  };
  expect({"--max-deliveries", "0"}, {}, {"quickstart-worker:", "--max-deliveries"});
  expect({"--session-timeout-ms", "-5"}, {}, {"--session-timeout-ms"});
  expect({}, {"KBUS_ASSIGNMENT_STRATEGY=sticky"}, {"KBUS_ASSIGNMENT_STRATEGY", "'sticky'"});
  expect({"--group", ""}, {}, {"--group"});
  expect({"-X", "nonsense"}, {}, {"-X", "nonsense"});
  expect({"--handler-threads", "0"}, {}, {"--handler-threads"});
  expect({"--ordering", "sideways"}, {}, {"--ordering", "'sideways'", "key, partition or unordered"});
  expect({"--retry-tier", "10s,10x"}, {}, {"--retry-tier", "'10x'"});
  expect({}, {"KBUS_RETRY_TIER=5"}, {"KBUS_RETRY_TIER", "'5'"});
  expect({"--visibility-timeout-ms", "0"}, {}, {"--visibility-timeout-ms"});
  expect({"--local-attempts", "0"}, {}, {"--local-attempts"});
  expect({"--producer-linger-ms", "1001"}, {}, {"--producer-linger-ms", "0 and 1000"});
  expect({}, {"KBUS_PRODUCER_LINGER_MS=-2"}, {"KBUS_PRODUCER_LINGER_MS"});
}

// The workflow host's own flags (the robustness suites drive it with them) are checked before
// it connects, each error naming the flag or variable.
TEST(VideoEncodingFlags, TheHostRefusesBadWorkflowSettingsNamingTheFlagOrVariable) {
  auto expect = [](const std::vector<std::string>& args, const std::vector<std::string>& env,
                   const std::vector<std::string>& named) {
    std::vector<std::string> argv = {VIDEO_ENCODING_PATH, "--brokers", "127.0.0.1:9"};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess child(argv, env);
    const ProcessResult r = child.Wait(seconds(30));
    EXPECT_EQ(r.exit_code, 2) << r.Describe();
    for (const auto& n : named) EXPECT_NE(r.err.find(n), std::string::npos) << n << ": " << r.Describe();
  };
  expect({"--retry-initial-ms", "-1"}, {}, {"video-encoding:", "--retry-initial-ms"});
  expect({"--retry-initial-ms", "5000", "--retry-max-ms", "1000"}, {}, {"--retry-max-ms (1000)", "--retry-initial-ms (5000)"});
  expect({"--max-attempts", "-2"}, {}, {"--max-attempts"});
  expect({"--heartbeat-ms", "0"}, {}, {"--heartbeat-ms"});
  expect({"--heartbeat-ms", "1000", "--heartbeat-timeout-ms", "1500"}, {}, {"--heartbeat-timeout-ms (1500)", "--heartbeat-ms"});
  expect({}, {"KBUS_HEARTBEAT_TIMEOUT_MS=-1"}, {"KBUS_HEARTBEAT_TIMEOUT_MS"});
  expect({"--fake-seconds", "-1"}, {}, {"--fake-seconds"});
  expect({"--run-timeout-ms", "0"}, {}, {"--run-timeout-ms"});
  expect({"--name", ""}, {}, {"--name"});
  expect({"--control-topic", ""}, {}, {"--control-topic"});
  expect({"--encoder", "handbrake"}, {}, {"--encoder", "'handbrake'"});
}

TEST(KbusFlags, HelpListsEveryOptionOfTheToolAndOfEachCommand) {
  const std::map<std::vector<std::string>, std::vector<std::string>> expected = {
      {{"broker", "--help"}, {"--port", "--brokers-count", "--topic", "--log-level"}},
      {{"send", "--help"},
       {"--brokers", "--property", "-X", "--log-level", "--type", "--topic", "--key", "--kind",
        "--header", "--workflow-id", "--correlation-id", "--timeout-ms", "KBUS_BROKERS"}},
      {{"tail", "--help"},
       {"--brokers", "-X", "--topic", "--from", "--count", "--timeout-ms", "--group"}},
      {{"topics", "create", "--help"},
       {"--brokers", "-X", "--partitions", "--replication-factor", "--config", "--timeout-ms"}},
      {{"topics", "list", "--help"}, {"--brokers", "-X", "--timeout-ms"}},
      {{"workflows", "--help"}, {"--brokers", "-X", "--state-topic", "--id", "--status", "--timeout-ms"}},
      {{"--help"},
       {"broker", "send", "tail", "topics create", "topics list", "--group", "--correlation-id",
        "--brokers-count"}},
  };
  for (const auto& [args, options] : expected) {
    const ProcessResult r = Kbus(args);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    for (const auto& o : options) {
      EXPECT_NE(r.out.find(o), std::string::npos) << args[0] << " --help lacks " << o;
    }
  }
}

TEST(KbusSend, NeverPrintsSecretPropertyValues) {
  const std::string topic = NewTopic("cli-secret", 1);
  const ProcessResult r =
      Kbus({"send", "--brokers", Bootstrap(), "--topic", topic, "--type", "t.T", "--log-level",
            "debug", "-X", "sasl.username=bob", "-X", "sasl.password=hunter2", "{}"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("sasl.password=***"), std::string::npos) << r.Describe();
  EXPECT_NE(r.err.find("sasl.username=bob"), std::string::npos) << r.Describe();
  EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.Describe();
  EXPECT_EQ(r.out.find("hunter2"), std::string::npos) << r.Describe();
}

TEST(KbusTopics, CreateMakesTopicsOnKafkaAndSendsEmbeddedBrokerUsersToBrokerTopic) {
  const std::string topic = TestBroker::UniqueName("cli-topics-create");
  if (TestBroker::Get().embedded()) {
    // The embedded broker has no admin API: the documented answer is an error with the remedy.
    const ProcessResult r =
        Kbus({"topics", "create", "--brokers", Bootstrap(), "--timeout-ms", "2000", topic + ":3"});
    EXPECT_EQ(r.exit_code, 1) << r.Describe();
    EXPECT_NE(r.err.find("kbus broker --topic"), std::string::npos) << r.Describe();
    EXPECT_NE(PartitionsOf(Bootstrap(), topic), std::optional<int>(3));
    return;
  }
  const ProcessResult r =
      Kbus({"topics", "create", "--brokers", Bootstrap(), topic + ":3", topic + "-b",
            "--partitions", "2", "--config", "cleanup.policy=compact"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, topic + " 3\n" + topic + "-b 2\n");
  EXPECT_TRUE(WaitFor([&] { return PartitionsOf(Bootstrap(), topic) == 3; }, seconds(30)));
  EXPECT_TRUE(WaitFor([&] { return PartitionsOf(Bootstrap(), topic + "-b") == 2; }, seconds(30)));
  // Creating an existing topic again is fine.
  const ProcessResult again = Kbus({"topics", "create", "--brokers", Bootstrap(), topic + ":3"});
  EXPECT_EQ(again.exit_code, 0) << again.Describe();
}

TEST(KbusTopics, ListPrintsEachTopicWithItsPartitionCount) {
  const std::string topic = NewTopic("cli-topics-list", 3);
  const ProcessResult r = Kbus({"topics", "list", "--brokers", Bootstrap()});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const auto lines = Lines(r.out);
  EXPECT_NE(std::find(lines.begin(), lines.end(), topic + " 3"), lines.end()) << r.out;
}

TEST(KbusBroker, ServesItsTopicsOnTheGivenPortAndExitsCleanlyOnSigterm) {
  const int port = FreePort();
  const std::string bootstrap = "127.0.0.1:" + std::to_string(port);
  ChildProcess broker({KBUS_CLI_PATH, "broker", "--port", std::to_string(port), "--topic", "t1:3"});
  const auto line = broker.ReadLine(seconds(30));
  ASSERT_TRUE(line.has_value()) << broker.Wait(seconds(1)).Describe();
  EXPECT_EQ(*line, "bootstrap " + bootstrap);

  EXPECT_EQ(PartitionsOf(bootstrap, "t1"), 3);
  // Other processes share it: a send from one, read back by another client.
  const ProcessResult send = Kbus({"send", "--brokers", bootstrap, "--topic", "t1", "--type",
                                   "shop.PlaceOrder", R"({"order_id":"o-b"})"});
  EXPECT_EQ(send.exit_code, 0) << send.Describe();
  const auto records = ReadTopic(bootstrap, "t1", 1, seconds(30));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].payload, R"({"order_id":"o-b"})");

  const auto stop_requested = std::chrono::steady_clock::now();
  broker.Kill(SIGTERM);
  const ProcessResult r = broker.Wait(seconds(10));
  EXPECT_FALSE(r.timed_out) << r.Describe();
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_requested, seconds(5));
}

TEST(KbusBroker, RefusesAPortInUseWithAnErrorNotACrash) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));

  const ProcessResult r = Kbus({"broker", "--port", port});
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("127.0.0.1:" + port), std::string::npos) << r.Describe();
  EXPECT_TRUE(r.out.empty()) << r.Describe();
}

TEST(KbusSend, GivesUpWithinItsTimeoutWhenNoBrokerAnswers) {
  const auto start = std::chrono::steady_clock::now();
  const ProcessResult r =
      Kbus({"send", "--brokers", "127.0.0.1:" + std::to_string(FreePort()), "--topic", "t",
            "--type", "t.T", "--timeout-ms", "1000", "{}"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("timed out"), std::string::npos) << r.Describe();
  EXPECT_TRUE(r.out.empty()) << "no message id for a message that was not sent: " << r.Describe();
  // librdkafka's verdict comes at the next timeout scan (1 s); the producer then closes at once.
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
}

}  // namespace
TEST(KbusConsole, RefusesBadFlagsNamingThem) {
  ExpectUsageError({"console", "--brokers", Bootstrap(), "--port", "70000"}, {"--port", "70000"});
  ExpectUsageError({"console", "--brokers", Bootstrap(), "--silent-after", "0s"}, {"--silent-after"});
  ExpectUsageError({"console", "--brokers", Bootstrap(), "--silent-after", "soon"}, {"--silent-after"});
  ExpectUsageError({"console", "--brokers", Bootstrap(), "--finished-jobs", "0"}, {"--finished-jobs"});
  ExpectUsageError({"console", "--brokers", Bootstrap(), "--token-file", "/nonexistent/token"},
                   {"--token-file", "/nonexistent/token"});
  ExpectUsageError({"console", "--brokers", Bootstrap()}, {"KBUS_PORT", "seventy"}, {"KBUS_PORT=seventy"});
}

TEST(KbusConsole, ServesUntilSigtermOnLoopbackAndNeverPrintsItsToken) {
  const int port = FreePort();
  const std::string token = "console-secret-7f3a9c";
  // The prefix keeps it to this test's topics on a broker other tests share.
  ChildProcess console({KBUS_CLI_PATH, "console", "--brokers", Bootstrap(), "--port", std::to_string(port),
                        "--log-level", "debug", "--topic-prefix", TestBroker::UniqueName("cli-console")},
                       {"KBUS_CONSOLE_TOKEN=" + token});
  const auto line = console.ReadLine(seconds(30));
  ASSERT_TRUE(line.has_value()) << console.Wait(seconds(1)).Describe();
  EXPECT_EQ(*line, "console http://127.0.0.1:" + std::to_string(port) + "/");
  // Ready once it read what it found; its status says actions are on.
  const bool ready = WaitFor([&] {
    return Kbus({"health", "--http-port", std::to_string(port), "--path", "/readyz"}).exit_code == 0;
  }, seconds(60));
  EXPECT_TRUE(ready);
  const ProcessResult status = Kbus({"health", "--http-port", std::to_string(port), "--path", "/api/status"});
  EXPECT_EQ(status.exit_code, 0) << status.Describe();
  EXPECT_NE(status.out.find(R"("read_only":false)"), std::string::npos) << status.out;
  EXPECT_EQ(status.out.find(token), std::string::npos);
  // A second console on the same port is refused, naming it: exit 1, no crash.
  const ProcessResult second = Kbus({"console", "--brokers", Bootstrap(), "--port", std::to_string(port)});
  EXPECT_EQ(second.exit_code, 1) << second.Describe();
  EXPECT_NE(second.err.find("--port " + std::to_string(port)), std::string::npos) << second.Describe();
  console.Kill(SIGTERM);
  const ProcessResult r = console.Wait(seconds(15));
  EXPECT_FALSE(r.timed_out) << r.Describe();
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out.find(token), std::string::npos);
  EXPECT_EQ(r.err.find(token), std::string::npos) << "the token was logged";
  EXPECT_NE(r.err.find("console serving"), std::string::npos) << r.err;
}


}  // namespace kbus::test
