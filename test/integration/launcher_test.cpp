// The launcher on a broker: LaunchProcess commands run allow-listed programs as child
// processes, and their lifecycle comes back as events: Started, Progress, Heartbeat and Exited,
// in order and with the command's ids; failures, signals, timeouts and cancels are reported;
// a redelivered attempt runs once; a child's flood of output does not hang it; it never runs
// more than max_processes at once.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <mutex>
#include <variant>
#include <vector>

#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/handlers/launcher.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/handlers/producer_sink.hpp"
#include "launcher_events.hpp"
#include "process_group.hpp"

namespace {

using kbus::handlers::CancelProcess;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessProgress;
using kbus::handlers::ProcessStarted;
using kbus::test::GroupAlive;
using lt::EventLog;
using lt::Seen;
using kbus::test::TestBroker;
using kbus::test::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A launcher with its worker, on topics of its own.
struct Rig {
  explicit Rig(int max_processes = 8, std::string extra_allow = {})
      : producer(it::ProducerConfig()), sink(producer) {
    TestBroker::Get().CreateTopic(launch, 2);
    TestBroker::Get().CreateTopic(control, 2);
    TestBroker::Get().CreateTopic(events, 1);
    auto allow = kbus::handlers::AllowList::Parse("fake-encoder = " FAKE_ENCODER_PATH "\n"
                                                  "ghost = /nonexistent/ghost\n" + extra_allow);
    EXPECT_TRUE(allow.ok()) << allow.error().message();
    kbus::handlers::LauncherConfig config;
    config.max_processes = max_processes;
    config.kill_grace = milliseconds(300);
    config.default_heartbeat = seconds(10);
    config.host = "test-host";
    config.reply_topics = {"lt-events-*"};
    launcher = std::make_unique<kbus::handlers::Launcher>(config, std::move(allow.value()), backend, sink);
    kbus::HandlerOptions l, c;
    l.topic = launch;
    c.topic = control;
    launcher->Register(handlers, l, c);
    log = std::make_unique<EventLog>(events);
    worker = std::make_unique<it::RunningWorker>(it::WorkerConfigFor(group), handlers);
  }
  ~Rig() {
    worker->Stop();
    launcher->Shutdown();
  }

  LaunchProcess Encoder(const std::string& job, std::vector<std::string> args, int attempt = 1) {
    LaunchProcess cmd;
    cmd.job_id = job;
    cmd.attempt = attempt;
    cmd.program = "fake-encoder";
    cmd.args = std::move(args);
    cmd.reply_to = events;
    return cmd;
  }
  kbus::OutgoingRecord Record(const LaunchProcess& cmd, const std::string& workflow = "") {
    return kbus::BuildRecord(cmd, {.topic = launch, .key = cmd.job_id, .workflow_id = workflow});
  }
  void Send(const kbus::OutgoingRecord& r) { ASSERT_TRUE(producer.SendSync(r).ok()); }
  void Launch(const LaunchProcess& cmd) { Send(Record(cmd)); }
  void Cancel(const std::string& job, const std::string& reason) {
    Send(kbus::BuildRecord(CancelProcess{job, reason}, {.topic = control, .key = job}));
  }
  // The launch with `from` replaced by `to` in its JSON payload (values a typed struct cannot hold).
  void LaunchEdited(const LaunchProcess& cmd, const std::string& from, const std::string& to) {
    kbus::OutgoingRecord r = Record(cmd);
    const auto at = r.payload.find(from);
    ASSERT_NE(at, std::string::npos) << r.payload;
    r.payload.replace(at, from.size(), to);
    Send(r);
  }
  // The first `n` dead letters of the launcher's group: reason and error headers.
  std::vector<std::pair<std::string, std::string>> DeadLetters(std::size_t n) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& r : kbus::test::ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(group), n)) {
      out.emplace_back(r.FindHeader(std::string(kbus::header::kDlqReason)).value_or(""),
                       r.FindHeader(std::string(kbus::header::kDlqError)).value_or(""));
    }
    return out;
  }

  std::string launch = TestBroker::UniqueName("lt-launch");
  std::string control = TestBroker::UniqueName("lt-control");
  std::string events = TestBroker::UniqueName("lt-events");
  std::string group = TestBroker::UniqueName("lt-g");
  kbus::kafka::Producer producer;
  kbus::handlers::ProducerSink sink;
  kbus::handlers::LocalProcessBackend backend;
  std::unique_ptr<kbus::handlers::Launcher> launcher;
  kbus::HandlerRegistry handlers;
  std::unique_ptr<EventLog> log;
  std::unique_ptr<it::RunningWorker> worker;
};

