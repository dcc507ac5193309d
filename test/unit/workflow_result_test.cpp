// Results of workflow runs (docs/workflows.md, "Results"): recorded by Complete(result), kept in
// the state record as "result" and "result_expires_ms", bounded, expired, and gone with a new run.

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "kbus/json.hpp"
#include "kbus/workflows/test_kit.hpp"

namespace {

using namespace std::chrono_literals;
using kbus::workflows::Workflow;
using kbus::workflows::WorkflowContext;
using kbus::workflows::WorkflowOptions;
using kbus::workflows::WorkflowTestKit;

struct StartJob {
  std::string job_id;
};
// Ends the job: with `raw` as the result's JSON text when `use_raw`, else with a typed
// JobSummary; `fail` dead-letters the run after recording a result.
struct FinishJob {
  std::string job_id;
  std::string output;
  int frames = 0;
  bool use_raw = false;
  std::string raw;
  bool fail = false;
  bool no_result = false;
};
struct JobSummary {
  std::string output;
  int frames = 0;
};
struct Job {
  int finishes = 0;
};

}  // namespace

template <>
struct kbus::MessageTraits<StartJob> {
  static constexpr std::string_view kType = "jobs.StartJob";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "jobs.commands";
  static constexpr auto kFields = kbus::Fields(kbus::Field("job_id", &StartJob::job_id));
};
template <>
struct kbus::MessageTraits<FinishJob> {
  using T = FinishJob;
  static constexpr std::string_view kType = "jobs.FinishJob";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "jobs.events";
  static constexpr auto kFields = kbus::Fields(
      kbus::Field("job_id", &T::job_id), kbus::Field("output", &T::output), kbus::Field("frames", &T::frames),
      kbus::Field("use_raw", &T::use_raw), kbus::Field("raw", &T::raw), kbus::Field("fail", &T::fail),
      kbus::Field("no_result", &T::no_result));
};
template <>
struct kbus::JsonTraits<JobSummary> {
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("output", &JobSummary::output), kbus::Field("frames", &JobSummary::frames));
};
template <>
struct kbus::JsonTraits<Job> {
  static constexpr auto kFields = kbus::Fields(kbus::Field("finishes", &Job::finishes));
};

namespace {

Workflow<Job> JobWorkflow(WorkflowOptions options = {}) {
  Workflow<Job> wf("jobs.job", std::move(options));
  wf.StartedBy<StartJob>([](const StartJob& m) { return m.job_id; }, [](const StartJob&, Job&, WorkflowContext&) {});
  wf.Handles<FinishJob>(
      [](const FinishJob& m, Job& s, WorkflowContext& ctx) {
        ++s.finishes;
        if (m.no_result) {
          ctx.Complete();
        } else if (m.use_raw) {
          ctx.CompleteWithJson(m.raw);
        } else {
          ctx.Complete(JobSummary{m.output, m.frames});
        }
        if (m.fail) ctx.DeadLetter("job-failed", "it broke after all");
      },
      {.key = [](const FinishJob& m) { return m.job_id; }});
  return wf;
}

FinishJob Typed(std::string output, int frames) { return FinishJob{"j-1", std::move(output), frames}; }
FinishJob Raw(std::string json) {
  FinishJob f{"j-1"};
  f.use_raw = true;
  f.raw = std::move(json);
  return f;
}

// The stored record of `id`, parsed, as the console reads it.
struct StoredRecord {
  kbus::JsonDocument doc;
  bool present = false;
};
void ReadRecord(kbus::workflows::MemoryStateStore& store, const std::string& id, StoredRecord& out) {
  auto text = store.Get(0, id);
  out.present = text.has_value();
  if (out.present) {
    ASSERT_TRUE(out.doc.Parse(*text).ok()) << *text;
  }
}

TEST(WorkflowResult, ATypedResultIsKeptInTheStateRecordAsJsonWithItsExpiry) {
  WorkflowTestKit<Job> kit(JobWorkflow());
  kit.Send(StartJob{"j-1"});
  EXPECT_EQ(kit.ResultJson("j-1"), std::nullopt) << "a running instance has no result";
  kit.Send(Typed("clip.mp4", 100));
  ASSERT_EQ(kit.Status("j-1"), "completed");
  EXPECT_EQ(kit.ResultJson("j-1"), R"({"output":"clip.mp4","frames":100})");
  ASSERT_TRUE(kit.ResultAs<JobSummary>("j-1").has_value());
  EXPECT_EQ(kit.ResultAs<JobSummary>("j-1")->frames, 100);

  StoredRecord r;
  ReadRecord(kit.store(), "j-1", r);
  ASSERT_TRUE(r.present);
  auto result = r.doc.Root().Find("result");
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->IsObject()) << "embedded as JSON, not as a string";
  EXPECT_EQ(result->Find("output")->AsString(), "clip.mp4");
  auto expires = r.doc.Root().Find("result_expires_ms");
  ASSERT_TRUE(expires.has_value());
  EXPECT_EQ(expires->AsInt64(), kit.NowMs() + std::chrono::milliseconds(24h).count()) << "the default retention";
  EXPECT_EQ(kit.Instance("j-1")->result_expires_ms, kit.NowMs() + std::chrono::milliseconds(24h).count());
}

