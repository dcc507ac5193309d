// DelegatedCommand: the retry policy's arithmetic, the decision table, and whole runs through
// the test kit with launcher events fed in as a launcher would send them.

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "kbus/workflows/delegated_command.hpp"
#include "kbus/workflows/test_kit.hpp"

namespace {

using namespace std::chrono_literals;
using kbus::handlers::CancelProcess;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessProgress;
using kbus::handlers::ProcessStarted;
using kbus::workflows::Decide;
using kbus::workflows::Decision;
using kbus::workflows::DelegatedCommand;
using kbus::workflows::DelegatedCommandFailed;
using kbus::workflows::DelegatedOptions;
using kbus::workflows::DelegatedState;
using kbus::workflows::LaunchSpec;
using kbus::workflows::RetryDelay;
using kbus::workflows::RetryPolicy;
using kbus::workflows::WorkflowContext;
using kbus::workflows::WorkflowTestKit;

struct Render {
  std::string report_id;
  int pages = 1;
};
struct Rendered {
  std::string report_id;
  int attempts = 0;
};
struct RenderFailed {
  std::string report_id;
  std::string outcome;
};

}  // namespace

template <>
struct kbus::MessageTraits<Render> {
  static constexpr std::string_view kType = "reports.Render";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "reports.commands";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("report_id", &Render::report_id), kbus::Field("pages", &Render::pages));
};
template <>
struct kbus::MessageTraits<Rendered> {
  static constexpr std::string_view kType = "reports.Rendered";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "reports.events";
  static constexpr auto kFields =
      kbus::Fields(kbus::Field("report_id", &Rendered::report_id), kbus::Field("attempts", &Rendered::attempts));
};
template <>
struct kbus::MessageTraits<RenderFailed> {
  static constexpr std::string_view kType = "reports.RenderFailed";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "reports.events";
  static constexpr auto kFields = kbus::Fields(kbus::Field("report_id", &RenderFailed::report_id),
                                               kbus::Field("outcome", &RenderFailed::outcome));
};

namespace {

constexpr std::string_view kInput = "reports.render.in";

ProcessExited Exit(int attempt, std::string outcome, int exit_code = -1, int signal = 0) {
  ProcessExited e;
  e.job_id = "r-1";
  e.attempt = attempt;
  e.outcome = std::move(outcome);
  e.exit_code = exit_code;
  e.signal = signal;
  return e;
}

// ---- arithmetic and the decision table --------------------------------------------------------

TEST(RetryPolicy, DelaysGrowByTheCoefficientUpToTheMaximumWithinTheJitter) {
  RetryPolicy p;  // 30 s, x2, max 10 min, jitter 10 %
  const std::vector<std::chrono::milliseconds> base{30s, 60s, 120s, 240s, 480s, 600s, 600s};
  for (int n = 1; n <= 7; ++n) {
    const auto d = RetryDelay(p, n, "job-a");
    const auto b = base[static_cast<std::size_t>(n - 1)];
    EXPECT_GE(d.count(), b.count() * 9 / 10) << "attempt " << n;
    EXPECT_LE(d.count(), b.count() * 11 / 10) << "attempt " << n;
  }
  EXPECT_EQ(RetryDelay(p, 2, "job-a"), RetryDelay(p, 2, "job-a")) << "the same seed waits the same";
  int differ = 0;
  for (int i = 0; i < 20; ++i) differ += RetryDelay(p, 2, "job-" + std::to_string(i)) != RetryDelay(p, 2, "job-a");
  EXPECT_GT(differ, 15) << "different jobs spread out";
  p.jitter = 0;
  EXPECT_EQ(RetryDelay(p, 3, "x"), 120s);
}

TEST(RetryPolicy, AnImpossiblePolicyIsRefusedNamingTheField) {
  auto refused = [](RetryPolicy p, std::string_view field) {
    try {
      kbus::workflows::Validate(p);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what()).find(field) != std::string::npos;
    }
    return false;
  };
  RetryPolicy p;
  p.backoff_coefficient = 0.5;
  EXPECT_TRUE(refused(p, "backoff_coefficient"));
  p = {};
  p.jitter = 1.5;
  EXPECT_TRUE(refused(p, "jitter"));
  p = {};
  p.maximum_attempts = -1;
  EXPECT_TRUE(refused(p, "maximum_attempts"));
  p = {};
  p.maximum_interval = 1s;
  EXPECT_TRUE(refused(p, "maximum_interval"));
}

