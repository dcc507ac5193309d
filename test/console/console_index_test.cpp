// The console's indexes without a broker: what the API answers for the records it was given
// (workflow state records, launcher events, dead letters), its paging and its refusals.

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <tuple>

#include "dead_letter_index.hpp"
#include "job_index.hpp"
#include "json_answer.hpp"
#include "kbus/json.hpp"
#include "workflow_index.hpp"

namespace {

using kbus::console::Answer;
using kbus::console::DeadLetterIndex;
using kbus::console::Durations;
using kbus::console::JobIndex;
using kbus::console::Params;
using kbus::console::RecordFetch;
using kbus::console::WorkflowIndex;

// The answer's JSON, parsed (the test fails on text that is not JSON).
struct Json : console_test::Json {
  explicit Json(const Answer& a) : console_test::Json(a.status, a.json) {}
};

// A state record as the workflow host writes it (docs/workflows.md, "The state record").
std::string StateRecord(const std::string& id, int version, const std::string& status, std::int64_t updated_ms,
                        const std::string& extra = "", int run = 1, const std::string& sent_type = "") {
  std::string outbox = sent_type.empty() ? "[]"
                                         : R"([{"topic":"t","key":"k","payload":"{}","headers":[["kbus-type",")" +
                                               sent_type + R"("]]}])";
  return R"({"workflow":"video.encode","id":")" + id + R"(","schema":1,"version":)" + std::to_string(version) +
         R"(,"run":)" + std::to_string(run) + R"(,"status":")" + status + R"(","created_ms":1000,"updated_ms":)" +
         std::to_string(updated_ms) + R"(,"finished_ms":)" + (status == "running" ? "0" : std::to_string(updated_ms)) +
         R"(,"correlation_id":"c","processed":[],"last_message":"m)" + std::to_string(version) + R"(","outbox":)" +
         outbox +
         R"(,"timeouts":[{"id":"a","name":"retry","due_ms":5000,"payload":""},{"id":"b","name":"kbus.expire","due_ms":9000,"payload":""}],)"
         R"("origin":{"topic":"video.encode.in","partition":0,"offset":3,"timestamp_ms":1,"key":"k","payload":"{}","headers":[["kbus-type","video.EncodeVideo"]]},)"
         R"("state":{"attempt":2,"phase":"running","history":["1:failed exit 1"]})" +
         extra + "}";
}

// Records by (topic, partition, offset), served back as the console's reader would.
struct Log {
  std::map<std::tuple<std::string, int, std::int64_t>, std::string> records;
  std::int64_t next = 0;
  std::int64_t Add(WorkflowIndex& index, const std::string& value, const std::string& key = "") {
    const std::int64_t offset = next++;
    records[{"video.encode.state", 0, offset}] = value;
    index.Add("video.encode.state", 0, offset, key.empty() ? std::nullopt : std::optional<std::string_view>(key),
              value);
    return offset;
  }
  RecordFetch Fetch() const {
    return [this](const std::string& t, std::int32_t p, std::int64_t o) -> kbus::Result<std::string> {
      auto it = records.find({t, p, o});
      if (it == records.end()) return kbus::Error(kbus::ErrorCode::kNotFound, "no record");
      return it->second;
    };
  }
};

