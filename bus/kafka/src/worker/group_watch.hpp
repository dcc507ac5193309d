#pragma once
// What the worker knows of its consumer group, for readiness and for the operator: whether the
// group coordinator is reachable and the member has joined (from librdkafka's statistics and
// the rebalances), the group's state, and the last client error; the worker's health report;
// and the application's rebalance hooks. Logs a long wait for the brokers. Written on the poll
// thread, read by health probes on any thread.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/health.hpp"
#include "kbus/kafka/config.hpp"
#include "record_view.hpp"

namespace kbus::kafka::worker {

class GroupWatch {
 public:
  // The brokers are unreachable this long before the worker says it waits for them, then again
  // every kWaitLogEvery while it lasts.
  static constexpr std::chrono::seconds kWaitLogAfter{3};
  static constexpr std::chrono::seconds kWaitLogEvery{30};

  GroupWatch(std::string group, std::string brokers) : group_(std::move(group)), brokers_(std::move(brokers)) {}

  // librdkafka's statistics text: its consumer group state says whether the coordinator's
  // connection is up ("up") and the member is in the group ("steady").
  void OnStats(std::string_view json);
  // A client-level error. Unreachable brokers are librdkafka's own log lines and the "waiting
  // for the brokers" line, which names the last error; the rest are logged here.
  void OnError(rd_kafka_resp_err_t err, const char* reason);
  // A consumer error on a record.
  void NoteError(std::string error) { last_error_ = std::move(error); }

  // Without statistics (statistics.interval.ms=0) readiness follows the rebalances alone.
  void SetStatsEnabled(bool enabled) { stats_enabled_ = enabled; }
  void SetJoined(bool joined) { joined_.store(joined, std::memory_order_relaxed); }

  bool reachable() const { return !stats_enabled_ || coordinator_up_.load(std::memory_order_relaxed); }
  bool joined() const { return joined_.load(std::memory_order_relaxed); }
  std::string state() const;  // librdkafka's "<state>/<join state>"

  // What the worker's health report (docs/operations.md) is made of besides the group.
  struct Facts {
    Clock::duration silence{};        // since the poll loop last turned
    Clock::duration silence_limit{};  // more is a hang
    bool stuck = false;               // a handler ran past stuck_factor visibility timeouts
    int stuck_factor = 0;
    bool stopping = false;
    bool producer_warm = true;  // the outgoing producer has learned the cluster's topics
    std::int64_t running = 0;   // handler runs executing now
    std::uint32_t assigned = 0, paused = 0, stalled = 0;
  };
  health::Report Report(const Facts& facts) const;

  using Hook = std::function<void(const std::vector<TopicPartition>&)>;
  // Tells `hook` (WorkerConfig::on_assigned) of the partitions it was not told of yet.
  void Assigned(const rd_kafka_topic_partition_list_t* parts, const Hook& hook);
  // Tells `hook` (WorkerConfig::on_revoked) of those of `parts` it was told were assigned; of
  // all of those with `parts` null.
  void Revoked(const rd_kafka_topic_partition_list_t* parts, const Hook& hook);

 private:
  const std::string group_;
  const std::string brokers_;
  bool stats_enabled_ = true;
  std::atomic<bool> coordinator_up_{false};
  std::atomic<bool> joined_{false};
  mutable std::mutex mu_;
  std::string state_ = "init";
  Clock::time_point unreachable_since_{};
  Clock::time_point next_wait_log_{};
  bool wait_logged_ = false;
  std::string last_error_;
  std::vector<TopicPartition> hooked_;  // reported to on_assigned, not yet to on_revoked
};

}  // namespace kbus::kafka::worker