TEST(Decide, TheWholeTable) {
  RetryPolicy p;
  p.non_retryable_exit_codes = {2};
  auto next = [&](ProcessExited e, int attempt) { return Decide(p, e, attempt, "s"); };
  EXPECT_EQ(next(Exit(1, "succeeded", 0), 1).next, Decision::Next::kSucceed);
  EXPECT_EQ(next(Exit(1, "failed", 1), 1).next, Decision::Next::kRetry);
  EXPECT_EQ(next(Exit(1, "failed", -1, 9), 1).next, Decision::Next::kRetry) << "killed by a signal";
  EXPECT_EQ(next(Exit(1, "timed_out"), 1).next, Decision::Next::kRetry);
  EXPECT_EQ(next(Exit(1, "lost"), 1).next, Decision::Next::kRetry);
  EXPECT_EQ(next(Exit(1, "failed", 2), 1).reason, "non-retryable-exit-code");
  EXPECT_EQ(next(Exit(1, "launch_failed"), 1).reason, "launch-failed");
  EXPECT_EQ(next(Exit(1, "cancelled"), 1).reason, "cancelled");
  EXPECT_EQ(next(Exit(4, "failed", 1), 4).next, Decision::Next::kRetry);
  const Decision last = next(Exit(5, "failed", 1), 5);
  EXPECT_EQ(last.next, Decision::Next::kFail);
  EXPECT_EQ(last.reason, "attempts-exhausted");
  p.maximum_attempts = 0;
  EXPECT_EQ(next(Exit(50, "failed", 1), 50).next, Decision::Next::kRetry) << "0 is unlimited";
  EXPECT_EQ(next(Exit(1, "failed", 1), 1).delay, RetryDelay(p, 1, "s"));
}

// ---- whole runs ---------------------------------------------------------------------------------

DelegatedOptions<Render> Options() {
  DelegatedOptions<Render> o;
  o.id = [](const Render& r) { return r.report_id; };
  o.launch = [](const Render& r, int attempt) {
    return LaunchSpec{"render", {"--pages", std::to_string(r.pages), "--attempt", std::to_string(attempt)}, {}};
  };
  o.run_timeout = 5min;
  o.heartbeat_interval = 10s;  // heartbeat_timeout 30 s
  o.retry.non_retryable_exit_codes = {2};
  o.on_succeeded = [](const Render& r, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(Rendered{r.report_id, e.attempt});
  };
  o.on_failed = [](const Render& r, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Publish(RenderFailed{r.report_id, e.outcome});
  };
  return o;
}

class Delegated : public ::testing::Test {
 protected:
  Delegated() : kit_(DelegatedCommand<Render>("reports.render", Options())) {}

  template <class E>
  void Event(const E& e) {
    kbus::SendOptions o;
    o.topic = std::string(kInput);
    o.key = "r-1";
    o.workflow_id = "r-1";
    kit_.Send(e, o);
  }
  std::vector<LaunchProcess> Launches() { return kit_.Sent<LaunchProcess>(kbus::handlers::kLauncherTopic); }
  DelegatedState State() { return *kit_.State("r-1"); }

  WorkflowTestKit<DelegatedState> kit_;
};

