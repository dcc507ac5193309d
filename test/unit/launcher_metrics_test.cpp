// The launcher's operations surface, with real child processes and no broker: the in-memory bus
// delivers LaunchProcess and CancelProcess, a sink records the events, and the launcher's
// kbus_launcher_* series and its "launcher" probe are read back from a registry and a board.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kbus/handlers/launcher.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/health.hpp"
#include "kbus/metrics.hpp"
#include "kbus/testing/in_memory_bus.hpp"
#include "exposition.hpp"

namespace {

using kbus::handlers::CancelProcess;
using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessStarted;
using std::chrono::milliseconds;
using std::chrono::seconds;


// Keeps every event; the broker's answer is always "delivered", at once.
class RecordingSink final : public kbus::handlers::EventSink {
 public:
  void Post(kbus::OutgoingRecord record, Delivered done) override {
    Keep(record);
    if (done) done(kbus::Ok());
  }
  kbus::Status Deliver(const kbus::OutgoingRecord& record) override {
    Keep(record);
    return kbus::Ok();
  }
  // Waits (at most 20 s) until `n` events of message type T came; false if they did not.
  template <class T>
  bool WaitFor(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, seconds(20), [&] { return CountLocked(kbus::MessageTraits<T>::kType) >= n; });
  }
  template <class T>
  std::vector<T> Events() {
    std::lock_guard lock(mu_);
    std::vector<T> out;
    for (const auto& r : records_) {
      if (r.FindHeader(kbus::header::kType) != kbus::MessageTraits<T>::kType) continue;
      if (auto e = kbus::FromJson<T>(r.payload); e.ok()) out.push_back(*e);
    }
    return out;
  }

 private:
  void Keep(const kbus::OutgoingRecord& record) {
    {
      std::lock_guard lock(mu_);
      records_.push_back(record);
    }
    cv_.notify_all();
  }
  std::size_t CountLocked(std::string_view type) const {
    std::size_t n = 0;
    for (const auto& r : records_) n += r.FindHeader(kbus::header::kType) == type ? 1 : 0;
    return n;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<kbus::OutgoingRecord> records_;
};

struct Rig {
  Rig() {
    auto allow = kbus::handlers::AllowList::Parse("fake-encoder = " FAKE_ENCODER_PATH "\n"
                                                  "ghost = /nonexistent/ghost\n");
    EXPECT_TRUE(allow.ok());
    kbus::handlers::LauncherConfig config;
    config.max_processes = 3;
    config.kill_grace = milliseconds(300);
    config.host = "unit-host";
    launcher = std::make_unique<kbus::handlers::Launcher>(config, std::move(*allow), backend, sink);
    launcher->ReportTo(metrics, health);
    launcher->Register(handlers);
    bus = std::make_unique<kbus::testing::InMemoryBus>(handlers);
  }
  ~Rig() { launcher->Shutdown(); }

