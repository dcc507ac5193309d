#pragma once
// The video-encoding workflow as an operator runs it, for the workflow robustness suites
// (workflow_kill_test.cpp, launcher_silence_test.cpp): a `video-encoding` host process and
// `kbus-launcher` processes on topics of one test, and a Watch, consumer groups of the test
// process that record what crosses those topics: launches, cancels, starts, and how each video
// ended (video_test::VideoEndings, test/integration/video_endings.hpp).
//
// Thread safety: Rig on the test's thread; Watch's accessors from any thread (its handlers run
// on its workers' threads).

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kbus/ops/server.hpp"
#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/handlers/launcher_messages.hpp"
#include "messages.hpp"
#include "rb_support.hpp"
#include "video_endings.hpp"

namespace wfrb {

using kbus::test::TestBroker;

// "job#attempt", how the suites name one launch.
inline std::string Launch(const std::string& job, int attempt) { return job + "#" + std::to_string(attempt); }

// Topics, allow-list and the programs' command lines of one test.
struct Rig {
  std::string tag = TestBroker::UniqueName("wfk");
  std::string name = tag + ".encode";
  std::string commands = tag + ".commands", launch = tag + ".launcher", control = tag + ".control",
              events = tag + ".events";
  std::string group = tag + "-wf";
  std::string dlq = kbus::DeadLetterTopic(group);
  std::filesystem::path allow = std::filesystem::temp_directory_path() / (tag + ".allow");

  // Every topic exists before a group subscribes (a consumer sees a later one only at its next
  // metadata refresh), the workflow's two with the same partition count.
  Rig() {
    for (const auto& t : {name + ".in", name + ".state", launch, control}) TestBroker::Get().CreateTopic(t, 4);
    for (const auto& t : {commands, events}) TestBroker::Get().CreateTopic(t, 2);
    TestBroker::Get().CreateTopic(dlq, 1);
    std::ofstream(allow) << "fake-encoder = " FAKE_ENCODER_PATH "\n";
  }
  ~Rig() { std::filesystem::remove(allow); }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  // The workflow host: 2 attempts per video, retries 300 ms to 1 s apart, heartbeats every
  // 500 ms. The 6 s session is the shortest real Kafka accepts (group.min.session.timeout.ms),
  // and what a takeover after a kill costs on either broker.
  std::unique_ptr<rb::Process> StartHost(const std::string& fake_seconds, const std::string& heartbeat_timeout_ms) const {
    return std::make_unique<rb::Process>(std::vector<std::string>{
        VIDEO_ENCODING_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", group, "--encoder", "fake",
        "--name", name, "--command-topic", commands, "--launcher-topic", launch, "--control-topic", control,
        "--events-topic", events, "--max-attempts", "2", "--retry-initial-ms", "300", "--retry-max-ms", "1000",
        "--heartbeat-ms", "500", "--heartbeat-timeout-ms", heartbeat_timeout_ms, "--fake-seconds", fake_seconds,
        "--session-timeout-ms", "6000", "--log-level", "warn"});
  }
  // With `http_port`, it serves /readyz there: ready once it joined its group (ReadyAt).
  std::unique_ptr<rb::Process> StartLauncher(int http_port = 0) const {
    std::vector<std::string> args{
        KBUS_LAUNCHER_PATH, "--brokers", TestBroker::Get().bootstrap(), "--group", tag + "-launcher",
        "--allow-list", allow.string(), "--launch-topic", launch, "--control-topic", control, "--reply-topics",
        name + ".in", "--max-processes",
        "16", "--heartbeat-ms", "500", "--kill-grace-ms", "500", "--session-timeout-ms", "6000", "--log-level",
        "warn"};
    if (http_port > 0) {
      args.push_back("--http-port");
      args.push_back(std::to_string(http_port));
    }
    return std::make_unique<rb::Process>(args);
  }
  // True once the program serving `port` answers /readyz with 200 (a worker: joined its group).
  static bool ReadyAt(int port, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    return kbus::test::WaitFor([&] { return kbus::ops::Get("127.0.0.1", port, "/readyz").status == 200; }, timeout);
  }
};

// What separate groups see: launches per (job, attempt), cancels, starts (with the pid the
// launcher reported), exits, and how each video ended (endings()).
class Watch {
 public:
  explicit Watch(const Rig& s) : endings_(s.events, s.dlq) {
    using kbus::handlers::CancelProcess;
    using kbus::handlers::LaunchProcess;
    using kbus::handlers::ProcessExited;
    using kbus::handlers::ProcessStarted;
    kbus::HandlerOptions on_input;
    on_input.topic = s.name + ".in";
    handlers_.Handle<LaunchProcess>(
        [this](const LaunchProcess& l, kbus::Context&) {
          std::lock_guard lock(mu_);
          ++launches_[Launch(l.job_id, l.attempt)];
          ++total_launches_;
          cv_.notify_all();
        },
        {.topic = s.launch});
    handlers_.Handle<CancelProcess>(
        [this](const CancelProcess& c, kbus::Context&) {
          std::lock_guard lock(mu_);
          cancels_.push_back(Launch(c.job_id, c.attempt));
          cv_.notify_all();
        },
        {.topic = s.control});
    handlers_.Handle<ProcessStarted>(
        [this](const ProcessStarted& e, kbus::Context&) {
          std::lock_guard lock(mu_);
          if (!started_.emplace(Launch(e.job_id, e.attempt), e.pid).second) ++started_twice_;
          cv_.notify_all();
        },
        on_input);
    handlers_.Handle<ProcessExited>(
        [this](const ProcessExited& e, kbus::Context&) {
          std::lock_guard lock(mu_);
          exits_[Launch(e.job_id, e.attempt)].push_back(e.outcome);
          cv_.notify_all();
        },
        on_input);
    // The rest of the workflow's input topic (heartbeats, progress, its own timeouts, the
    // re-keyed commands) is not the watcher's business.
    handlers_.Handle<kbus::handlers::ProcessHeartbeat>([](const auto&, kbus::Context&) {}, on_input);
    handlers_.Handle<kbus::handlers::ProcessProgress>([](const auto&, kbus::Context&) {}, on_input);
    handlers_.Handle<video::EncodeVideo>([](const auto&, kbus::Context&) {}, on_input);
    handlers_.AddRoute({s.name + ".timeout", kbus::MessageKind::kCommand, s.name + ".in",
                        [](const kbus::JsonValue&, kbus::Context&) { return kbus::Ack(); }, {}});
    worker_ = std::make_unique<it::RunningWorker>(it::WorkerConfigFor(TestBroker::UniqueName("wfk-watch")), handlers_);
  }