TEST_F(Delegated, TheFirstAttemptLaunchesAtOnceAndASuccessCompletes) {
  kit_.Send(Render{"r-1", 3});
  ASSERT_EQ(Launches().size(), 1u);
  const LaunchProcess l = Launches()[0];
  EXPECT_EQ(l.job_id, "r-1");
  EXPECT_EQ(l.attempt, 1);
  EXPECT_EQ(l.program, "render");
  EXPECT_EQ(l.args, (std::vector<std::string>{"--pages", "3", "--attempt", "1"}));
  EXPECT_EQ(l.run_timeout, 5min);
  EXPECT_EQ(l.heartbeat_interval, 10s);
  EXPECT_EQ(l.reply_to, kInput) << "events come back to the workflow's input";
  EXPECT_EQ(kit_.Records(kbus::handlers::kLauncherTopic)[0].FindHeader(kbus::header::kWorkflowId), "r-1");

  Event(ProcessStarted{"r-1", 1, "render", 42, "h"});
  Event(ProcessProgress{"r-1", 1, 50, "half"});
  Event(Exit(1, "succeeded", 0));
  EXPECT_EQ(kit_.Status("r-1"), "completed");
  ASSERT_EQ(kit_.Sent<Rendered>().size(), 1u);
  EXPECT_EQ(kit_.Sent<Rendered>()[0].attempts, 1);
  EXPECT_TRUE(kit_.DeadLetters().empty());
}

TEST_F(Delegated, AFailureWaitsTheBackoffThenLaunchesTheNextAttempt) {
  kit_.Send(Render{"r-1"});
  Event(ProcessStarted{"r-1", 1, "render", 42, "h"});
  Event(Exit(1, "failed", 1));
  EXPECT_EQ(State().phase, "waiting");
  const auto delay = RetryDelay(RetryPolicy{}, 1, "r-1");
  kit_.Advance(delay - 1ms);
  EXPECT_EQ(Launches().size(), 1u) << "not before the backoff";
  kit_.Advance(1ms);
  ASSERT_EQ(Launches().size(), 2u);
  EXPECT_EQ(Launches()[1].attempt, 2);
  EXPECT_EQ(Launches()[1].args.back(), "2");

  Event(ProcessStarted{"r-1", 2, "render", 43, "h"});
  Event(Exit(1, "succeeded", 0));  // a stale event of attempt 1: ignored
  EXPECT_EQ(kit_.Status("r-1"), "running");
  Event(Exit(2, "succeeded", 0));
  EXPECT_EQ(kit_.Status("r-1"), "completed");
  EXPECT_EQ(kit_.Sent<Rendered>()[0].attempts, 2);
  EXPECT_EQ(State().history, (std::vector<std::string>{"1:failed exit 1", "2:succeeded"}));
}

TEST_F(Delegated, EveryAttemptFailingEndsInTheDlqWithTheLastOutcomeAndAFailedEvent) {
  kit_.Send(Render{"r-1"});
  for (int attempt = 1; attempt <= 5; ++attempt) {
    ASSERT_EQ(Launches().size(), static_cast<std::size_t>(attempt));
    Event(ProcessStarted{"r-1", attempt, "render", 40 + attempt, "h"});
    Event(attempt == 3 ? Exit(attempt, "timed_out", -1, 9) : Exit(attempt, "failed", 1));
    kit_.Advance(11min);
  }
  EXPECT_EQ(Launches().size(), 5u) << "maximum_attempts 5";
  EXPECT_EQ(kit_.Status("r-1"), "failed");
  ASSERT_EQ(kit_.DeadLetters().size(), 1u);
  const auto& dlq = kit_.DeadLetters()[0];
  EXPECT_EQ(dlq.FindHeader(kbus::header::kType), "reports.Render") << "the original command";
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqReason), "attempts-exhausted");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqAttempts), "5");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-outcome"), "failed");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-exit-code"), "1");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-job-id"), "r-1");
  ASSERT_EQ(kit_.Sent<DelegatedCommandFailed>().size(), 1u);
  const DelegatedCommandFailed f = kit_.Sent<DelegatedCommandFailed>()[0];
  EXPECT_EQ(f.workflow_id, "r-1");
  EXPECT_EQ(f.command_type, "reports.Render");
  EXPECT_EQ(f.attempts, 5);
  EXPECT_EQ(f.reason, "attempts-exhausted");
  ASSERT_EQ(kit_.Sent<RenderFailed>().size(), 1u);
  EXPECT_TRUE(kit_.Timeouts("r-1").size() == 1 && kit_.Timeouts("r-1")[0].name == "kbus.expire");
}