std::string HeaderOf(const kbus::OutgoingRecord& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.name == name) return h.value;
  }
  return {};
}

TEST(Launcher, ALaunchReportsStartedProgressHeartbeatsAndExitedInOrderWithTheCommandsIds) {
  Rig rig;
  LaunchProcess cmd = rig.Encoder("job-1", {"--seconds", "1.2", "--steps", "4"});
  cmd.heartbeat_interval = milliseconds(150);
  const kbus::OutgoingRecord record = rig.Record(cmd, "wf-1");
  rig.Send(record);

  const ProcessExited exited = rig.log->WaitExited("job-1");
  EXPECT_EQ(exited.outcome, "succeeded");
  EXPECT_EQ(exited.exit_code, 0);
  EXPECT_EQ(exited.signal, 0);
  EXPECT_GE(exited.duration, milliseconds(1100));
  EXPECT_EQ(exited.attempt, 1);

  const auto seen = rig.log->Of("job-1");
  ASSERT_GE(seen.size(), 7u) << "started, 4 progress, at least one heartbeat, exited";
  const auto* started = std::get_if<ProcessStarted>(&seen.front().event);
  ASSERT_NE(started, nullptr) << "the first event is ProcessStarted";
  EXPECT_GT(started->pid, 0);
  EXPECT_EQ(started->program, "fake-encoder");
  EXPECT_EQ(started->host, "test-host");
  EXPECT_TRUE(std::holds_alternative<ProcessExited>(seen.back().event)) << "the last event is ProcessExited";
  std::vector<int> percents;
  int heartbeats = 0;
  for (const Seen& s : seen) {
    if (const auto* p = std::get_if<ProcessProgress>(&s.event)) {
      percents.push_back(p->percent);
      EXPECT_EQ(p->message, "encoding pass " + std::to_string(percents.size()));
    }
    if (const auto* h = std::get_if<ProcessHeartbeat>(&s.event)) {
      ++heartbeats;
      EXPECT_EQ(h->attempt, 1);
      EXPECT_LE(h->elapsed, milliseconds(1500));
    }
    EXPECT_EQ(s.key, "wf-1") << "events are keyed by the workflow id";
    EXPECT_EQ(s.workflow_id, "wf-1");
    EXPECT_EQ(s.correlation_id, HeaderOf(record, kbus::header::kCorrelationId));
    EXPECT_EQ(s.causation_id, HeaderOf(record, kbus::header::kId)) << "caused by the command";
  }
  EXPECT_EQ(percents, (std::vector<int>{25, 50, 75, 100}));
  EXPECT_GE(heartbeats, 3) << "every 150 ms over 1.2 s";
}

TEST(Launcher, ANonZeroExitAndADeathBySignalAreReportedAsFailed) {
  Rig rig;
  rig.Launch(rig.Encoder("exit-3", {"--seconds", "0.05", "--steps", "1", "--exit-code", "3", "--stderr", "bad input"}));
  rig.Launch(rig.Encoder("crash", {"--seconds", "0.1", "--steps", "2", "--crash"}));
  const ProcessExited exit3 = rig.log->WaitExited("exit-3");
  EXPECT_EQ(exit3.outcome, "failed");
  EXPECT_EQ(exit3.exit_code, 3);
  EXPECT_EQ(exit3.signal, 0);
  EXPECT_EQ(exit3.stderr_tail, "bad input\n");
  const ProcessExited crash = rig.log->WaitExited("crash");
  EXPECT_EQ(crash.outcome, "failed");
  EXPECT_EQ(crash.signal, SIGABRT);
  EXPECT_EQ(crash.exit_code, -1);
}