TEST(WorkflowResult, ARawJsonResultIsStoredCompactAndAnyJsonValueWillDo) {
  WorkflowTestKit<Job> kit(JobWorkflow());
  kit.Send(StartJob{"j-1"});
  kit.Send(Raw(" { \"files\" : [ \"a\", \"b\" ],\n \"ok\" : true } "));
  EXPECT_EQ(kit.ResultJson("j-1"), R"({"files":["a","b"],"ok":true})");

  kit.Send(StartJob{"j-2"});
  FinishJob f = Raw("42");
  f.job_id = "j-2";
  kit.Send(f);
  EXPECT_EQ(kit.ResultJson("j-2"), "42");
  EXPECT_TRUE(kit.DeadLetters().empty());
}

TEST(WorkflowResult, ARunWithoutAResultHasNeitherField) {
  WorkflowTestKit<Job> kit(JobWorkflow());
  kit.Send(StartJob{"j-1"});
  FinishJob f{"j-1"};
  f.no_result = true;
  kit.Send(f);
  ASSERT_EQ(kit.Status("j-1"), "completed");
  EXPECT_EQ(kit.ResultJson("j-1"), std::nullopt);
  StoredRecord r;
  ReadRecord(kit.store(), "j-1", r);
  ASSERT_TRUE(r.present);
  EXPECT_FALSE(r.doc.Root().Find("result").has_value());
  EXPECT_FALSE(r.doc.Root().Find("result_expires_ms").has_value());
}

TEST(WorkflowResult, TheResultSurvivesAReloadOfTheRecord) {
  kbus::workflows::MemoryStateStore store;
  std::int64_t expires = 0;
  {
    WorkflowTestKit<Job> kit(JobWorkflow(), {.store = &store});
    kit.Send(StartJob{"j-1"});
    kit.Send(Raw(R"({"output":"x.mp4","nested":{"list":[1,2.5,"three",null]}})"));
    expires = kit.Instance("j-1")->result_expires_ms;
  }
  WorkflowTestKit<Job> restarted(JobWorkflow(), {.store = &store});  // loads the record
  restarted.Send(FinishJob{"someone-else"});  // handled once the load is done: waits for it
  EXPECT_EQ(restarted.Status("j-1"), "completed");
  EXPECT_EQ(restarted.ResultJson("j-1"), R"({"output":"x.mp4","nested":{"list":[1,2.5,"three",null]}})");
  EXPECT_EQ(restarted.Instance("j-1")->result_expires_ms, expires);
}

