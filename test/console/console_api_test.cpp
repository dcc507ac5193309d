// kbus console over HTTP against a running system on a broker (embedded and real Kafka): the
// video example's workflow host and launcher with the fake encoder, and a worker that
// dead-letters. What an operator asks: which jobs run and how far, how each workflow ended and
// with what result, what was dead-lettered and why; and what they do: redrive a dead letter
// (then it is handled), cancel a job, pause and resume a schedule, only with the token.

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "it_support.hpp"
#include "json_answer.hpp"
#include "kbus/console/console.hpp"
#include "kbus/kafka/partition_reader.hpp"
#include "kbus/schedules/client.hpp"
#include "kbus/schedules/scheduler.hpp"
#include "video_stack.hpp"

namespace {

using console_test::Json;
using kbus::console::Console;
using kbus::console::ConsoleConfig;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using namespace std::chrono_literals;

constexpr const char* kToken = "console-test-token";

ConsoleConfig ConfigFor(const std::string& prefix) {
  ConsoleConfig c;
  c.client.brokers = TestBroker::Get().bootstrap();
  c.port = 0;
  c.token = kToken;
  c.topic_prefix = prefix;
  c.discover_interval = 300ms;
  c.lag_interval = 500ms;
  return c;
}

// An HTTP client of one console.
class Api {
 public:
  explicit Api(int port) : client_("127.0.0.1", port) {
    client_.set_read_timeout(30, 0);
    client_.set_connection_timeout(5, 0);
  }
  Json Get(const std::string& path) {
    auto res = client_.Get(path);
    EXPECT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    return res ? Json(res->status, res->body) : Json(0, "{}");
  }
  Json Post(const std::string& path, const std::string& body, const std::string& token = kToken) {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto res = client_.Post(path, headers, body, "application/json");
    EXPECT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    return res ? Json(res->status, res->body) : Json(0, "{}");
  }
  // Polls `path` until `done` holds for its answer; the last answer either way.
  bool WaitUntil(const std::string& path, const std::function<bool(const Json&)>& done,
                 std::chrono::milliseconds timeout = 60s) {
    return WaitFor([&] { return done(Get(path)); }, timeout);
  }

 private:
  httplib::Client client_;
};

// The first record of `topic` for which `match` holds, read from the beginning; nullopt after
// `timeout`.
std::optional<kbus::kafka::ReaderRecord> FindRecord(const std::string& topic,
                                                    const std::function<bool(const kbus::kafka::ReaderRecord&)>& match,
                                                    std::chrono::milliseconds timeout = 30s) {
  auto reader = kbus::kafka::PartitionReader::Open(it::ProducerConfig().client, {.topic = topic});
  EXPECT_TRUE(reader.ok());
  auto partitions = (*reader)->Partitions();
  EXPECT_TRUE(partitions.ok());
  std::vector<kbus::kafka::PartitionSpan> spans;
  for (const auto& p : *partitions) spans.push_back({.partition = p.partition});
  EXPECT_TRUE((*reader)->Assign(spans).ok());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto next = (*reader)->Next(200ms);
    if (next.ok() && *next && match(**next)) return std::move(**next);
  }
  return std::nullopt;
}

video::EncodeSettings QuickVideos() {
  video::EncodeSettings s;
  s.fake_seconds = 0.5;
  s.retry.initial_interval = 200ms;
  s.retry.maximum_interval = 1s;
  s.retry.maximum_attempts = 3;
  s.run_timeout = 30s;
  s.heartbeat_interval = 500ms;
  s.heartbeat_timeout = 10s;
  return s;
}