TEST(ConsoleWorkflowIndex, ListsInstancesNewestFirstWithCountsPagingAndStatusFilter) {
  WorkflowIndex index;
  Log log;
  log.Add(index, StateRecord("a", 1, "running", 2000));
  log.Add(index, StateRecord("b", 1, "running", 3000));
  log.Add(index, StateRecord("c", 1, "running", 4000));
  log.Add(index, StateRecord("a", 2, "completed", 5000));  // a moves to completed, newest now
  log.Add(index, StateRecord("d", 3, "failed", 1500));

  Json workflows(index.Workflows());
  auto wf = workflows.Items().At(0);
  EXPECT_EQ(*wf.Find("name")->AsString(), "video.encode");
  EXPECT_EQ(*wf.Find("running")->AsInt64(), 2);
  EXPECT_EQ(*wf.Find("completed")->AsInt64(), 1);
  EXPECT_EQ(*wf.Find("failed")->AsInt64(), 1);
  EXPECT_EQ(*wf.Find("total")->AsInt64(), 4);

  Json all(index.Instances({{"workflow", "video.encode"}}));
  EXPECT_EQ(all.Ids(), (std::vector<std::string>{"a", "c", "b", "d"}));
  EXPECT_EQ(all.Int("total"), 4);
  Json page(index.Instances({{"workflow", "video.encode"}, {"offset", "1"}, {"limit", "2"}}));
  EXPECT_EQ(page.Ids(), (std::vector<std::string>{"c", "b"}));
  EXPECT_EQ(page.Int("total"), 4);
  Json running(index.Instances({{"workflow", "video.encode"}, {"status", "running"}}));
  EXPECT_EQ(running.Ids(), (std::vector<std::string>{"c", "b"}));
  EXPECT_EQ(running.Int("total"), 2);
  Json beyond(index.Instances({{"workflow", "video.encode"}, {"status", "failed"}, {"offset", "5"}}));
  EXPECT_EQ(beyond.Ids().size(), 0u);
  EXPECT_EQ(beyond.Int("total"), 1);

  // The summary: attempt and phase from the state, user timeouts only (not kbus.*).
  auto first = running.Items().At(0);
  EXPECT_EQ(*first.Find("attempt")->AsInt64(), 2);
  EXPECT_EQ(*first.Find("phase")->AsString(), "running");
  EXPECT_EQ(*first.Find("timeouts")->AsInt64(), 1);
  EXPECT_EQ(*first.Find("type")->AsString(), "video.EncodeVideo");
}

TEST(ConsoleWorkflowIndex, RefusesBadParametersNamingThem) {
  WorkflowIndex index;
  Log log;
  log.Add(index, StateRecord("a", 1, "running", 2000));
  for (const auto& [params, name] : std::vector<std::pair<Params, std::string>>{
           {{{"workflow", "video.encode"}, {"limit", "0"}}, "limit"},
           {{{"workflow", "video.encode"}, {"limit", "501"}}, "limit"},
           {{{"workflow", "video.encode"}, {"offset", "-1"}}, "offset"},
           {{{"workflow", "video.encode"}, {"offset", "1x"}}, "offset"},
           {{{"workflow", "video.encode"}, {"status", "done"}}, "status"},
           {{}, "workflow"}}) {
    Json bad(index.Instances(params));
    EXPECT_EQ(bad.status, 400) << name;
    EXPECT_EQ(bad.Str("parameter"), name);
    EXPECT_NE(bad.Str("error").find(name), std::string::npos) << bad.Str("error");
  }
  Json unknown(index.Instances({{"workflow", "nope"}}));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.Str("error").find("nope"), std::string::npos);
}

TEST(ConsoleWorkflowIndex, OneInstanceShowsStateTimeoutsStepsAndHistoryFromTheTopic) {
  WorkflowIndex index;
  Log log;
  log.Add(index, StateRecord("a", 1, "running", 2000, "", 1, "kbus.LaunchProcess"));
  log.Add(index, StateRecord("a", 2, "running", 3000));
  log.Add(index, StateRecord("a", 3, "completed", 4000, R"(,"result":{"output":"a.mp4"},"result_expires_ms":90000)",
                             1, "video.VideoEncoded"));
  Json one(index.Instance({{"workflow", "video.encode"}, {"id", "a"}}, log.Fetch()));
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(one.Str("status"), "completed");
  EXPECT_EQ(*one.root().Find("state")->Find("phase")->AsString(), "running");
  EXPECT_EQ(one.root().Find("timeouts")->Size(), 2u);  // all of them here, kbus.expire too
  auto steps = *one.root().Find("steps");
  ASSERT_EQ(steps.Size(), 3u);
  EXPECT_EQ(*steps.At(0).Find("sent")->At(0).AsString(), "kbus.LaunchProcess");
  EXPECT_EQ(*steps.At(2).Find("status")->AsString(), "completed");
  EXPECT_EQ(*one.root().Find("history")->At(0).AsString(), "1:failed exit 1");
  EXPECT_EQ(*one.root().Find("result")->Find("output")->AsString(), "a.mp4");
  EXPECT_EQ(*one.root().Find("origin")->Find("type")->AsString(), "video.EncodeVideo");

  // A new run starts its steps over.
  log.Add(index, StateRecord("a", 4, "running", 6000, "", 2));
  Json second(index.Instance({{"workflow", "video.encode"}, {"id", "a"}}, log.Fetch()));
  EXPECT_EQ(second.root().Find("steps")->Size(), 1u);
  EXPECT_EQ(second.Int("run"), 2);

  Json missing(index.Instance({{"workflow", "video.encode"}, {"id", "zz"}}, log.Fetch()));
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.Str("error").find("zz"), std::string::npos);
}

