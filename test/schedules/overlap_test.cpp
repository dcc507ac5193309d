// Overlap policies with real launcher jobs, on both brokers: a schedule fires every second a job
// that runs 2.5 s. With skip no two runs ever overlap; with buffer_one, each run's end starts
// exactly one of the ticks it held back. The schedule learns that a run ended from the
// launcher's ProcessExited event, which the scheduler passes to the schedule's owner.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "kbus/envelope.hpp"
#include "kbus/handlers/launcher.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "kbus/handlers/producer_sink.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/schedules/client.hpp"
#include "kbus/testing/matchers.hpp"
#include "schedules_it_support.hpp"

namespace {

using kbus::schedules::Overlap;
using kbus::schedules::ScheduleSpec;
using kbus::test::WaitFor;
using kbus::testing::IsOk;
using sit::Follower;
using sit::Running;
using sit::TestBroker;
using namespace std::chrono_literals;

// A launcher with its worker on topics of its own, a scheduler watching its events, and
// followers of the launch commands and of the events.
struct Rig {
  explicit Rig(const std::string& prefix) : producer(sit::ProducerOptions()), sink(producer) {
    TestBroker::Get().CreateTopic(launch, 1);
    TestBroker::Get().CreateTopic(control, 1);
    TestBroker::Get().CreateTopic(events, 1);
    std::filesystem::create_directories(track);
    auto allow = kbus::handlers::AllowList::Parse("fake-encoder = " FAKE_ENCODER_PATH "\n");
    EXPECT_TRUE(allow.ok());
    kbus::handlers::LauncherConfig lc;
    lc.kill_grace = 300ms;
    lc.host = "test-host";
    lc.reply_topics = {events};
    launcher = std::make_unique<kbus::handlers::Launcher>(lc, std::move(allow.value()), backend, sink);
    kbus::HandlerOptions l, c;
    l.topic = launch;
    c.topic = control;
    launcher->Register(handlers, l, c);
    kbus::kafka::WorkerConfig wc;
    wc.client = sit::Client();
    wc.group = TestBroker::UniqueName(prefix + "-launcher");
    wc.session_timeout = 6s;
    worker = std::make_unique<kbus::kafka::Worker>(wc, handlers);
    worker_thread = std::thread([this] { worker->Run(); });
    config = sit::Config(prefix, 1);
    config.run_topics = {events};
    commands = std::make_unique<Follower>(launch);
    seen = std::make_unique<Follower>(events);
  }
  ~Rig() {
    scheduler.reset();
    worker->Stop();
    worker_thread.join();
    launcher->Shutdown();
    std::filesystem::remove_all(track);
  }

  ScheduleSpec Job(Overlap overlap) const {
    ScheduleSpec s;
    s.id = "encode-every-second";
    s.every = 1s;
    s.type = "kbus.LaunchProcess";
    s.topic = launch;
    s.overlap = overlap;
    s.catch_up_window = 0ms;
    // 2.5 s with --track: its first progress line says how many copies run at once.
    s.payload = R"({"job_id":"job-${run}","program":"fake-encoder","args":["--seconds","2.5","--steps","2","--track",")" +
                track.string() + R"("],"reply_to":")" + events + R"("})";
    return s;
  }
  void Start(Overlap overlap) {
    ASSERT_THAT(kbus::schedules::Declare(producer, {Job(overlap)}, config.schedules_topic), IsOk());
    scheduler = std::make_unique<Running>(config);
  }

  std::vector<Follower::Arrival> Events(std::string_view type) const {
    std::vector<Follower::Arrival> out;
    for (auto& a : seen->Arrivals()) {
      if (a.Header(std::string(kbus::header::kType)) == type) out.push_back(a);
    }
    return out;
  }

  std::string launch = TestBroker::UniqueName("ov-launch");
  std::string control = TestBroker::UniqueName("ov-control");
  std::string events = TestBroker::UniqueName("ov-events");
  std::filesystem::path track = std::filesystem::temp_directory_path() / TestBroker::UniqueName("ov-track");
  kbus::kafka::Producer producer;
  kbus::handlers::ProducerSink sink;
  kbus::handlers::LocalProcessBackend backend;
  std::unique_ptr<kbus::handlers::Launcher> launcher;
  kbus::HandlerRegistry handlers;
  std::unique_ptr<kbus::kafka::Worker> worker;
  std::thread worker_thread;
  kbus::schedules::SchedulerConfig config;
  std::unique_ptr<Follower> commands;
  std::unique_ptr<Follower> seen;
  std::unique_ptr<Running> scheduler;
};