TEST(ConsoleApi, ShowsJobsWorkflowsResultsAndDeadLettersOfARunningVideoSystem) {
  video_test::Stack stack(QuickVideos(), 4);
  ConsoleConfig config = ConfigFor(stack.tag);
  config.launcher_control_topic = stack.settings.control_topic;
  Console console(config);
  Api api(console.port());
  const std::string wf = stack.settings.name;

  stack.Send({"clip-1", "holiday.mp4", 720});
  stack.Send({"clip-2", "flaky-2-interview.mp4", 720});
  stack.Send({"clip-3", "broken-upload.mp4", 720});

  // While they run, some job is listed as running with a bar and a host.
  ASSERT_TRUE(api.WaitUntil("/api/jobs", [](const Json& j) { return j.Int("total") > 0; }, 60s));
  // How each ended: two completed, one failed (its three attempts used up).
  ASSERT_TRUE(api.WaitUntil("/api/workflows", [&](const Json& j) {
    for (std::size_t i = 0; i < j.Items().Size(); ++i) {
      auto w = j.Items().At(i);
      if (*w.Find("name")->AsString() == wf) return *w.Find("completed")->AsInt64() == 2 && *w.Find("failed")->AsInt64() == 1;
    }
    return false;
  }, 90s)) << api.Get("/api/workflows").body;

  Json failed = api.Get("/api/instances?workflow=" + wf + "&status=failed");
  EXPECT_EQ(failed.Ids(), (std::vector<std::string>{"clip-3"}));
  Json clip2 = api.Get("/api/instance?workflow=" + wf + "&id=clip-2");
  ASSERT_EQ(clip2.status, 200) << clip2.body;
  EXPECT_EQ(clip2.Int("attempt"), 3);
  auto history = *clip2.root().Find("history");
  ASSERT_EQ(history.Size(), 3u) << clip2.body;
  EXPECT_EQ(*history.At(2).AsString(), "3:succeeded");
  EXPECT_EQ(*clip2.root().Find("steps")->At(0).Find("sent")->At(0).AsString(), "kbus.LaunchProcess");

  // Results: the encoder's result line, served by workflow id; a failed one says why not.
  Json result = api.Get("/api/result?workflow=" + wf + "&id=clip-1");
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_NE(result.root().Find("result")->Find("output"), std::nullopt) << result.body;
  EXPECT_GT(result.Int("expires_ms"), 0);
  Json no_result = api.Get("/api/result?workflow=" + wf + "&id=clip-3");
  EXPECT_EQ(no_result.status, 404);
  EXPECT_NE(no_result.Str("error").find("failed"), std::string::npos) << no_result.body;
  EXPECT_EQ(api.Get("/api/result?workflow=" + wf + "&id=clip-9").status, 404);

  // The job view: clip-2's three attempts, the last succeeded with the launcher's host.
  ASSERT_TRUE(api.WaitUntil("/api/job?id=clip-2", [](const Json& j) { return j.Str("outcome") == "succeeded"; }));
  Json job = api.Get("/api/job?id=clip-2");
  EXPECT_EQ(job.root().Find("attempts")->Size(), 3u);
  EXPECT_EQ(job.Str("host"), "test");
  EXPECT_EQ(job.Int("percent"), 100);
  EXPECT_FALSE(job.root().Find("result")->IsNull()) << job.body;
  EXPECT_EQ(api.Get("/api/job?id=clip-2&attempt=1").Str("outcome"), "failed");

  // The dead letter, with its reason and the workflow that sent it.
  ASSERT_TRUE(api.WaitUntil("/api/dead-letters?group=" + stack.group, [](const Json& j) { return j.Int("total") == 1; }));
  Json dead = api.Get("/api/dead-letters?group=" + stack.group);
  auto d = dead.Items().At(0);
  EXPECT_EQ(*d.Find("reason")->AsString(), "attempts-exhausted");
  EXPECT_EQ(*d.Find("type")->AsString(), "video.EncodeVideo");
  EXPECT_EQ(*d.Find("workflow")->AsString(), wf);

  // Totals, and the workflow group's lag: nothing left once it committed what it handled.
  ASSERT_TRUE(api.WaitUntil("/api/totals", [&](const Json& j) {
    auto backlog = j.root().Find("workflows")->At(0).Find("backlog");
    return backlog->AsInt64() == std::optional<std::int64_t>(0);
  }, 30s)) << api.Get("/api/totals").body;
  Json totals = api.Get("/api/totals");
  auto t = totals.root().Find("workflows")->At(0);
  EXPECT_EQ(*t.Find("completed")->AsInt64(), 2);
  EXPECT_EQ(*t.Find("dead_lettered")->AsInt64(), 1);
  EXPECT_GT(*t.Find("p95_ms")->AsInt64(), 0);
  EXPECT_EQ(*totals.root().Find("jobs")->Find("succeeded")->AsInt64(), 2);
  auto type = totals.root().Find("types")->At(0);
  EXPECT_EQ(*type.Find("type")->AsString(), "video.EncodeVideo");
  EXPECT_EQ(*type.Find("done")->AsInt64(), 2);
  EXPECT_EQ(*type.Find("dead_lettered")->AsInt64(), 1);
  EXPECT_EQ(type.Find("backlog")->AsInt64(), std::optional<std::int64_t>(0)) << totals.body;

  // A console started now rebuilds the same view from the topics alone.
  {
    Console again(ConfigFor(stack.tag));
    ASSERT_TRUE(WaitFor([&] { return again.caught_up(); }, 60s));
    Api api2(again.port());
    EXPECT_EQ(api2.Get("/api/job?id=clip-2").root().Find("attempts")->Size(), 3u);
    EXPECT_EQ(api2.Get("/api/result?workflow=" + wf + "&id=clip-1").status, 200);
    EXPECT_EQ(api2.Get("/api/dead-letters?group=" + stack.group).Int("total"), 1);
  }

  // Actions need the token: without it, or with a wrong one, 401 and nothing is sent.
  const std::string one = R"({"group":")" + stack.group + R"(","partition":)" +
                          std::to_string(*d.Find("partition")->AsInt64()) + R"(,"offset":)" +
                          std::to_string(*d.Find("offset")->AsInt64()) + "}";
  EXPECT_EQ(api.Post("/api/dead-letters/redrive", one, "").status, 401);
  EXPECT_EQ(api.Post("/api/dead-letters/redrive", one, "wrong").status, 401);
  EXPECT_EQ(api.Post("/api/jobs/cancel", R"({"job_id":"clip-2"})", "").status, 401);
  EXPECT_EQ(api.Get("/api/instance?workflow=" + wf + "&id=clip-3").Int("run"), 1);

  // Redrive: the copy goes back to the workflow's input, is marked redriven, and is handled
  // (a redriven starter begins a new run).
  Json redriven = api.Post("/api/dead-letters/redrive", one);
  ASSERT_EQ(redriven.status, 200) << redriven.body;
  EXPECT_EQ(redriven.Int("redriven"), 1);
  EXPECT_TRUE(api.WaitUntil("/api/instance?workflow=" + wf + "&id=clip-3", [](const Json& j) { return j.Int("run") == 2; }))
      << api.Get("/api/instance?workflow=" + wf + "&id=clip-3").body;
  // ... and run to its end: its three attempts fail again (the upload is still broken).
  EXPECT_TRUE(api.WaitUntil("/api/instance?workflow=" + wf + "&id=clip-3", [](const Json& j) {
    return j.Int("run") == 2 && j.Str("status") == "failed" && j.Int("attempt") == 3;
  })) << api.Get("/api/instance?workflow=" + wf + "&id=clip-3").body;
  // The redriven one is marked; run 2's own dead letter, newest, is not. The console follows
  // the state and dead-letter topics with separate readers, so run 2's failed state may be
  // seen before its dead letter: wait for the letter rather than assume the order.
  EXPECT_TRUE(api.WaitUntil("/api/dead-letters?group=" + stack.group,
                            [](const Json& j) { return j.Int("total") == 2; }))
      << api.Get("/api/dead-letters?group=" + stack.group).body;
  Json after = api.Get("/api/dead-letters?group=" + stack.group);
  ASSERT_EQ(after.Int("total"), 2) << after.body;
  EXPECT_FALSE(*after.Items().At(0).Find("redriven")->AsBool());
  EXPECT_TRUE(*after.Items().At(1).Find("redriven")->AsBool());
  EXPECT_EQ(after.Items().At(1).Find("offset")->AsInt64(), d.Find("offset")->AsInt64());

  // Cancel: a CancelProcess for the job on the launcher's control topic, keyed as its launch.
  Json cancel = api.Post("/api/jobs/cancel", R"({"job_id":"clip-2","attempt":3,"reason":"operator"})");
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  auto sent = FindRecord(stack.settings.control_topic, [](const kbus::kafka::ReaderRecord& r) {
    return r.payload && r.payload->find("\"operator\"") != std::string::npos;
  });
  ASSERT_TRUE(sent);
  EXPECT_EQ(sent->key.value_or(""), "clip-2");
  EXPECT_NE(sent->payload->find(R"("job_id":"clip-2")"), std::string::npos) << *sent->payload;
  EXPECT_EQ(api.Post("/api/jobs/cancel", R"({"job_id":"no-such-job"})").status, 404);
}

