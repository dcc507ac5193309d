#pragma once
// Shared pieces of the scheduler's integration tests: a scheduler on its own thread, topic
// names of a test's own, and a reader that follows a topic and notes what arrived.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kbus/kafka/partition_reader.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/schedules/scheduler.hpp"
#include "test_broker.hpp"

namespace sit {

using namespace std::chrono_literals;
using kbus::test::TestBroker;

inline kbus::kafka::ClientConfig Client() {
  kbus::kafka::ClientConfig c;
  c.brokers = TestBroker::Get().bootstrap();
  return c;
}

inline kbus::kafka::ProducerConfig ProducerOptions() {
  kbus::kafka::ProducerConfig p;
  p.client = Client();
  return p;
}

// A scheduler's topics and group, unique to the test, created with `partitions` each.
inline kbus::schedules::SchedulerConfig Config(const std::string& prefix, int partitions = 2) {
  kbus::schedules::SchedulerConfig c;
  c.client = Client();
  c.group = TestBroker::UniqueName(prefix + "-scheduler");
  c.pending_topic = TestBroker::UniqueName(prefix + "-pending");
  c.schedules_topic = TestBroker::UniqueName(prefix + "-schedules");
  c.run_topics = {};
  c.session_timeout = 6s;
  TestBroker::Get().CreateTopic(c.pending_topic, partitions);
  TestBroker::Get().CreateTopic(c.schedules_topic, partitions);
  return c;
}

// A Scheduler running on its own thread until destroyed.
class Running {
 public:
  explicit Running(kbus::schedules::SchedulerConfig config)
      : scheduler_(std::make_unique<kbus::schedules::Scheduler>(std::move(config))),
        thread_([this] { scheduler_->Run(); }) {}
  ~Running() { Stop(); }
  void Stop() {
    if (thread_.joinable()) {
      scheduler_->Stop();
      thread_.join();
    }
  }
  kbus::schedules::Scheduler& scheduler() { return *scheduler_; }
  // Owns `partitions` partitions and has read them all to their end.
  bool Ready(std::uint32_t partitions) const {
    const auto s = scheduler_->Stats();
    return s.partitions == partitions && s.loading == 0;
  }

 private:
  std::unique_ptr<kbus::schedules::Scheduler> scheduler_;
  std::thread thread_;
};

// Follows a topic from its beginning on its own thread and keeps every record.
class Follower {
 public:
  struct Arrival {
    kbus::kafka::ReaderRecord record;
    std::chrono::system_clock::time_point seen;
    std::optional<std::string> Header(std::string_view name) const {
      std::optional<std::string> out;
      for (const auto& h : record.headers) {
        if (h.name == name) out = h.value.value_or("");
      }
      return out;
    }
  };

  explicit Follower(const std::string& topic) {
    auto reader = kbus::kafka::PartitionReader::Open(Client(), {.topic = topic});
    if (!reader.ok()) throw std::runtime_error(reader.error().message());
    reader_ = std::move(*reader);
    auto parts = reader_->Partitions();
    if (!parts.ok()) throw std::runtime_error(parts.error().message());
    std::vector<kbus::kafka::PartitionSpan> spans;
    for (const auto& p : *parts) spans.push_back({.partition = p.partition});
    if (auto s = reader_->Assign(spans); !s.ok()) throw std::runtime_error(s.error().message());
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        auto next = reader_->Next(50ms);
        if (!next.ok() || !*next) continue;
        std::lock_guard lock(mu_);
        arrivals_.push_back({std::move(**next), std::chrono::system_clock::now()});
      }
    });
  }
  ~Follower() {
    stop_ = true;
    thread_.join();
  }
  std::vector<Arrival> Arrivals() const {
    std::lock_guard lock(mu_);
    return arrivals_;
  }
  std::size_t Count() const {
    std::lock_guard lock(mu_);
    return arrivals_.size();
  }

 private:
  std::unique_ptr<kbus::kafka::PartitionReader> reader_;
  mutable std::mutex mu_;
  std::vector<Arrival> arrivals_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

inline std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace sit