TEST_F(Delegated, TheLastAttemptsStderrTailReachesTheDeadLetterAndTheFailedEventWholeCharactersOnly) {
  kit_.Send(Render{"r-1"});
  // A program's stderr in a UTF-8 locale (file names, translated messages), longer than the
  // 1 KiB kept: the cut must not split a character, or the state and the events would not be
  // UTF-8 and could not be written.
  std::string tail = "x";
  for (int i = 0; i < 1000; ++i) tail += "\xc3\xa9";  // é
  // 67 bytes: the last 1024 bytes begin in the middle of an é.
  tail += "\nfile:/media/vid\xc3\xa9o1.mp4: Invalid data found when processing input\n";
  for (int attempt = 1; attempt <= 5; ++attempt) {
    ProcessExited e = Exit(attempt, "failed", 1);
    e.stderr_tail = tail;
    Event(e);
    kit_.Advance(11min);
  }
  ASSERT_EQ(kit_.Status("r-1"), "failed");
  ASSERT_EQ(kit_.DeadLetters().size(), 1u);
  const std::string error(kit_.DeadLetters()[0].FindHeader(kbus::header::kDlqError).value_or(""));
  EXPECT_TRUE(error.starts_with("attempt 5 ended failed: \xc3\xa9")) << error;
  EXPECT_TRUE(error.ends_with("vid\xc3\xa9o1.mp4: Invalid data found when processing input\n")) << error;
  EXPECT_LE(error.size(), 1100u);
  ASSERT_EQ(kit_.Sent<DelegatedCommandFailed>().size(), 1u);
  EXPECT_TRUE(kit_.Sent<DelegatedCommandFailed>()[0].error.ends_with("Invalid data found when processing input\n"));
  EXPECT_TRUE(State().last_error.starts_with("\xc3\xa9"));
}

TEST_F(Delegated, LaunchFailedANonRetryableExitAndCancelledFailAtOnce) {
  kit_.Send(Render{"r-1"});
  Event(Exit(1, "launch_failed"));
  EXPECT_EQ(kit_.Status("r-1"), "failed");
  ASSERT_EQ(kit_.DeadLetters().size(), 1u);
  EXPECT_EQ(kit_.DeadLetters()[0].FindHeader(kbus::header::kDlqReason), "launch-failed");
  EXPECT_EQ(kit_.DeadLetters()[0].FindHeader("kbus-dlq-outcome"), "launch_failed");

  kit_.Send(Render{"r-2"});
  kbus::SendOptions o;
  o.topic = std::string(kInput);
  o.key = o.workflow_id = "r-2";
  ProcessExited usage = Exit(1, "failed", 2);
  usage.job_id = "r-2";
  kit_.Send(usage, o);
  EXPECT_EQ(kit_.Status("r-2"), "failed");
  EXPECT_EQ(kit_.DeadLetters().back().FindHeader(kbus::header::kDlqReason), "non-retryable-exit-code");

  kit_.Send(Render{"r-3"});
  o.key = o.workflow_id = "r-3";
  ProcessExited cancelled = Exit(1, "cancelled");
  cancelled.job_id = "r-3";
  kit_.Send(cancelled, o);
  EXPECT_EQ(kit_.Status("r-3"), "failed");
  EXPECT_EQ(kit_.DeadLetters().back().FindHeader(kbus::header::kDlqReason), "cancelled");
  EXPECT_EQ(Launches().size(), 3u) << "no retry for any of them";
}

TEST_F(Delegated, HeartbeatSilenceCountsAsLostCancelsTheAttemptAndRetries) {
  kit_.Send(Render{"r-1"});
  Event(ProcessStarted{"r-1", 1, "render", 42, "h"});
  for (int i = 0; i < 6; ++i) {  // a minute of heartbeats every 10 s keeps it alive
    kit_.Advance(10s);
    Event(ProcessHeartbeat{"r-1", 1, std::chrono::milliseconds(10000 * (i + 1)), -1});
  }
  EXPECT_EQ(State().phase, "running");
  EXPECT_TRUE(kit_.Sent<CancelProcess>(kbus::handlers::kLauncherControlTopic).empty());

  kit_.Advance(31s);  // then silence past heartbeat_timeout (30 s)
  EXPECT_EQ(State().phase, "waiting");
  EXPECT_EQ(State().last_outcome, "lost");
  const auto cancels = kit_.Sent<CancelProcess>(kbus::handlers::kLauncherControlTopic);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].job_id, "r-1");
  EXPECT_EQ(cancels[0].attempt, 1) << "only the silent attempt: the next must still run";
  kit_.Advance(1min);
  ASSERT_EQ(Launches().size(), 2u);
  EXPECT_EQ(Launches()[1].attempt, 2);

  Event(Exit(1, "cancelled"));  // the silent attempt's late exit: stale
  EXPECT_EQ(kit_.Status("r-1"), "running");
}