// The program's "kbus-result {json}" line reaches the workflow in ProcessExited.result: the
// last valid one, an invalid one after it ignored; none for a program that printed none.
TEST(Launcher, AProgramsResultLineComesBackInProcessExited) {
  Rig rig;
  rig.Launch(rig.Encoder("res-default", {"--seconds", "0.05", "--steps", "2", "--output", "clip.mp4"}));
  rig.Launch(rig.Encoder("res-last", {"--seconds", "0.05", "--steps", "1", "--result", R"({"n":1})", "--result",
                                      R"({"n":2,"files":["a","b"]})", "--result", "{broken"}));
  rig.Launch(rig.Encoder("res-none", {"--seconds", "0.05", "--steps", "1", "--exit-code", "3"}));
  const ProcessExited by_default = rig.log->WaitExited("res-default");
  EXPECT_EQ(by_default.outcome, "succeeded");
  EXPECT_EQ(by_default.result, R"({"output":"clip.mp4","frames":50})");
  const ProcessExited last = rig.log->WaitExited("res-last");
  EXPECT_EQ(last.outcome, "succeeded") << "a bad result line fails nothing";
  EXPECT_EQ(last.result, R"({"n":2,"files":["a","b"]})");
  const ProcessExited none = rig.log->WaitExited("res-none");
  EXPECT_EQ(none.outcome, "failed");
  EXPECT_EQ(none.result, "");
}

// Events carry UTF-8 only: a stderr tail that the 4 KiB cut splits mid-character is sent with
// U+FFFD in its place, not refused (which would lose the exit event).
TEST(Launcher, AStderrTailCutInsideACharacterIsSentAsValidUtf8) {
  Rig rig;
  std::string text;
  for (int i = 0; i < 2100; ++i) text += "\xc3\xa9";  // 4200 bytes of 'é'; with '\n', an odd cut
  rig.Launch(rig.Encoder("accents", {"--seconds", "0.05", "--steps", "1", "--exit-code", "2", "--stderr", text}));
  const ProcessExited exited = rig.log->WaitExited("accents");
  EXPECT_EQ(exited.outcome, "failed");
  EXPECT_TRUE(kbus::IsValidUtf8(exited.stderr_tail));
  EXPECT_EQ(exited.stderr_tail.substr(0, 3), "\xef\xbf\xbd") << "the split character";
  EXPECT_EQ(exited.stderr_tail.substr(exited.stderr_tail.size() - 3), "\xc3\xa9\n");
}

TEST(Launcher, ATimedOutProcessAndItsGrandchildrenAreAllGoneAfterwards) {
  Rig rig;
  LaunchProcess cmd = rig.Encoder("slow", {"--spawn-child", "--ignore-term", "--seconds", "60"});
  cmd.run_timeout = milliseconds(400);
  rig.Launch(cmd);
  const auto started = rig.log->WaitStarted("slow");
  ASSERT_TRUE(started.has_value());
  const ProcessExited exited = rig.log->WaitExited("slow");
  EXPECT_EQ(exited.outcome, "timed_out");
  EXPECT_EQ(exited.signal, SIGKILL) << "it ignored SIGTERM, so SIGKILL after the grace";
  EXPECT_GE(exited.duration, milliseconds(700));
  EXPECT_FALSE(GroupAlive(static_cast<int>(started->pid))) << "a process of the job survived its timeout";
}

TEST(Launcher, AChildWriting100MegabytesToStdoutAndStderrDoesNotHangIt) {
  Rig rig;
  rig.Launch(rig.Encoder("flood", {"--flood", "100", "--seconds", "0", "--steps", "1"}));
  const ProcessExited exited = rig.log->WaitExited("flood", seconds(120));
  EXPECT_EQ(exited.outcome, "succeeded");
  EXPECT_EQ(exited.stderr_tail.size(), 4096u) << "the last 4 KiB of stderr";
  EXPECT_EQ(rig.log->Count<ProcessProgress>("flood"), 1) << "the progress line after the flood";
}

