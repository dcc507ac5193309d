// The video-encoding workflow as an operator runs it, a host process and a kbus-launcher
// process: SIGKILL the workflow host twice while 100 workflows are in flight and restart it,
// and every workflow still ends exactly once (one VideoEncoded, or one dead-letter record);
// SIGKILL the launcher while a job runs, and the workflow sees the silence, cancels that
// attempt and runs the next on a new launcher.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "it_support.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "messages.hpp"
#include "rb_support.hpp"
#include "services.hpp"

namespace {

using kbus::handlers::LaunchProcess;
using kbus::handlers::ProcessStarted;
using kbus::test::TestBroker;
using namespace std::chrono_literals;

// Topics, allow-list and the programs' command lines of one test.
struct Rig {
  std::string tag = TestBroker::UniqueName("wfk");
  std::string name = tag + ".encode";
  std::string commands = tag + ".commands", launch = tag + ".launcher", control = tag + ".control",
              events = tag + ".events";
  std::string group = tag + "-wf";
  std::string dlq = kbus::DeadLetterTopic(group);
  std::filesystem::path allow = std::filesystem::temp_directory_path() / (tag + ".allow");

  Rig() {
    for (const auto& t : {name + ".in", name + ".state", launch, control}) TestBroker::Get().CreateTopic(t, 4);
    for (const auto& t : {commands, events}) TestBroker::Get().CreateTopic(t, 2);
    TestBroker::Get().CreateTopic(dlq, 1);
    std::ofstream(allow) << "fake-encoder = " FAKE_ENCODER_PATH "\n";
  }
  ~Rig() { std::filesystem::remove(allow); }

  pid_t StartHost(const std::string& fake_seconds, const std::string& heartbeat_timeout_ms) const {
    return rb::Spawn({VIDEO_ENCODING_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", group, "--encoder",
                      "fake", "--name", name, "--command-topic", commands, "--launcher-topic", launch,
                      "--control-topic", control, "--events-topic", events, "--max-attempts", "2",
                      "--retry-initial-ms", "300", "--retry-max-ms", "1000", "--heartbeat-ms", "500",
                      "--heartbeat-timeout-ms", heartbeat_timeout_ms, "--fake-seconds", fake_seconds,
                      "--session-timeout-ms", "6000", "--log-level", "warn"});
  }
  pid_t StartLauncher() const {
    return rb::Spawn({KBUS_LAUNCHER_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", tag + "-launcher",
                      "--allow-list", allow.string(), "--launch-topic", launch, "--control-topic", control,
                      "--max-processes", "16", "--heartbeat-ms", "500", "--kill-grace-ms", "500",
                      "--session-timeout-ms", "6000", "--log-level", "warn"});
  }
};

// What a separate group sees: launches per (job, attempt), starts, and each video's endings.
class Watch {
 public:
  explicit Watch(const Rig& s) {
    kbus::HandlerOptions on_launch, on_input, on_events, on_dlq;
    on_launch.topic = s.launch;
    on_input.topic = s.name + ".in";
    on_events.topic = s.events;
    on_dlq.topic = s.dlq;
    handlers_.Handle<LaunchProcess>(
        [this](const LaunchProcess& l, kbus::Context&) {
          std::lock_guard lock(mu_);
          ++launches_[l.job_id + "#" + std::to_string(l.attempt)];
          ++total_launches_;
          cv_.notify_all();
        },
        on_launch);
    handlers_.Handle<kbus::handlers::CancelProcess>(
        [this](const kbus::handlers::CancelProcess& c, kbus::Context&) {
          std::lock_guard lock(mu_);
          cancels_.push_back(c.job_id + "#" + std::to_string(c.attempt));
          cv_.notify_all();
        },
        {.topic = s.control});
    handlers_.Handle<ProcessStarted>(
        [this](const ProcessStarted& e, kbus::Context&) {
          std::lock_guard lock(mu_);
          const std::string key = e.job_id + "#" + std::to_string(e.attempt);
          if (!started_.emplace(key, e.pid).second) ++started_twice_;
          cv_.notify_all();
        },
        on_input);
    // The rest of the workflow's input topic is not the watcher's business.
    handlers_.AddRoute({s.name + ".timeout", kbus::MessageKind::kCommand, s.name + ".in",
                        [](const kbus::JsonValue&, kbus::Context&) { return kbus::Ack(); }, {}});
    handlers_.Handle<video::VideoEncoded>(
        [this](const video::VideoEncoded& e, kbus::Context&) { End(e.video_id, "encoded:" + std::to_string(e.attempts)); },
        on_events);
    handlers_.Handle<video::EncodeVideo>(
        [this, dlq = s.dlq](const video::EncodeVideo& v, kbus::Context& ctx) {
          if (ctx.record().topic != dlq) return;  // the copy re-keyed into the input topic
          End(v.video_id, "dlq:" + std::string(ctx.record().FindHeader(kbus::header::kDlqReason).value_or("")) + ":" +
                              std::string(ctx.record().FindHeader(kbus::header::kDlqAttempts).value_or("")));
        },
        on_dlq);
    worker_ = std::make_unique<it::RunningWorker>(it::WorkerConfigFor(TestBroker::UniqueName("wfk-watch")), handlers_);
  }