TEST_F(Delegated, ALaunchNeverStartedCountsAsLostAfterScheduleToStart) {
  kit_.Send(Render{"r-1"});
  kit_.Advance(9min);
  EXPECT_EQ(State().phase, "launching") << "a busy launcher's backlog is not silence";
  kit_.Advance(1min);
  EXPECT_EQ(State().phase, "waiting");
  EXPECT_EQ(State().last_outcome, "lost");
}

TEST_F(Delegated, HeartbeatsWriteStateOnlyWhenHalfTheSilenceWindowIsUsed) {
  kit_.Send(Render{"r-1"});
  Event(ProcessStarted{"r-1", 1, "render", 42, "h"});
  const auto writes = kit_.store().writes();
  for (int i = 0; i < 30; ++i) {
    kit_.Advance(1s);
    Event(ProcessHeartbeat{"r-1", 1, std::chrono::milliseconds(1000 * (i + 1)), -1});
  }
  // 30 heartbeats over 30 s with a 30 s window: a write about every 15 s.
  EXPECT_LE(kit_.store().writes() - writes, 3u);
  EXPECT_GE(kit_.store().writes() - writes, 1u);
  EXPECT_EQ(State().phase, "running");
}

TEST_F(Delegated, ADuplicateExitEventChangesNothing) {
  kit_.Send(Render{"r-1"});
  Event(Exit(1, "failed", 1));
  const auto exit_record = kit_.Records(kInput).back();
  const auto version = kit_.Instance("r-1")->version;
  kit_.Append(exit_record);
  EXPECT_EQ(kit_.Instance("r-1")->version, version);
  Event(Exit(1, "failed", 1));  // the same outcome with another id: the attempt is decided already
  EXPECT_EQ(kit_.Instance("r-1")->version, version);
  EXPECT_EQ(kit_.Timeouts("r-1").size(), 1u) << "one retry timer, not two";
}

TEST_F(Delegated, ASecondStartOfARunningCommandLaunchesNothing) {
  kit_.Send(Render{"r-1"});
  kit_.Send(Render{"r-1"});
  EXPECT_EQ(Launches().size(), 1u);
}

TEST_F(Delegated, ARedrivenCommandStartsANewRunWithItsOwnJobId) {
  kit_.Send(Render{"r-1"});
  Event(Exit(1, "launch_failed"));
  ASSERT_EQ(kit_.Status("r-1"), "failed");
  kbus::OutgoingRecord redriven = kit_.DeadLetters().at(0);
  redriven.topic = std::string(kInput);
  redriven.headers.push_back({std::string(kbus::header::kRedriveOf), "test.dlq:0:0"});
  kit_.Append(redriven);

  ASSERT_EQ(kit_.Status("r-1"), "running");
  ASSERT_EQ(Launches().size(), 2u);
  EXPECT_EQ(Launches()[1].job_id, "r-1/run-2") << "a launcher that ran (r-1, 1) must not take this for it";
  EXPECT_EQ(Launches()[1].attempt, 1);
  Event(Exit(1, "succeeded", 0));  // run 1's job id: stale
  EXPECT_EQ(kit_.Status("r-1"), "running");
  ProcessExited done = Exit(1, "succeeded", 0);
  done.job_id = "r-1/run-2";
  Event(done);
  EXPECT_EQ(kit_.Status("r-1"), "completed");
  EXPECT_EQ(kit_.Instance("r-1")->run, 2);
}

ProcessExited WithResult(ProcessExited e, std::string result) {
  e.result = std::move(result);
  return e;
}