TEST(ConsoleWorkflowIndex, ServesAResultUntilItExpiresAndSaysWhyNot) {
  WorkflowIndex index;
  Log log;
  log.Add(index, StateRecord("run", 1, "running", 2000));
  log.Add(index, StateRecord("done", 2, "completed", 3000, R"(,"result":{"frames":100},"result_expires_ms":50000)"));
  log.Add(index, StateRecord("plain", 2, "completed", 3000));
  log.Add(index, StateRecord("bad", 2, "failed", 3000));

  Json ok(index.ResultOf({{"workflow", "video.encode"}, {"id", "done"}}, log.Fetch(), 40000));
  ASSERT_EQ(ok.status, 200) << ok.Str("error");
  EXPECT_EQ(*ok.root().Find("result")->Find("frames")->AsInt64(), 100);
  EXPECT_EQ(ok.Int("expires_ms"), 50000);

  Json expired(index.ResultOf({{"workflow", "video.encode"}, {"id", "done"}}, log.Fetch(), 50000));
  EXPECT_EQ(expired.status, 404);
  EXPECT_NE(expired.Str("error").find("expired"), std::string::npos);
  Json running(index.ResultOf({{"workflow", "video.encode"}, {"id", "run"}}, log.Fetch(), 0));
  EXPECT_EQ(running.status, 404);
  EXPECT_NE(running.Str("error").find("still running"), std::string::npos);
  Json none(index.ResultOf({{"workflow", "video.encode"}, {"id", "plain"}}, log.Fetch(), 0));
  EXPECT_EQ(none.status, 404);
  EXPECT_NE(none.Str("error").find("without a result"), std::string::npos);
  Json failed(index.ResultOf({{"workflow", "video.encode"}, {"id", "bad"}}, log.Fetch(), 0));
  EXPECT_NE(failed.Str("error").find("failed without a result"), std::string::npos);

  // The retention's tombstone removes the instance: 404, saying it may have been removed.
  index.Add("video.encode.state", 0, 99, std::string_view("done"), std::nullopt);
  Json gone(index.ResultOf({{"workflow", "video.encode"}, {"id", "done"}}, log.Fetch(), 0));
  EXPECT_EQ(gone.status, 404);
  EXPECT_NE(gone.Str("error").find("retention"), std::string::npos);
  EXPECT_EQ(index.size(), 3u);
}

TEST(ConsoleWorkflowIndex, RecordsItCannotReadAreCountedNotFatal) {
  WorkflowIndex index;
  Log log;
  log.Add(index, "not json");
  log.Add(index, R"({"id":5})");
  log.Add(index, std::string(200, '[') + std::string(200, ']'));  // deeper than kbus reads
  log.Add(index, R"({"workflow":"video.encode","status":"running"})");  // no id and no key
  log.Add(index, R"({"workflow":"w2","status":"completed","updated_ms":"soon"})", "k");  // the key names it
  EXPECT_EQ(index.bad_records(), 4u);
  EXPECT_EQ(index.size(), 1u);
  Json w2(index.Instances({{"workflow", "w2"}}));
  EXPECT_EQ(w2.Ids(), (std::vector<std::string>{"k"}));
}

