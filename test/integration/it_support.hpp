#pragma once
// Shared pieces of the integration tests: a work command, a thread-safe tally of what handlers
// saw, and a worker running on its own thread.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "kbus/kafka/producer.hpp"
#include "kbus/kafka/worker.hpp"
#include "kbus/message.hpp"
#include "test_broker.hpp"

namespace it {

struct Work {
  std::int64_t id = 0;
  std::string tenant;
  std::string body;
};

struct WorkDone {
  std::int64_t id = 0;
};

// Counts deliveries per id, so tests can tell lost (count 0) from duplicated (count > 1).
class Tally {
 public:
  void Add(std::int64_t id) {
    std::lock_guard lock(mu_);
    ++counts_[id];
  }
  std::size_t Distinct() const {
    std::lock_guard lock(mu_);
    return counts_.size();
  }
  std::size_t Deliveries() const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [id, c] : counts_) n += static_cast<std::size_t>(c);
    return n;
  }
  // Ids in [0, n) never delivered.
  std::vector<std::int64_t> Missing(std::int64_t n) const {
    std::lock_guard lock(mu_);
    std::vector<std::int64_t> out;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!counts_.contains(i)) out.push_back(i);
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::int64_t, int> counts_;
};

// The tests' worker settings (short session, fast fetches and commits, quick retries), for
// `group` on `brokers`.
inline kbus::kafka::WorkerConfig WorkerConfigFor(const std::string& group, const std::string& brokers) {
  kbus::kafka::WorkerConfig c;
  c.client.brokers = brokers;
  c.group = group;
  c.session_timeout = std::chrono::seconds(6);
  c.fetch_wait_max = std::chrono::milliseconds(10);
  c.commit_interval = std::chrono::milliseconds(200);
  c.retry_backoff_initial = std::chrono::milliseconds(20);
  c.retry_backoff_max = std::chrono::milliseconds(100);
  // For measuring the group protocols against each other (docs/delivery.md, defaults).
  if (const char* s = std::getenv("KBUS_TEST_ASSIGNMENT_STRATEGY"); s != nullptr && *s != '\0') {
    c.assignment_strategy = s;
  }
  return c;
}

// The same, on the test broker.
inline kbus::kafka::WorkerConfig WorkerConfigFor(const std::string& group) {
  return WorkerConfigFor(group, kbus::test::TestBroker::Get().bootstrap());
}

inline kbus::kafka::ProducerConfig ProducerConfig() {
  kbus::kafka::ProducerConfig c;
  c.client.brokers = kbus::test::TestBroker::Get().bootstrap();
  return c;
}

// A worker on its own thread; stopped cleanly and joined on destruction.
class RunningWorker {
 public:
  RunningWorker(kbus::kafka::WorkerConfig config, const kbus::HandlerRegistry& handlers)
      : worker_(std::make_unique<kbus::kafka::Worker>(std::move(config), handlers)),
        thread_([w = worker_.get()] { w->Run(); }) {}
  ~RunningWorker() { Stop(); }
  void Stop() {
    if (thread_.joinable()) {
      worker_->Stop();
      thread_.join();
    }
  }
  kbus::kafka::WorkerStats Stats() const { return worker_->Stats(); }

 private:
  std::unique_ptr<kbus::kafka::Worker> worker_;
  std::thread thread_;
};

}  // namespace it

template <>
struct kbus::MessageTraits<it::Work> {
  static constexpr std::string_view kType = "it.Work";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
  static constexpr std::string_view kTopic = "it.work";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &it::Work::id),
                                               kbus::Field("tenant", &it::Work::tenant),
                                               kbus::Field("body", &it::Work::body, kbus::kOptional));
};

template <>
struct kbus::MessageTraits<it::WorkDone> {
  static constexpr std::string_view kType = "it.WorkDone";
  static constexpr kbus::MessageKind kKind = kbus::MessageKind::kEvent;
  static constexpr std::string_view kTopic = "it.events";
  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &it::WorkDone::id));
};