TEST_F(Delegated, TheSucceedingAttemptsResultIsTheRunsResult) {
  kit_.Send(Render{"r-1"});
  Event(ProcessStarted{"r-1", 1, "render", 42, "h"});
  Event(WithResult(Exit(1, "failed", 1), R"({"pages":1})"));  // a failed attempt's: not kept
  EXPECT_EQ(kit_.ResultJson("r-1"), std::nullopt);
  kit_.Advance(RetryDelay(RetryPolicy{}, 1, "r-1"));
  ASSERT_EQ(Launches().size(), 2u);
  Event(ProcessStarted{"r-1", 2, "render", 43, "h"});
  Event(WithResult(Exit(2, "succeeded", 0), R"({"output":"r-1.pdf", "pages":3})"));
  ASSERT_EQ(kit_.Status("r-1"), "completed");
  EXPECT_EQ(kit_.ResultJson("r-1"), R"({"output":"r-1.pdf","pages":3})");
  EXPECT_EQ(kit_.Sent<Rendered>().size(), 1u) << "on_succeeded ran as well";
}

TEST_F(Delegated, ASuccessWithoutAResultCompletesWithoutOne) {
  kit_.Send(Render{"r-1"});
  Event(Exit(1, "succeeded", 0));
  EXPECT_EQ(kit_.Status("r-1"), "completed");
  EXPECT_EQ(kit_.ResultJson("r-1"), std::nullopt);
}

TEST_F(Delegated, ABadResultInAnExitCostsTheResultNeverTheRun) {
  kit_.Send(Render{"r-1"});
  Event(WithResult(Exit(1, "succeeded", 0), "{not json"));
  EXPECT_EQ(kit_.Status("r-1"), "completed");
  EXPECT_EQ(kit_.ResultJson("r-1"), std::nullopt);
  EXPECT_TRUE(kit_.DeadLetters().empty()) << "the exit is not dead-lettered for its result";
  ASSERT_EQ(kit_.Sent<Rendered>().size(), 1u);
}

TEST_F(Delegated, ANewRunStartsWithoutTheResultOfTheRunBefore) {
  kit_.Send(Render{"r-1"});
  Event(WithResult(Exit(1, "succeeded", 0), R"({"run":1})"));
  ASSERT_EQ(kit_.ResultJson("r-1"), R"({"run":1})");
  kit_.Send(Render{"r-1"});  // a new command for the id, as a redriven copy is
  ASSERT_EQ(kit_.Status("r-1"), "running");
  EXPECT_EQ(kit_.Instance("r-1")->run, 2);
  EXPECT_EQ(kit_.ResultJson("r-1"), std::nullopt);
}

TEST(DelegatedResult, OnSucceededMayRecordAResultInPlaceOfTheProgramsOwn) {
  DelegatedOptions<Render> o = Options();
  o.on_succeeded = [](const Render& r, const ProcessExited& e, WorkflowContext& ctx) {
    ctx.Complete(Rendered{r.report_id, e.attempt});
  };
  WorkflowTestKit<DelegatedState> kit(DelegatedCommand<Render>("reports.render", o));
  kit.Send(Render{"r-1"});
  kbus::SendOptions to{.topic = std::string(kInput), .key = "r-1", .workflow_id = "r-1"};
  kit.Send(WithResult(Exit(1, "succeeded", 0), R"({"from":"the program"})"), to);
  EXPECT_EQ(kit.ResultJson("r-1"), R"({"report_id":"r-1","attempts":1})");
}

TEST(DelegatedResult, AnExitWithoutAResultFieldStillDecodes) {
  auto e = kbus::FromJson<ProcessExited>(R"({"job_id":"j","attempt":2,"outcome":"succeeded","exit_code":0})");
  ASSERT_TRUE(e.ok()) << e.error().message();
  EXPECT_EQ(e->result, "");
  ProcessExited with = Exit(1, "succeeded", 0);
  with.result = R"({"a":1})";
  auto back = kbus::FromJson<ProcessExited>(kbus::ToJson(with));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->result, R"({"a":1})") << "carried as a string field";
}