TEST(ConsoleWorkflowIndex, TotalsCountDurationsOfCompletedRunsOnce) {
  WorkflowIndex index;
  Log log;
  log.Add(index, StateRecord("a", 1, "completed", 2000));  // created 1000: 1000 ms
  log.Add(index, StateRecord("a", 1, "completed", 2000));  // read again: not a second sample
  log.Add(index, StateRecord("b", 1, "completed", 11000));  // 10000 ms
  auto totals = index.ByWorkflow().at("video.encode");
  EXPECT_EQ(totals.completed, 2u);
  ASSERT_TRUE(totals.mean_p95);
  EXPECT_DOUBLE_EQ(totals.mean_p95->first, 5500);
  EXPECT_EQ(totals.mean_p95->second, 10000);
  EXPECT_EQ(index.ByType().at("video.EncodeVideo").completed, 2u);
}

TEST(ConsoleWorkflowIndex, TotalsByTypeFollowEachInstancesLatestStatusAndItsRemoval) {
  WorkflowIndex index;
  Log log;
  log.Add(index, StateRecord("a", 1, "running", 2000));
  log.Add(index, StateRecord("b", 1, "running", 2000));
  log.Add(index, StateRecord("c", 1, "failed", 2000));
  log.Add(index, StateRecord("a", 2, "completed", 3000));  // moves from running to completed
  auto by_type = index.ByType().at("video.EncodeVideo");
  EXPECT_EQ(by_type.running, 1u);
  EXPECT_EQ(by_type.completed, 1u);
  EXPECT_EQ(by_type.failed, 1u);
  EXPECT_EQ(by_type.topics, (std::set<std::string>{"video.encode.in"}));  // where the runs began
  index.Add("video.encode.state", 0, 10, std::string_view("c"), std::nullopt);  // its retention ended
  index.Add("video.encode.state", 0, 11, std::string_view("b"), std::nullopt);
  by_type = index.ByType().at("video.EncodeVideo");
  EXPECT_EQ(by_type.running, 0u);
  EXPECT_EQ(by_type.failed, 0u);
  index.Add("video.encode.state", 0, 12, std::string_view("a"), std::nullopt);
  EXPECT_FALSE(index.ByType().contains("video.EncodeVideo"));  // no instance of it left
}

TEST(ConsoleDurations, KeepTheLatestSamplesAndTakeTheNearestRankP95) {
  Durations d(100);
  for (int i = 1; i <= 100; ++i) d.Add(i);
  EXPECT_EQ(d.MeanP95()->second, 95);
  EXPECT_DOUBLE_EQ(d.MeanP95()->first, 50.5);
  for (int i = 0; i < 100; ++i) d.Add(1000);  // the old samples leave
  EXPECT_EQ(d.MeanP95()->second, 1000);
  EXPECT_EQ(d.count(), 200u);
  EXPECT_FALSE(Durations().MeanP95());
}

// ---- jobs

std::vector<kbus::HeaderView> Typed(const std::string& type) {
  static std::map<std::string, std::string> names;  // keeps the views' text alive
  auto& stored = names[type];
  stored = type;
  return {{"kbus-type", stored}, {"kbus-workflow-id", "wf-1"}};
}

void Event(JobIndex& jobs, const std::string& type, const std::string& json, std::int64_t ts, std::int64_t offset = 0) {
  jobs.Add("video.encode.in", 1, offset, ts, "wf-1", json, Typed(type));
}