TEST(WorkflowResult, AResultThatExpiresFirstIsDroppedAndTheRecordStaysForItsRetention) {
  WorkflowOptions o;
  o.result_retention = 1h;
  o.completed_retention = 3h;
  WorkflowTestKit<Job> kit(JobWorkflow(o));
  kit.Send(StartJob{"j-1"});
  kit.Send(Typed("a.mp4", 1));
  const auto version = kit.Instance("j-1")->version;
  kit.Advance(59min);
  EXPECT_TRUE(kit.ResultJson("j-1").has_value());
  kit.Advance(1min);
  EXPECT_EQ(kit.ResultJson("j-1"), std::nullopt) << "dropped when its retention ended";
  EXPECT_EQ(kit.Instance("j-1")->result_expires_ms, 0);
  EXPECT_EQ(kit.Instance("j-1")->version, version + 1) << "one write to drop it";
  EXPECT_EQ(kit.Status("j-1"), "completed");
  StoredRecord r;
  ReadRecord(kit.store(), "j-1", r);
  ASSERT_TRUE(r.present);
  EXPECT_FALSE(r.doc.Root().Find("result").has_value()) << "the stored record no longer holds it";
  EXPECT_EQ(kit.State("j-1")->finishes, 1) << "nothing else changed";

  kit.Advance(2h);
  EXPECT_EQ(kit.Status("j-1"), "") << "the record's own retention";
  EXPECT_EQ(kit.Stats().expired, 1u);
}

TEST(WorkflowResult, TheRecordIsNeverRemovedBeforeItsResultExpires) {
  WorkflowOptions o;
  o.completed_retention = 1h;
  o.result_retention = 3h;
  WorkflowTestKit<Job> kit(JobWorkflow(o));
  kit.Send(StartJob{"j-1"});
  kit.Send(Typed("a.mp4", 1));
  ASSERT_EQ(kit.Timeouts("j-1").size(), 1u) << "only the record's expiry: it takes the result with it";
  EXPECT_EQ(kit.Timeouts("j-1")[0].due_ms, kit.Instance("j-1")->result_expires_ms);
  kit.Advance(2h);
  EXPECT_EQ(kit.Status("j-1"), "completed") << "kept past completed_retention while the result lives";
  EXPECT_TRUE(kit.ResultJson("j-1").has_value());
  kit.Advance(1h);
  EXPECT_EQ(kit.Status("j-1"), "");
  EXPECT_FALSE(kit.store().Get(0, "j-1").has_value());

  // Without a result the record goes after completed_retention, as before.
  kit.Send(StartJob{"j-2"});
  FinishJob f{"j-2"};
  f.no_result = true;
  kit.Send(f);
  kit.Advance(1h);
  EXPECT_EQ(kit.Status("j-2"), "");
}

TEST(WorkflowResult, AnOversizeResultIsDeadLetteredNamingTheWorkflowAndLeavesTheInstanceAsItWas) {
  WorkflowTestKit<Job> kit(JobWorkflow());
  kit.Send(StartJob{"j-1"});
  const auto version = kit.Instance("j-1")->version;
  kit.Send(Typed(std::string(kbus::workflows::kMaxResultBytes, 'x'), 1));
  EXPECT_EQ(kit.Status("j-1"), "running") << "nothing written";
  EXPECT_EQ(kit.Instance("j-1")->version, version);
  EXPECT_EQ(kit.State("j-1")->finishes, 0);
  ASSERT_EQ(kit.DeadLetters().size(), 1u) << "the message is kept, to redrive once fixed";
  const auto& dlq = kit.DeadLetters()[0];
  EXPECT_EQ(dlq.FindHeader(kbus::header::kType), "jobs.FinishJob");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqReason), "result-too-large");
  const std::string error(*dlq.FindHeader(kbus::header::kDlqError));
  EXPECT_NE(error.find("workflow jobs.job"), std::string::npos) << error;
  EXPECT_NE(error.find("'j-1'"), std::string::npos) << error;
  EXPECT_NE(error.find("16384"), std::string::npos) << error;

  // Just within the bound is fine: 16 KiB of compact JSON, counted as stored.
  const std::string at_bound = "\"" + std::string(kbus::workflows::kMaxResultBytes - 2, 'y') + "\"";
  kit.Send(Raw(at_bound));
  EXPECT_EQ(kit.Status("j-1"), "completed");
  EXPECT_EQ(kit.ResultJson("j-1"), at_bound);
}