TEST(ConsoleApi, BadRequestsAreRefusedNamingTheParameterAndChangeNothing) {
  const std::string prefix = TestBroker::UniqueName("cbad");
  Console console(ConfigFor(prefix));
  Api api(console.port());
  for (const auto& [path, parameter] : std::vector<std::pair<std::string, std::string>>{
           {"/api/jobs?limit=0", "limit"},
           {"/api/jobs?offset=-3", "offset"},
           {"/api/jobs?state=sleeping", "state"},
           {"/api/instances", "workflow"},
           {"/api/dead-letters?group=g&since_ms=yesterday", "since_ms"},
           {"/api/job?id=x&attempt=zero", "attempt"},
           {"/api/dead-letter?group=g&partition=0", "offset"}}) {
    Json bad = api.Get(path);
    EXPECT_EQ(bad.status, 400) << path;
    EXPECT_EQ(bad.Str("parameter"), parameter) << path << ": " << bad.body;
  }
  Json unknown = api.Get("/api/instance?workflow=nope&id=1");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.Str("error").find("nope"), std::string::npos);
  EXPECT_EQ(api.Get("/api/job?id=nope").status, 404);
  EXPECT_EQ(api.Get("/api/no-such-endpoint").status, 404);
  EXPECT_EQ(api.Post("/api/jobs/cancel", "not json").status, 400);
  EXPECT_EQ(api.Post("/api/dead-letters/redrive", R"({"group":"g"})").status, 404);

  // The page and its files are served, with a policy that runs only the console's own scripts.
  httplib::Client raw("127.0.0.1", console.port());
  auto page = raw.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("app.js"), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(raw.Get("/app.js")->status, 200);
  EXPECT_EQ(raw.Get("/style.css")->status, 200);

  // Read-only without a token: every action is refused with 403.
  ConsoleConfig read_only = ConfigFor(prefix);
  read_only.token.clear();
  Console ro(read_only);
  Api ro_api(ro.port());
  EXPECT_EQ(ro_api.Get("/api/status").root().Find("read_only")->AsBool(), std::optional<bool>(true));
  EXPECT_EQ(ro_api.Post("/api/jobs/cancel", R"({"job_id":"x"})").status, 403);

  // A config that cannot work is refused naming the field.
  ConsoleConfig bad_port = ConfigFor(prefix);
  bad_port.port = 70000;
  EXPECT_THROW(Console{bad_port}, std::invalid_argument);
  ConsoleConfig taken = ConfigFor(prefix);
  taken.port = console.port();
  try {
    Console second(taken);
    ADD_FAILURE() << "a second console bound the same port";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(console.port())), std::string::npos) << e.what();
  }
}