  void Launch(const std::string& job, std::vector<std::string> args, std::string program = "fake-encoder") {
    LaunchProcess cmd;
    cmd.job_id = job;
    cmd.program = std::move(program);
    cmd.args = std::move(args);
    bus->Send(cmd);
    bus->RunUntilIdle();
  }
  // Waits (at most 20 s) until `n` processes ended and were accounted for.
  bool WaitExited(std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(20);
    while (launcher->Stats().exited < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }
  double Value(const std::string& series) {
    auto v = kbus::test::SampleValue(metrics.Render(), series);
    EXPECT_TRUE(v.has_value()) << series << " is not in\n" << metrics.Render();
    return v.value_or(-1);
  }

  // Declared first: the launcher reports here until it is gone.
  kbus::metrics::Registry metrics;
  kbus::health::Board health;
  RecordingSink sink;
  kbus::handlers::LocalProcessBackend backend;
  std::unique_ptr<kbus::handlers::Launcher> launcher;
  kbus::HandlerRegistry handlers;
  std::unique_ptr<kbus::testing::InMemoryBus> bus;
};

TEST(LauncherMetrics, CountLaunchesExitsByProgramAndOutcomeRefusalsByReasonAndDurations) {
  Rig rig;
  rig.Launch("ok", {"--seconds", "0.1", "--steps", "1"});
  rig.Launch("bad", {"--seconds", "0.1", "--steps", "1", "--exit-code", "3"});
  rig.Launch("missing-binary", {}, "ghost");                // allow-listed, cannot start
  rig.Launch("not-listed", {}, "rm");                       // refused: not in the allow-list
  rig.Launch("bad\njob", {});                               // refused: a control character
  // Refusals and the failed start are reported with the command's acknowledgement, on the bus;
  // the sink sees the exits of processes that ran.
  ASSERT_TRUE(rig.sink.WaitFor<ProcessExited>(2));
  ASSERT_TRUE(rig.WaitExited(2));
  rig.Launch("ok", {"--seconds", "0.1"});                   // the same attempt again: a duplicate

  EXPECT_EQ(rig.Value(R"(kbus_launcher_launches_total{program="fake-encoder"})"), 2);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_launches_total{program="ghost"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_exits_total{program="fake-encoder",outcome="succeeded"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_exits_total{program="fake-encoder",outcome="failed"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_exits_total{program="fake-encoder",outcome="timed_out"})"), 0);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_exits_total{program="ghost",outcome="launch_failed"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_refused_total{reason="program_not_allowed"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_refused_total{reason="bad_job_id"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_refused_total{reason="duplicate"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_refused_total{reason="env_not_allowed"})"), 0);
  // Only processes that ran have a duration: the ghost never started.
  EXPECT_EQ(rig.Value(R"(kbus_launcher_process_duration_seconds_count{program="fake-encoder"})"), 2);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_process_duration_seconds_count{program="ghost"})"), 0);
  EXPECT_GT(rig.Value(R"(kbus_launcher_process_duration_seconds_sum{program="fake-encoder"})"), 0.1);
  EXPECT_EQ(rig.Value("kbus_launcher_processes_running"), 0);
  EXPECT_EQ(rig.Value("kbus_launcher_max_processes"), 3);
  // A program name that is not in the allow-list never becomes a label value.
  EXPECT_EQ(rig.metrics.Render().find("program=\"rm\""), std::string::npos);
}

TEST(LauncherMetrics, TheProbeShowsRunningProcessesAndIsNotReadyOnceShutDownAndTheirExitsCount) {
  Rig rig;
  rig.Launch("long-1", {"--seconds", "60"});
  rig.Launch("long-2", {"--seconds", "60"});
  ASSERT_TRUE(rig.sink.WaitFor<ProcessStarted>(2));

  EXPECT_EQ(rig.Value("kbus_launcher_processes_running"), 2);
  auto answer = rig.health.Check();
  EXPECT_TRUE(answer.live);
  EXPECT_TRUE(answer.ready);
  EXPECT_NE(answer.json.find(R"("launcher":{"live":true,"ready":true,"active_work":2,"running":2,"max_processes":3,"host":"unit-host"})"),
            std::string::npos)
      << answer.json;

  rig.bus->Send(CancelProcess{"long-1", "no longer wanted"});
  rig.bus->RunUntilIdle();
  ASSERT_TRUE(rig.sink.WaitFor<ProcessExited>(1));
  rig.launcher->Shutdown();  // long-2 is reported lost
  ASSERT_TRUE(rig.sink.WaitFor<ProcessExited>(2));

  EXPECT_EQ(rig.Value(R"(kbus_launcher_exits_total{program="fake-encoder",outcome="cancelled"})"), 1);
  EXPECT_EQ(rig.Value(R"(kbus_launcher_exits_total{program="fake-encoder",outcome="lost"})"), 1);
  EXPECT_EQ(rig.Value("kbus_launcher_processes_running"), 0);
  answer = rig.health.Check();
  EXPECT_TRUE(answer.live);
  EXPECT_FALSE(answer.ready);
  EXPECT_NE(answer.json.find("the launcher is shutting down"), std::string::npos) << answer.json;
}

}  // namespace