TEST(WorkflowResult, ResultTextThatIsNotOneJsonValueIsDeadLetteredAsInvalid) {
  for (const std::string bad : {"{\"a\":", "not json", "", "1 2"}) {
    WorkflowTestKit<Job> kit(JobWorkflow());
    kit.Send(StartJob{"j-1"});
    kit.Send(Raw(bad));
    EXPECT_EQ(kit.Status("j-1"), "running") << bad;
    ASSERT_EQ(kit.DeadLetters().size(), 1u) << bad;
    EXPECT_EQ(kit.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "result-invalid") << bad;
    const std::string error(*kit.DeadLetters()[0].FindHeader(kbus::header::kDlqError));
    EXPECT_NE(error.find("workflow jobs.job"), std::string::npos) << error;
  }
}

TEST(WorkflowResult, ANewRunOfTheSameIdStartsWithoutTheOldResult) {
  WorkflowTestKit<Job> kit(JobWorkflow());
  kit.Send(StartJob{"j-1"});
  kit.Send(Typed("first.mp4", 1));
  ASSERT_TRUE(kit.ResultJson("j-1").has_value());
  kit.Send(StartJob{"j-1"});  // a new message: a new run (as a redriven copy would be)
  ASSERT_EQ(kit.Status("j-1"), "running");
  EXPECT_EQ(kit.Instance("j-1")->run, 2);
  EXPECT_EQ(kit.ResultJson("j-1"), std::nullopt);
  EXPECT_EQ(kit.Instance("j-1")->result_expires_ms, 0);
  StoredRecord r;
  ReadRecord(kit.store(), "j-1", r);
  EXPECT_FALSE(r.doc.Root().Find("result").has_value());
  kit.Send(Typed("second.mp4", 2));
  EXPECT_EQ(kit.ResultAs<JobSummary>("j-1")->output, "second.mp4");
}

TEST(WorkflowResult, AFailedRunRecordsNoResult) {
  WorkflowTestKit<Job> kit(JobWorkflow());
  kit.Send(StartJob{"j-1"});
  FinishJob f = Typed("half.mp4", 1);
  f.fail = true;
  kit.Send(f);
  ASSERT_EQ(kit.Status("j-1"), "failed");
  EXPECT_EQ(kit.ResultJson("j-1"), std::nullopt);
}

TEST(WorkflowResult, AResultRetentionThatIsNotPositiveIsRefusedNamingIt) {
  for (auto retention : {0ms, -1ms}) {
    WorkflowOptions o;
    o.result_retention = retention;
    try {
      WorkflowTestKit<Job> kit(JobWorkflow(o));
      ADD_FAILURE() << "accepted " << retention.count();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("result_retention"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("jobs.job"), std::string::npos) << e.what();
    }
  }
}

TEST(CompactResult, KeepsOneJsonValueCompactWithinTheBound) {
  using kbus::workflows::CompactResult;
  EXPECT_EQ(CompactResult(" [ 1 , {\"a\" : null} ] ").value(), R"([1,{"a":null}])");
  EXPECT_EQ(CompactResult("\"x\"").value(), "\"x\"");
  EXPECT_EQ(CompactResult("{").error().code(), kbus::ErrorCode::kDecode);
  EXPECT_EQ(CompactResult("").error().code(), kbus::ErrorCode::kDecode);
  const std::string big = "\"" + std::string(kbus::workflows::kMaxResultBytes - 1, 'z') + "\"";
  EXPECT_EQ(CompactResult(big).error().code(), kbus::ErrorCode::kInvalidArgument);
  // Blanks do not count: what is measured is what the record holds.
  const std::string padded = "  \"" + std::string(kbus::workflows::kMaxResultBytes - 2, 'z') + "\"  ";
  EXPECT_TRUE(CompactResult(padded).ok());
}

}  // namespace