TEST(ConsoleApi, AnUnreachableBrokerIsReportedNotABlankAnswer) {
  ConsoleConfig c = ConfigFor("x");
  c.client.brokers = "127.0.0.1:1";  // nothing listens there
  c.client.properties["reconnect.backoff.max.ms"] = "200";
  Console console(c);
  Api api(console.port());
  ASSERT_TRUE(api.WaitUntil("/api/status", [](const Json& j) {
    auto broker = j.root().Find("broker");
    return broker && broker->Find("ok")->AsBool() == std::optional<bool>(false) &&
           !broker->Find("error")->AsString()->empty();
  }, 30s));
  EXPECT_EQ(api.Get("/api/workflows").status, 200);  // the lists still answer, empty
}

TEST(ConsoleApi, DeadLettersOfAWorkerAreRedrivenByFilterOnceTheCauseIsFixed) {
  const std::string prefix = TestBroker::UniqueName("cdlq");
  const std::string topic = prefix + ".work";
  const std::string group = prefix + "-workers";
  TestBroker::Get().CreateTopic(topic, 2);
  TestBroker::Get().CreateTopic(kbus::DeadLetterTopic(group), 2);
  std::atomic<bool> fixed{false};
  std::mutex mu;
  std::set<std::int64_t> handled;
  kbus::HandlerRegistry handlers;
  kbus::HandlerOptions on;
  on.topic = topic;
  handlers.Handle<it::Work>(
      [&](const it::Work& w, kbus::Context&) -> kbus::Outcome {
        if (!fixed.load()) return kbus::DeadLetter("the tenant is unknown");
        std::lock_guard lock(mu);
        handled.insert(w.id);
        return kbus::Ack();
      },
      on);
  it::RunningWorker worker(it::WorkerConfigFor(group), handlers);
  kbus::kafka::Producer producer(it::ProducerConfig());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(producer.Send(it::Work{i, "t", ""}, {.topic = topic}).ok());
  // And one that no code can decode: a payload that is HTML, of a type nobody handles.
  kbus::OutgoingRecord html;
  html.topic = topic;
  html.payload = "<script>alert('x')</script>";
  html.headers = {{"kbus-type", "it.Unknown"}, {"kbus-id", "html-1"}};
  ASSERT_TRUE(producer.SendSync(html).ok());

  Console console(ConfigFor(prefix));
  Api api(console.port());
  ASSERT_TRUE(api.WaitUntil("/api/dead-letters?group=" + group, [](const Json& j) { return j.Int("total") == 4; }))
      << api.Get("/api/dead-letters?group=" + group).body;
  Json rejected = api.Get("/api/dead-letters?group=" + group + "&reason=rejected");
  EXPECT_EQ(rejected.Int("total"), 3);
  Json unknown = api.Get("/api/dead-letters?group=" + group + "&type=it.Unknown");
  ASSERT_EQ(unknown.Int("total"), 1);
  auto u = unknown.Items().At(0);
  Json shown = api.Get("/api/dead-letter?group=" + group + "&partition=" + std::to_string(*u.Find("partition")->AsInt64()) +
                       "&offset=" + std::to_string(*u.Find("offset")->AsInt64()));
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(shown.Str("payload"), "<script>alert('x')</script>");  // as text, for the page to escape
  EXPECT_EQ(shown.Str("reason"), "unknown-type");

  // An empty filter is refused: redriving everything must be asked for.
  EXPECT_EQ(api.Post("/api/dead-letters/redrive", R"({"group":")" + group + R"("})").Str("parameter"), "all");
  fixed.store(true);
  Json report = api.Post("/api/dead-letters/redrive", R"({"group":")" + group + R"(","reason":"rejected"})");
  ASSERT_EQ(report.status, 200) << report.body;
  EXPECT_EQ(report.Int("redriven"), 3);
  EXPECT_EQ(report.Int("skipped"), 1);
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard lock(mu);
    return handled == std::set<std::int64_t>{1, 2, 3};
  }));
  Json after = api.Get("/api/dead-letters?group=" + group + "&reason=rejected");
  for (std::size_t i = 0; i < after.Items().Size(); ++i) EXPECT_TRUE(*after.Items().At(i).Find("redriven")->AsBool());
  // The cursor moved: the same filter again re-sends nothing.
  EXPECT_EQ(api.Post("/api/dead-letters/redrive", R"({"group":")" + group + R"(","reason":"rejected"})").Int("redriven"), 0);
}