TEST(Launcher, AnUnknownProgramAMissingBinaryAndABadEnvironmentGiveLaunchFailed) {
  Rig rig;
  LaunchProcess unknown = rig.Encoder("unknown", {});
  unknown.program = "rm";
  unknown.args = {"-rf", "/"};
  rig.Launch(unknown);
  LaunchProcess ghost = rig.Encoder("ghost", {});
  ghost.program = "ghost";
  rig.Launch(ghost);
  LaunchProcess env = rig.Encoder("env", {});
  env.env = {{"LD_PRELOAD", "/tmp/evil.so"}};
  rig.Launch(env);

  const ProcessExited u = rig.log->WaitExited("unknown");
  EXPECT_EQ(u.outcome, "launch_failed");
  EXPECT_NE(u.error.find("'rm' is not in the launcher's allow-list"), std::string::npos) << u.error;
  const ProcessExited g = rig.log->WaitExited("ghost");
  EXPECT_EQ(g.outcome, "launch_failed");
  EXPECT_NE(g.error.find("cannot execute /nonexistent/ghost"), std::string::npos) << g.error;
  const ProcessExited e = rig.log->WaitExited("env");
  EXPECT_EQ(e.outcome, "launch_failed");
  EXPECT_NE(e.error.find("LD_PRELOAD"), std::string::npos) << e.error;
  for (const char* job : {"unknown", "ghost", "env"}) {
    EXPECT_EQ(rig.log->Count<ProcessStarted>(job), 0) << job;
  }
  EXPECT_EQ(rig.launcher->Stats().launch_failed, 3u);
  EXPECT_EQ(rig.launcher->Stats().started, 0u);
}

TEST(Launcher, ACommandWithoutAJobIdOrWithAMalformedPayloadIsDeadLettered) {
  Rig rig;
  rig.Launch(rig.Encoder("", {}));
  kbus::OutgoingRecord bad = rig.Record(rig.Encoder("x", {}));
  bad.payload = "{\"job_id\": 42";
  rig.Send(bad);
  const auto dead = kbus::test::ReadTopic(TestBroker::Get().bootstrap(), kbus::DeadLetterTopic(rig.group), 2);
  ASSERT_EQ(dead.size(), 2u);
  std::set<std::string> reasons;
  for (const auto& r : dead) reasons.insert(r.FindHeader(std::string(kbus::header::kDlqReason)).value_or(""));
  EXPECT_EQ(reasons, (std::set<std::string>{"rejected", "decode-error"}));
}

TEST(Launcher, ARedeliveredAttemptRunsOnceAndTheNextAttemptRuns) {
  Rig rig;
  const LaunchProcess cmd = rig.Encoder("twice", {"--seconds", "0.3", "--steps", "1"});
  rig.Launch(cmd);
  rig.Launch(cmd);  // the same attempt again, as a redelivery would bring it
  rig.log->WaitExited("twice");
  ASSERT_TRUE(WaitFor([&] { return rig.launcher->Stats().duplicates == 1; }, seconds(30)));
  EXPECT_EQ(rig.log->Count<ProcessStarted>("twice"), 1);
  EXPECT_EQ(rig.log->Count<ProcessExited>("twice"), 1);

  rig.Launch(rig.Encoder("twice", {"--seconds", "0.05", "--steps", "1"}, 2));
  ASSERT_TRUE(WaitFor([&] { return rig.log->Count<ProcessExited>("twice") == 2; }, seconds(30)));
  EXPECT_EQ(rig.log->Count<ProcessStarted>("twice"), 2) << "attempt 2 is a new run";
}

TEST(Launcher, CancelStopsARunningJobAndAJobCancelledBeforeItsLaunchNeverStarts) {
  Rig rig;
  rig.Launch(rig.Encoder("long", {"--spawn-child", "--seconds", "60"}));
  const auto started = rig.log->WaitStarted("long");
  ASSERT_TRUE(started.has_value());
  rig.Cancel("long", "the user gave up");
  const ProcessExited exited = rig.log->WaitExited("long");
  EXPECT_EQ(exited.outcome, "cancelled");
  EXPECT_EQ(exited.error, "cancelled: the user gave up");
  EXPECT_EQ(exited.signal, SIGTERM);
  EXPECT_LT(exited.duration, seconds(30));
  EXPECT_FALSE(GroupAlive(static_cast<int>(started->pid)));

  // A cancel that comes first (the launch may still wait in a backlog): the launch never runs.
  rig.Cancel("early", "");
  ASSERT_TRUE(WaitFor([&] { return rig.launcher->Stats().cancels == 2; }, seconds(30)));
  rig.Launch(rig.Encoder("early", {"--seconds", "0.05"}));
  const ProcessExited early = rig.log->WaitExited("early");
  EXPECT_EQ(early.outcome, "cancelled");
  EXPECT_EQ(early.error, "cancelled before it started");
  EXPECT_EQ(rig.log->Count<ProcessStarted>("early"), 0);
  EXPECT_EQ(rig.launcher->Stats().cancelled, 1u) << "one running job was stopped";
}