TEST(ConsoleJobIndex, FollowsAnAttemptFromStartThroughProgressToItsExit) {
  JobIndex jobs;
  Event(jobs, "kbus.ProcessStarted", R"({"job_id":"j1","attempt":1,"program":"enc","pid":42,"host":"h1"})", 1000);
  Event(jobs, "kbus.ProcessProgress", R"({"job_id":"j1","attempt":1,"percent":40,"message":"pass 2"})", 2000);
  Event(jobs, "kbus.ProcessStarted", R"({"job_id":"j2","attempt":1,"program":"enc","pid":43,"host":"h2"})", 1500);
  Json running(jobs.Jobs({}, 3000));
  EXPECT_EQ(running.Ids("job_id"), (std::vector<std::string>{"j1", "j2"}));  // oldest start first
  auto j1 = running.Items().At(0);
  EXPECT_EQ(*j1.Find("percent")->AsInt64(), 40);
  EXPECT_EQ(*j1.Find("message")->AsString(), "pass 2");
  EXPECT_EQ(*j1.Find("host")->AsString(), "h1");
  EXPECT_EQ(*j1.Find("elapsed_ms")->AsInt64(), 2000);
  EXPECT_EQ(*j1.Find("workflow_id")->AsString(), "wf-1");

  Event(jobs, "kbus.ProcessExited",
        R"({"job_id":"j1","attempt":1,"outcome":"succeeded","exit_code":0,"duration":2500,"result":"{\"frames\":7}"})",
        3500, 17);
  Event(jobs, "kbus.ProcessHeartbeat", R"({"job_id":"j1","attempt":1,"elapsed":3000,"percent":50})", 3600);  // late
  Json still(jobs.Jobs({}, 4000));
  EXPECT_EQ(still.Ids("job_id"), (std::vector<std::string>{"j2"}));
  Json finished(jobs.Jobs({{"state", "finished"}}, 4000));
  ASSERT_EQ(finished.Ids("job_id"), (std::vector<std::string>{"j1"}));
  auto done = finished.Items().At(0);
  EXPECT_EQ(*done.Find("outcome")->AsString(), "succeeded");
  EXPECT_EQ(*done.Find("percent")->AsInt64(), 100);
  EXPECT_TRUE(*done.Find("has_result")->AsBool());
  EXPECT_EQ(jobs.Totals().succeeded, 1u);
  EXPECT_EQ(jobs.Totals().running, 1u);

  // One job: its result read back from the Exited record.
  RecordFetch fetch = [](const std::string& topic, std::int32_t p, std::int64_t o) -> kbus::Result<std::string> {
    EXPECT_EQ(topic, "video.encode.in");
    EXPECT_EQ(p, 1);
    EXPECT_EQ(o, 17);
    return std::string(R"({"job_id":"j1","attempt":1,"outcome":"succeeded","result":"{\"frames\":7}","stderr_tail":"warn"})");
  };
  Json one(jobs.Job({{"id", "j1"}}, fetch, 5000));
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(*one.root().Find("result")->Find("frames")->AsInt64(), 7);
  EXPECT_EQ(one.Str("stderr_tail"), "warn");
  EXPECT_EQ(jobs.LaunchKey("j1"), std::optional<std::string>("wf-1"));
}

TEST(ConsoleJobIndex, ALaterAttemptSupersedesOneThatNeverReportedItsExit) {
  JobIndex jobs;
  Event(jobs, "kbus.ProcessStarted", R"({"job_id":"j","attempt":1,"program":"p","pid":1})", 1000);
  Event(jobs, "kbus.ProcessStarted", R"({"job_id":"j","attempt":2,"program":"p","pid":2})", 9000);
  Json running(jobs.Jobs({}, 9500));
  ASSERT_EQ(running.Items().Size(), 1u);
  EXPECT_EQ(*running.Items().At(0).Find("attempt")->AsInt64(), 2);
  Json one(jobs.Job({{"id", "j"}, {"attempt", "1"}}, nullptr, 9500));
  EXPECT_EQ(one.Str("outcome"), "superseded");
  EXPECT_EQ(one.root().Find("attempts")->Size(), 2u);
  EXPECT_EQ(jobs.Totals().failed, 0u);  // not counted as a failure: nobody said it failed
  // Its real exit, when it comes, replaces the guess.
  Event(jobs, "kbus.ProcessExited", R"({"job_id":"j","attempt":1,"outcome":"cancelled","error":"lost"})", 9600);
  EXPECT_EQ(Json(jobs.Job({{"id", "j"}, {"attempt", "1"}}, nullptr, 9700)).Str("outcome"), "cancelled");
  EXPECT_EQ(jobs.Totals().failed, 1u);
  EXPECT_EQ(Json(jobs.Jobs({{"state", "finished"}}, 9700)).Int("total"), 1);
}

