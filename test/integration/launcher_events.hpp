#pragma once
// The launcher's events as an observer group receives them, per job, for the launcher's tests.

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "it_support.hpp"
#include "kbus/handlers/launcher_messages.hpp"

namespace lt {

using kbus::handlers::ProcessExited;
using kbus::handlers::ProcessHeartbeat;
using kbus::handlers::ProcessProgress;
using kbus::handlers::ProcessStarted;
using kbus::test::TestBroker;
using std::chrono::milliseconds;
using std::chrono::seconds;

// One event as an observer group received it.
struct Seen {
  std::variant<ProcessStarted, ProcessProgress, ProcessHeartbeat, ProcessExited> event;
  std::string key, correlation_id, causation_id, workflow_id;
  std::string message_id;
};

// Every launcher event on a topic, per job, in the order received.
class EventLog {
 public:
  explicit EventLog(const std::string& topic) {
    kbus::HandlerOptions options;
    options.topic = topic;
    On<ProcessStarted>(options);
    On<ProcessProgress>(options);
    On<ProcessHeartbeat>(options);
    On<ProcessExited>(options);
    worker_ = std::make_unique<it::RunningWorker>(it::WorkerConfigFor(TestBroker::UniqueName("obs")), handlers_);
  }

  std::vector<Seen> Of(const std::string& job) {
    std::lock_guard lock(mu_);
    return jobs_[job];
  }
  // Waits for the job's exit event and returns it.
  ProcessExited WaitExited(const std::string& job, milliseconds timeout = seconds(60)) {
    std::unique_lock lock(mu_);
    ProcessExited* found = nullptr;
    cv_.wait_for(lock, timeout, [&] { return (found = FindExited(job)) != nullptr; });
    if (found == nullptr) {
      ADD_FAILURE() << "no ProcessExited for " << job;
      return {};
    }
    return *found;
  }
  std::optional<ProcessStarted> WaitStarted(const std::string& job, milliseconds timeout = seconds(30)) {
    std::unique_lock lock(mu_);
    std::optional<ProcessStarted> found;
    cv_.wait_for(lock, timeout, [&] {
      for (auto& s : jobs_[job]) {
        if (auto* e = std::get_if<ProcessStarted>(&s.event)) found = *e;
      }
      return found.has_value();
    });
    return found;
  }
  template <class E>
  int Count(const std::string& job) {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count_if(jobs_[job].begin(), jobs_[job].end(),
                                          [](const Seen& s) { return std::holds_alternative<E>(s.event); }));
  }

 private:
  template <class E>
  void On(const kbus::HandlerOptions& options) {
    handlers_.Handle<E>(
        [this](const E& e, kbus::Context& ctx) {
          const auto& env = ctx.envelope();
          std::lock_guard lock(mu_);
          jobs_[e.job_id].push_back(Seen{e, std::string(ctx.record().key),
                                         std::string(env.correlation_id), std::string(env.causation_id),
                                         std::string(env.workflow_id), std::string(env.message_id)});
          cv_.notify_all();
        },
        options);
  }
  ProcessExited* FindExited(const std::string& job) {
    for (auto& s : jobs_[job]) {
      if (auto* e = std::get_if<ProcessExited>(&s.event)) return e;
    }
    return nullptr;
  }

  kbus::HandlerRegistry handlers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<Seen>> jobs_;
  std::unique_ptr<it::RunningWorker> worker_;  // last: stopped before the rest goes
};

}  // namespace lt