  // Waits until `pred` holds (checked under the watch's lock, and at least every 250 ms),
  // `timeout` passes, or one of `alive` exits: a host that died on its own would otherwise be
  // waited for until the deadline. Returns "" when `pred` held, else what went wrong.
  template <class Pred>
  std::string Await(Pred pred, std::chrono::seconds timeout, std::vector<rb::Process*> alive = {}) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mu_);
    for (;;) {
      if (pred()) return "";
      for (rb::Process* p : alive) {
        if (!p->Running()) return "process " + std::to_string(p->pid()) + " exited with " + std::to_string(p->exit_code());
      }
      if (std::chrono::steady_clock::now() >= deadline) return "not within " + std::to_string(timeout.count()) + " s";
      cv_.wait_for(lock, std::chrono::milliseconds(250));
    }
  }

  // Accessors for Await's predicates: call them only there (the lock is held). endings()
  // takes a lock of its own and may be called anywhere.
  int total_launches() const { return total_launches_; }
  bool Started(const std::string& launch) const { return started_.contains(launch); }
  bool Cancelled(const std::string& launch) const {
    return std::find(cancels_.begin(), cancels_.end(), launch) != cancels_.end();
  }

  // Snapshots, under the lock.
  std::int64_t PidOf(const std::string& launch) {
    std::lock_guard lock(mu_);
    auto it = started_.find(launch);
    return it == started_.end() ? -1 : it->second;
  }
  std::vector<std::string> Exits(const std::string& launch) {
    std::lock_guard lock(mu_);
    auto it = exits_.find(launch);
    return it == exits_.end() ? std::vector<std::string>{} : it->second;
  }
  int StartedTwice() {
    std::lock_guard lock(mu_);
    return started_twice_;
  }
  int Launches() {
    std::lock_guard lock(mu_);
    return total_launches_;
  }
  // (job, attempt) pairs sent more than once, and the copies beyond the first.
  std::pair<int, int> RepeatedLaunches() {
    std::lock_guard lock(mu_);
    std::pair<int, int> out{0, 0};
    for (const auto& [launch, count] : launches_) {
      if (count > 1) ++out.first;
      out.second += count - 1;
    }
    return out;
  }
  // How each video ended.
  video_test::VideoEndings& endings() { return endings_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> launches_;
  int total_launches_ = 0;
  std::vector<std::string> cancels_;
  std::map<std::string, std::int64_t> started_;
  int started_twice_ = 0;
  std::map<std::string, std::vector<std::string>> exits_;
  kbus::HandlerRegistry handlers_;
  std::unique_ptr<it::RunningWorker> worker_;
  video_test::VideoEndings endings_;  // its own group, started first
};

// The last state record of workflow `id` on the state topic (its JSON), or "" when there is none.
inline std::string LastStateRecord(const Rig& s, const std::string& id) {
  const std::string topic = s.name + ".state";
  std::size_t count = 0;
  for (const auto& w : rb::Watermarks(TestBroker::Get().bootstrap(), topic, 4)) {
    count += static_cast<std::size_t>(w.high - w.low);
  }
  std::string last;
  for (const auto& r : kbus::test::ReadTopic(TestBroker::Get().bootstrap(), topic, count)) {
    if (r.key == id) last = r.payload;  // one partition per key: in order
  }
  return last;
}

}  // namespace wfrb