TEST(ConsoleJobIndex, ShowsSilenceKeepsABoundOfFinishedJobsAndIgnoresOtherRecords) {
  JobIndex jobs(JobIndex::Limits{.finished = 2, .silent_after_ms = 1000});
  Event(jobs, "kbus.ProcessStarted", R"({"job_id":"quiet","attempt":1,"program":"p","pid":1})", 0);
  Json silent(jobs.Jobs({}, 5000));
  EXPECT_TRUE(*silent.Items().At(0).Find("silent")->AsBool());
  for (int i = 0; i < 3; ++i) {
    const std::string id = "f" + std::to_string(i);
    Event(jobs, "kbus.ProcessStarted", R"({"job_id":")" + id + R"(","attempt":1,"program":"p","pid":1})", 10 + i);
    Event(jobs, "kbus.ProcessExited", R"({"job_id":")" + id + R"(","attempt":1,"outcome":"failed","exit_code":3})",
          20 + i);
  }
  Json finished(jobs.Jobs({{"state", "finished"}}, 100));
  EXPECT_EQ(finished.Ids("job_id"), (std::vector<std::string>{"f2", "f1"}));  // f0 forgotten
  EXPECT_EQ(jobs.Job({{"id", "f0"}}, nullptr, 100).status, 404);

  const std::size_t before = jobs.size();
  Event(jobs, "video.EncodeVideo", R"({"video_id":"x"})", 1);
  Event(jobs, "kbus.ProcessProgress", "<script>", 1);
  Event(jobs, "kbus.ProcessProgress", R"({"attempt":1,"percent":5})", 1);  // no job id
  EXPECT_EQ(jobs.size(), before);

  EXPECT_EQ(Json(jobs.Jobs({{"state", "gone"}}, 0)).Str("parameter"), "state");
  EXPECT_EQ(Json(jobs.Job({{"id", "quiet"}, {"attempt", "0"}}, nullptr, 0)).Str("parameter"), "attempt");
  EXPECT_EQ(jobs.Job({{"id", "quiet"}, {"attempt", "9"}}, nullptr, 0).status, 404);
}

// ---- dead letters

kbus::kafka::DeadLetterRecord Dead(std::int32_t partition, std::int64_t offset, const std::string& reason,
                                   const std::string& type, std::int64_t at_ms) {
  kbus::kafka::DeadLetterRecord r;
  r.partition = partition;
  r.offset = offset;
  r.reason = reason;
  r.type = type;
  r.id = "id-" + std::to_string(partition) + "-" + std::to_string(offset);
  r.original_topic = "orders";
  r.error = std::string(1000, 'e');
  r.at_ms = at_ms;
  r.attempts = 5;
  r.headers = {{"kbus-dlq-workflow", "shop.order"}};
  return r;
}