TEST(Launcher, WithMaxProcesses4ItNeverRunsAFifthAndRunsThemAll) {
  const auto dir = std::filesystem::temp_directory_path() / TestBroker::UniqueName("lt-track");
  std::filesystem::create_directories(dir);
  Rig rig(/*max_processes=*/4);
  for (int i = 0; i < 12; ++i) {
    rig.Launch(rig.Encoder("job-" + std::to_string(i), {"--track", dir.string(), "--seconds", "0.4", "--steps", "1"}));
  }
  int most = 0;
  for (int i = 0; i < 12; ++i) {
    const std::string job = "job-" + std::to_string(i);
    EXPECT_EQ(rig.log->WaitExited(job).outcome, "succeeded") << job;
    for (const Seen& s : rig.log->Of(job)) {
      const auto* p = std::get_if<ProcessProgress>(&s.event);
      if (p == nullptr || p->percent != 0) continue;
      const int running = std::stoi(p->message.substr(p->message.rfind(' ') + 1));
      EXPECT_LE(running, 4) << job << " saw " << running << " copies running";
      most = std::max(most, running);
    }
  }
  EXPECT_EQ(most, 4) << "12 jobs queued at once fill all 4 slots";
  EXPECT_EQ(rig.launcher->slots()->in_use(), 0);
  std::filesystem::remove_all(dir);
}

TEST(Launcher, ACancelWhoseJobIdHoldsANewlineIsDeadLetteredAndCancelsNoOtherAttempt) {
  Rig rig;
  // Keys were once "job\nattempt": this cancel named job J's attempt 1.
  rig.Cancel("J\n1", "");
  const auto dead = rig.DeadLetters(1);
  ASSERT_EQ(dead.size(), 1u) << "a cancel with a control character in its job id is dead-lettered";
  EXPECT_EQ(dead[0].first, "rejected");
  EXPECT_NE(dead[0].second.find("job_id contains a control character"), std::string::npos) << dead[0].second;
  rig.Launch(rig.Encoder("J", {"--seconds", "0.05", "--steps", "1"}));
  const ProcessExited j = rig.log->WaitExited("J");
  EXPECT_EQ(j.outcome, "succeeded") << j.error;
  EXPECT_EQ(rig.launcher->Stats().cancels, 0u);
}

TEST(Launcher, AJobIdThatIsTooLongOrHoldsControlCharactersIsALaunchFailureNamingTheField) {
  Rig rig;
  const std::string long_id(kbus::handlers::kMaxJobIdBytes + 1, 'x');
  rig.Launch(rig.Encoder(long_id, {"--seconds", "0.05"}));
  rig.Launch(rig.Encoder("tab\tbed", {"--seconds", "0.05"}));
  const ProcessExited too_long = rig.log->WaitExited(long_id);
  EXPECT_EQ(too_long.outcome, "launch_failed");
  EXPECT_NE(too_long.error.find("job_id is 257 bytes, more than the 256 allowed"), std::string::npos) << too_long.error;
  const ProcessExited control = rig.log->WaitExited("tab\tbed");
  EXPECT_EQ(control.outcome, "launch_failed");
  EXPECT_NE(control.error.find("job_id contains a control character"), std::string::npos) << control.error;
  EXPECT_EQ(rig.launcher->Stats().started, 0u);
}