TEST(ConsoleApi, SchedulesArePausedAndResumedThroughTheirScheduler) {
  const std::string prefix = TestBroker::UniqueName("csched");
  kbus::schedules::SchedulerConfig sc;
  sc.client = it::ProducerConfig().client;
  sc.group = prefix + "-scheduler";
  sc.pending_topic = prefix + ".pending";
  sc.schedules_topic = prefix + ".schedules";
  sc.session_timeout = 6s;
  TestBroker::Get().CreateTopic(sc.pending_topic, 1);
  TestBroker::Get().CreateTopic(sc.schedules_topic, 1);
  TestBroker::Get().CreateTopic(prefix + ".reports", 1);
  kbus::schedules::Scheduler scheduler(sc);
  std::thread run([&] { scheduler.Run(); });
  kbus::kafka::Producer producer(it::ProducerConfig());
  kbus::schedules::ScheduleSpec nightly;
  nightly.id = "nightly";
  nightly.cron = "0 2 * * *";
  nightly.type = "reports.Render";
  nightly.topic = prefix + ".reports";
  ASSERT_TRUE(kbus::schedules::Declare(producer, {nightly}, sc.schedules_topic).ok());

  ConsoleConfig c = ConfigFor(prefix);
  c.schedules_topic = sc.schedules_topic;
  Console console(c);
  Api api(console.port());
  auto paused = [](bool want) {
    return [want](const Json& j) {
      return j.Items().Size() == 1 && j.Items().At(0).Find("paused")->AsBool() == std::optional<bool>(want);
    };
  };
  ASSERT_TRUE(api.WaitUntil("/api/schedules", paused(false), 60s)) << api.Get("/api/schedules").body;
  EXPECT_FALSE(api.Get("/api/schedules").Items().At(0).Find("next_ms")->IsNull());
  EXPECT_EQ(api.Post("/api/schedules/pause", R"({"name":"nightly"})", "").status, 401);
  Json pause = api.Post("/api/schedules/pause", R"({"name":"nightly","note":"maintenance"})");
  ASSERT_EQ(pause.status, 200) << pause.body;
  ASSERT_TRUE(api.WaitUntil("/api/schedules", paused(true), 30s));
  EXPECT_EQ(api.Get("/api/schedules").Items().At(0).Find("note")->AsString(), std::optional<std::string_view>("maintenance"));
  ASSERT_EQ(api.Post("/api/schedules/resume", R"({"name":"nightly"})").status, 200);
  EXPECT_TRUE(api.WaitUntil("/api/schedules", paused(false), 30s));
  scheduler.Stop();
  run.join();
}

}  // namespace