TEST(ConsoleDeadLetterIndex, ListsNewestFirstFiltersPagesAndCounts) {
  DeadLetterIndex dlq;
  for (int i = 0; i < 10; ++i) {
    dlq.Add("shop", Dead(i % 2, i / 2, i % 3 == 0 ? "rejected" : "decode-error", i < 5 ? "A" : "B", 100 + i));
  }
  Json all(dlq.List({{"group", "shop"}, {"limit", "3"}}));
  EXPECT_EQ(all.Int("total"), 10);
  EXPECT_EQ(all.Ids(), (std::vector<std::string>{"id-1-4", "id-0-4", "id-1-3"}));
  EXPECT_EQ(all.Items().At(0).Find("error")->AsString()->size(), 300u);  // the list shows the start
  Json rejected(dlq.List({{"group", "shop"}, {"reason", "rejected"}}));
  EXPECT_EQ(rejected.Int("total"), 4);  // i = 0, 3, 6, 9
  Json typed(dlq.List({{"group", "shop"}, {"type", "A"}, {"reason", "rejected"}, {"offset", "1"}}));
  EXPECT_EQ(typed.Int("total"), 2);  // i = 0, 3
  EXPECT_EQ(typed.Ids(), (std::vector<std::string>{"id-0-0"}));
  Json window(dlq.List({{"group", "shop"}, {"since_ms", "103"}, {"until_ms", "105"}}));
  EXPECT_EQ(window.Int("total"), 2);

  Json groups(dlq.Groups());
  auto g = groups.Items().At(0);
  EXPECT_EQ(*g.Find("count")->AsInt64(), 10);
  EXPECT_EQ(*g.Find("reasons")->Find("rejected")->AsInt64(), 4);
  EXPECT_EQ(dlq.CountByType().at("A"), 5u);
  EXPECT_EQ(dlq.CountByWorkflow().at("shop.order"), 10u);
  EXPECT_EQ(dlq.TopicsByType().at("B"), (std::set<std::string>{"orders"}));

  EXPECT_EQ(Json(dlq.List({{"group", "nope"}})).status, 404);
  EXPECT_EQ(Json(dlq.List({{"group", "shop"}, {"since_ms", "x"}})).Str("parameter"), "since_ms");
  EXPECT_EQ(Json(dlq.List({{"group", "shop"}, {"since_ms", "5"}, {"until_ms", "5"}})).Str("parameter"), "since_ms");
  EXPECT_EQ(Json(dlq.List({})).Str("parameter"), "group");
}

TEST(ConsoleDeadLetterIndex, MarksRedrivenWhetherTheCopyIsSeenBeforeOrAfterTheDeadLetter) {
  DeadLetterIndex dlq;
  dlq.Add("shop", Dead(0, 0, "rejected", "A", 1));
  dlq.MarkRedriven("shop.dlq/0/0");
  dlq.MarkRedriven("shop.dlq/0/1");  // its dead letter not read yet
  dlq.MarkRedriven("garbage");
  dlq.Add("shop", Dead(0, 1, "rejected", "A", 2));
  dlq.Add("shop", Dead(0, 2, "rejected", "A", 3));
  Json list(dlq.List({{"group", "shop"}}));
  auto items = list.Items();
  EXPECT_FALSE(*items.At(0).Find("redriven")->AsBool());
  EXPECT_TRUE(*items.At(1).Find("redriven")->AsBool());
  EXPECT_TRUE(*items.At(2).Find("redriven")->AsBool());
  EXPECT_EQ(*Json(dlq.Groups()).Items().At(0).Find("redriven")->AsInt64(), 2);
}

TEST(ConsoleDeadLetterIndex, OneDeadLetterCarriesItsHeadersAndPayloadAsText) {
  DeadLetterIndex dlq;
  dlq.Add("shop", Dead(0, 7, "decode-error", "A", 1));
  auto read = [](const std::string& group, std::int32_t p, std::int64_t o) -> kbus::Result<kbus::kafka::DeadLetterRecord> {
    EXPECT_EQ(group, "shop");
    auto r = Dead(p, o, "decode-error", "A", 1);
    r.payload = "<script>alert(1)</script>";
    r.headers.push_back({"kbus-dlq-reason", "decode-error"});
    return r;
  };
  Json one(dlq.One({{"group", "shop"}, {"partition", "0"}, {"offset", "7"}}, read));
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(one.Str("payload"), "<script>alert(1)</script>");  // a string: the page shows it as text
  EXPECT_EQ(one.Str("error").size(), 1000u);                   // the whole error here
  EXPECT_EQ(one.root().Find("headers")->Size(), 2u);
  EXPECT_EQ(dlq.One({{"group", "shop"}, {"partition", "0"}, {"offset", "8"}}, read).status, 404);
  EXPECT_EQ(Json(dlq.One({{"group", "shop"}, {"partition", "0"}}, read)).Str("parameter"), "offset");
}

}  // namespace