// Every run's first progress line: "running N", N the copies running at once.
void ExpectNeverTwoAtOnce(const Rig& rig) {
  const auto progress = rig.Events("kbus.ProcessProgress");
  int first_lines = 0;
  for (const auto& p : progress) {
    const std::string& body = p.record.payload.value_or("");
    if (body.find("running ") == std::string::npos) continue;
    ++first_lines;
    EXPECT_NE(body.find("running 1\""), std::string::npos) << "two runs of the schedule at once: " << body;
  }
  EXPECT_GE(first_lines, 3);
  // And by the events' times: each run starts after the previous one exited.
  const auto started = rig.Events("kbus.ProcessStarted");
  const auto exited = rig.Events("kbus.ProcessExited");
  for (std::size_t i = 1; i < started.size() && i - 1 < exited.size(); ++i) {
    EXPECT_GE(started[i].record.timestamp_ms, exited[i - 1].record.timestamp_ms) << "run " << i;
  }
}

TEST(Overlap, SkipNeverStartsARunWhileTheLastOneRuns) {
  Rig rig("ov-skip");
  rig.Start(Overlap::kSkip);
  ASSERT_TRUE(WaitFor([&] { return rig.Events("kbus.ProcessExited").size() >= 3; }, 90s));
  ExpectNeverTwoAtOnce(rig);
  for (const auto& c : rig.commands->Arrivals()) EXPECT_EQ(c.Header("kbus-schedule-reason"), "tick");
  // The ticks a run covered were skipped: consecutive runs are at least the run's length apart.
  const auto launched = rig.commands->Arrivals();
  for (std::size_t i = 1; i < launched.size(); ++i) {
    EXPECT_GE(launched[i].record.timestamp_ms - launched[i - 1].record.timestamp_ms, 2500);
  }
  auto list = kbus::schedules::ListSchedules(rig.config.client, rig.config.schedules_topic);
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  const auto& recent = (*list)[0].state.recent;
  EXPECT_GE(std::count_if(recent.begin(), recent.end(), [](const auto& r) { return r.outcome == "skipped"; }), 2);
  EXPECT_GE(std::count_if(recent.begin(), recent.end(), [](const auto& r) { return r.outcome == "succeeded"; }), 2)
      << "describe shows how each run ended";
}

TEST(Overlap, BufferOneRunsExactlyOneHeldBackTickWhenARunEnds) {
  Rig rig("ov-buffer");
  rig.Start(Overlap::kBufferOne);
  ASSERT_TRUE(WaitFor([&] { return rig.Events("kbus.ProcessExited").size() >= 3; }, 90s));
  ExpectNeverTwoAtOnce(rig);
  const auto launched = rig.commands->Arrivals();
  const auto exited = rig.Events("kbus.ProcessExited");
  ASSERT_GE(launched.size(), 3u);
  EXPECT_EQ(launched[0].Header("kbus-schedule-reason"), "tick");
  for (std::size_t i = 1; i < launched.size(); ++i) {
    // Each run ends with a tick held back (a tick comes every second, a run lasts 2.5 s): its
    // end fires that one tick, older than the run it follows.
    EXPECT_EQ(launched[i].Header("kbus-schedule-reason"), "buffered") << "run " << i;
    const auto tick_of = [](const Follower::Arrival& a) {
      return kbus::schedules::ParseRunCorrelation(a.Header(std::string(kbus::header::kCorrelationId)).value_or(""))->tick;
    };
    EXPECT_LT(tick_of(launched[i]).time_since_epoch().count(), launched[i - 1].record.timestamp_ms + 2500)
        << "the buffered tick is the first one the previous run held back";
    if (i - 1 < exited.size()) {
      EXPECT_LT(launched[i].record.timestamp_ms - exited[i - 1].record.timestamp_ms, 1000)
          << "it fires as soon as the run's end is known";
    }
  }
  // One new run per end, never more.
  EXPECT_LE(rig.commands->Count(), rig.Events("kbus.ProcessExited").size() + 1);
}

}  // namespace