TEST(Launcher, DurationsOutOfBoundsAreLaunchFailuresNamingTheFieldAndThirtyDaysRuns) {
  Rig rig;
  LaunchProcess forever = rig.Encoder("forever", {"--seconds", "0.05", "--steps", "1"});
  forever.run_timeout = milliseconds(std::numeric_limits<std::int64_t>::max());
  rig.Launch(forever);
  LaunchProcess flood = rig.Encoder("flood", {"--seconds", "0.3", "--steps", "1"});
  flood.heartbeat_interval = milliseconds(10000000000000);
  rig.Launch(flood);
  LaunchProcess fast = rig.Encoder("fast", {"--seconds", "0.3", "--steps", "1"});
  fast.heartbeat_interval = milliseconds(1);
  rig.Launch(fast);
  LaunchProcess month = rig.Encoder("month", {"--seconds", "0.05", "--steps", "1"});
  month.run_timeout = kbus::handlers::kMaxRunTimeout;
  month.heartbeat_interval = kbus::handlers::kMaxHeartbeatInterval;
  rig.Launch(month);

  const ProcessExited f = rig.log->WaitExited("forever");
  EXPECT_EQ(f.outcome, "launch_failed") << "a run_timeout past 30 days was taken as " << f.outcome;
  EXPECT_NE(f.error.find("run_timeout 9223372036854775807 ms is out of bounds"), std::string::npos) << f.error;
  for (const char* job : {"flood", "fast"}) {
    const ProcessExited e = rig.log->WaitExited(job);
    EXPECT_EQ(e.outcome, "launch_failed") << job;
    EXPECT_NE(e.error.find("heartbeat_interval"), std::string::npos) << e.error;
    EXPECT_EQ(rig.log->Count<ProcessHeartbeat>(job), 0) << job;
  }
  EXPECT_EQ(rig.log->WaitExited("month").outcome, "succeeded") << "the longest run_timeout allowed";
  EXPECT_EQ(rig.launcher->Stats().started, 1u);
}

TEST(Launcher, ANegativeOrUndecodableFieldIsReportedAsLaunchFailedToReplyTo) {
  Rig rig;
  rig.LaunchEdited(rig.Encoder("negative", {}), "\"run_timeout\":0", "\"run_timeout\":-1");
  rig.LaunchEdited(rig.Encoder("heartbeat", {}), "\"heartbeat_interval\":0", "\"heartbeat_interval\":-5");
  rig.LaunchEdited(rig.Encoder("args", {"a"}), "\"args\":[\"a\"]", "\"args\":\"a\"");
  rig.LaunchEdited(rig.Encoder("huge", {}), "\"run_timeout\":0", "\"run_timeout\":1e300");
  for (const auto& [job, field] : std::vector<std::pair<std::string, std::string>>{
           {"negative", "run_timeout"}, {"heartbeat", "heartbeat_interval"}, {"args", "args"}, {"huge", "run_timeout"}}) {
    const ProcessExited e = rig.log->WaitExited(job);
    EXPECT_EQ(e.outcome, "launch_failed") << job;
    EXPECT_NE(e.error.find(field), std::string::npos) << job << ": " << e.error;
    EXPECT_EQ(e.attempt, 1) << job;
  }
  EXPECT_EQ(rig.launcher->Stats().launch_failed, 4u);
  EXPECT_EQ(rig.launcher->Stats().started, 0u);
}

TEST(Launcher, AReplyToOutsideTheAllowedTopicsOrNotATopicNameIsDeadLetteredAndStartsNothing) {
  Rig rig;
  LaunchProcess elsewhere = rig.Encoder("elsewhere", {"--seconds", "0.05"});
  elsewhere.reply_to = "payments.commands";
  rig.Launch(elsewhere);
  LaunchProcess bad = rig.Encoder("bad", {"--seconds", "0.05"});
  bad.reply_to = "lt-events-x/../y";
  rig.Launch(bad);
  LaunchProcess fallback = rig.Encoder("fallback", {"--seconds", "0.05"});
  fallback.reply_to = "";  // kbus.launcher.events, which this launcher does not allow
  rig.Launch(fallback);
  auto dead = rig.DeadLetters(3);
  ASSERT_EQ(dead.size(), 3u);
  std::sort(dead.begin(), dead.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  for (const auto& d : dead) EXPECT_EQ(d.first, "rejected");
  EXPECT_NE(dead[0].second.find("reply_to 'kbus.launcher.events' is not a topic this launcher may reply to"),
            std::string::npos) << dead[0].second;
  EXPECT_NE(dead[1].second.find("reply_to 'lt-events-x/../y' is not a Kafka topic name"), std::string::npos)
      << dead[1].second;
  EXPECT_NE(dead[2].second.find("reply_to 'payments.commands' is not a topic this launcher may reply to"),
            std::string::npos) << dead[2].second;
  EXPECT_EQ(rig.launcher->Stats().started, 0u);
  EXPECT_EQ(rig.launcher->Stats().launch_failed, 0u);
}

}  // namespace