  template <class Pred>
  bool WaitUntil(Pred pred, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(); });
  }
  int total_launches() const { return total_launches_; }
  int started_twice() const { return started_twice_; }
  std::size_t ended() const { return endings_.size(); }
  bool Started(const std::string& key) const { return started_.contains(key); }
  bool Cancelled(const std::string& key) const {
    return std::find(cancels_.begin(), cancels_.end(), key) != cancels_.end();
  }
  // Waits until nothing new ended for `quiet`; then every ending per video.
  std::map<std::string, std::vector<std::string>> Settle(std::chrono::milliseconds quiet) {
    std::unique_lock lock(mu_);
    for (;;) {
      const std::size_t before = events_;
      if (!cv_.wait_for(lock, quiet, [&] { return events_ != before; })) return endings_;
    }
  }
  int DuplicateLaunches() {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& [key, count] : launches_) n += count - 1;
    return n;
  }

 private:
  void End(const std::string& id, std::string what) {
    std::lock_guard lock(mu_);
    endings_[id].push_back(std::move(what));
    ++events_;
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> launches_;
  int total_launches_ = 0;
  std::vector<std::string> cancels_;
  std::map<std::string, std::int64_t> started_;
  int started_twice_ = 0;
  std::map<std::string, std::vector<std::string>> endings_;
  std::size_t events_ = 0;
  kbus::HandlerRegistry handlers_;
  std::unique_ptr<it::RunningWorker> worker_;
};

TEST(WorkflowProcess, KillingTheHostTwiceWhile100WorkflowsRunEndsEachExactlyOnce) {
  Rig s;
  Watch watch(s);
  const pid_t launcher = s.StartLauncher();
  ASSERT_GT(launcher, 0);
  pid_t host = s.StartHost("1", "8000");
  ASSERT_GT(host, 0);

  kbus::kafka::Producer producer(it::ProducerConfig());
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 100; ++i) {
    const std::string id = s.tag + "-" + std::to_string(i);
    const char* source = i % 3 == 0 ? "ok.mp4" : i % 3 == 1 ? "flaky-1.mp4" : "broken.mp4";
    ASSERT_TRUE(producer.Send(video::EncodeVideo{id, source, 720}, {.topic = s.commands}).ok());
    expected[id] = i % 3 == 2 ? "dlq:attempts-exhausted:2" : "encoded";
  }

  // Crash it while launches are going out, twice, restarting it each time.
  for (int launches : {20, 80}) {
    ASSERT_TRUE(watch.WaitUntil([&] { return watch.total_launches() >= launches; }, 120s))
        << "only " << watch.total_launches() << " launches";
    kill(host, SIGKILL);
    EXPECT_EQ(rb::WaitExit(host, 10s), 128 + SIGKILL);
    std::printf("host killed after %d launches, %zu workflows ended\n", watch.total_launches(), watch.ended());
    host = s.StartHost("1", "8000");
    ASSERT_GT(host, 0);
  }

  EXPECT_TRUE(watch.WaitUntil([&] { return watch.ended() >= expected.size(); }, 180s))
      << watch.ended() << " of " << expected.size() << " workflows ended";
  const auto endings = watch.Settle(3s);
  int wrong = 0;
  for (const auto& [id, want] : expected) {
    auto it = endings.find(id);
    const std::vector<std::string> got = it == endings.end() ? std::vector<std::string>{} : it->second;
    const bool ok = got.size() == 1 && got[0].starts_with(want);
    if (!ok && ++wrong <= 10) ADD_FAILURE() << id << " ended " << testing::PrintToString(got) << ", expected one " << want;
  }
  EXPECT_EQ(wrong, 0);
  std::printf("launches %d, of them repeated (job, attempt): %d\n", watch.total_launches(), watch.DuplicateLaunches());
  EXPECT_EQ(watch.started_twice(), 0) << "a repeated launch never runs an attempt twice";

  kill(host, SIGTERM);
  EXPECT_EQ(rb::WaitExit(host, 30s), 0);
  kill(launcher, SIGTERM);
  EXPECT_EQ(rb::WaitExit(launcher, 30s), 0);
}

TEST(WorkflowProcess, KillingTheLauncherMidJobIsSeenAsSilenceAndTheNextAttemptRunsElsewhere) {
  Rig s;
  Watch watch(s);
  pid_t launcher = s.StartLauncher();
  ASSERT_GT(launcher, 0);
  const pid_t host = s.StartHost("6", "2500");
  ASSERT_GT(host, 0);
  const std::string id = s.tag + "-long";
  kbus::kafka::Producer producer(it::ProducerConfig());
  ASSERT_TRUE(producer.Send(video::EncodeVideo{id, "ok.mp4", 720}, {.topic = s.commands}).ok());

  ASSERT_TRUE(watch.WaitUntil([&] { return watch.Started(id + "#1"); }, 120s)) << "attempt 1 never started";
  kill(launcher, SIGKILL);
  EXPECT_EQ(rb::WaitExit(launcher, 10s), 128 + SIGKILL);
  launcher = s.StartLauncher();
  ASSERT_GT(launcher, 0);

  EXPECT_TRUE(watch.WaitUntil([&] { return watch.Cancelled(id + "#1"); }, 60s))
      << "the silent attempt 1 was not cancelled";
  EXPECT_TRUE(watch.WaitUntil([&] { return watch.Started(id + "#2"); }, 120s)) << "attempt 2 never started";
  EXPECT_TRUE(watch.WaitUntil([&] { return watch.ended() >= 1; }, 120s));
  const auto endings = watch.Settle(2s);
  EXPECT_EQ(endings.at(id), std::vector<std::string>{"encoded:2"});

  kill(host, SIGTERM);
  EXPECT_EQ(rb::WaitExit(host, 30s), 0);
  kill(launcher, SIGTERM);
  EXPECT_EQ(rb::WaitExit(launcher, 30s), 0);
}

}  // namespace