TEST(DelegatedCheck, ACommandItRefusesLaunchesNothingAndIsDeadLetteredAsRejected) {
  DelegatedOptions<Render> o = Options();
  o.check = [](const Render& r) {
    return r.pages < 1 ? "pages must be at least 1, not " + std::to_string(r.pages) : std::string();
  };
  WorkflowTestKit<DelegatedState> kit(DelegatedCommand<Render>("reports.render", o));
  kit.Send(Render{"r-1", 0});
  EXPECT_TRUE(kit.Sent<LaunchProcess>(kbus::handlers::kLauncherTopic).empty());
  EXPECT_EQ(kit.Status("r-1"), "failed");
  ASSERT_EQ(kit.DeadLetters().size(), 1u);
  const auto& dlq = kit.DeadLetters()[0];
  EXPECT_EQ(dlq.FindHeader(kbus::header::kType), "reports.Render");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqReason), "rejected");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqError), "rejected before any attempt: pages must be at least 1, not 0");
  EXPECT_EQ(dlq.FindHeader(kbus::header::kDlqAttempts), "0");
  EXPECT_EQ(dlq.FindHeader("kbus-dlq-outcome"), "rejected");
  ASSERT_EQ(kit.Sent<DelegatedCommandFailed>().size(), 1u);
  EXPECT_EQ(kit.Sent<DelegatedCommandFailed>()[0].reason, "rejected");
  EXPECT_EQ(kit.Sent<DelegatedCommandFailed>()[0].attempts, 0);
  ASSERT_EQ(kit.Sent<RenderFailed>().size(), 1u);
  EXPECT_EQ(kit.Sent<RenderFailed>()[0].outcome, "rejected");

  kit.Send(Render{"r-2", 2});  // one it does not refuse runs as always
  EXPECT_EQ(kit.Sent<LaunchProcess>(kbus::handlers::kLauncherTopic).size(), 1u);
  EXPECT_EQ(kit.Status("r-2"), "running");
}

TEST(DelegatedOptions, ARunTimeoutIdAndLaunchAreRequired) {
  DelegatedOptions<Render> o = Options();
  o.run_timeout = 0ms;
  EXPECT_THROW(DelegatedCommand<Render>("x", o), std::invalid_argument);
  o = Options();
  o.id = nullptr;
  EXPECT_THROW(DelegatedCommand<Render>("x", o), std::invalid_argument);
  o = Options();
  o.retry.jitter = 2;
  EXPECT_THROW(DelegatedCommand<Render>("x", o), std::invalid_argument);
  o = Options();
  o.heartbeat_timeout = o.heartbeat_interval + o.heartbeat_interval / 2;  // could close between two
  EXPECT_THROW(DelegatedCommand<Render>("x", o), std::invalid_argument);
  o.heartbeat_timeout = 2 * o.heartbeat_interval;
  EXPECT_NO_THROW(DelegatedCommand<Render>("x", o));
}

TEST(DelegatedOptions, DurationsOutsideTheLaunchersBoundsAreRefusedNamingTheField) {
  auto refused = [](const DelegatedOptions<Render>& o, std::string_view field) {
    try {
      DelegatedCommand<Render>("x", o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what()).find(field) != std::string::npos;
    }
    return false;
  };
  DelegatedOptions<Render> o = Options();
  o.run_timeout = std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max());  // "forever"
  EXPECT_TRUE(refused(o, "run_timeout"));
  o.run_timeout = kbus::handlers::kMaxRunTimeout;
  EXPECT_NO_THROW(DelegatedCommand<Render>("x", o));
  o = Options();
  o.heartbeat_interval = std::chrono::milliseconds(10'000'000'000'000);  // would overflow 3 × it
  EXPECT_TRUE(refused(o, "heartbeat_interval"));
  o.heartbeat_interval = kbus::handlers::kMinHeartbeatInterval - 1ms;  // would flood the reply topic
  EXPECT_TRUE(refused(o, "heartbeat_interval"));
  o = Options();
  o.heartbeat_timeout = std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max());
  EXPECT_TRUE(refused(o, "heartbeat_timeout"));
  o.heartbeat_timeout = -1ms;
  EXPECT_TRUE(refused(o, "heartbeat_timeout"));
}

}  // namespace
