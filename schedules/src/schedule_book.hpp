#pragma once
// ScheduleBook: the schedules of the partitions of the schedules topic this scheduler owns. It
// folds each partition's records into specs and states while the partition loads (snapshots
// replace, requests queue), then, once the partition is read to its end, applies requests and
// evaluates ticks: it sends what they ask for and writes each changed schedule's snapshot,
// after the sends were acknowledged.
//
// Thread safety: none; the scheduler's loop thread owns it (Stats under the scheduler's lock).

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/kafka/producer.hpp"
#include "kbus/schedules/schedule.hpp"
#include "kbus/schedules/scheduler.hpp"

namespace kbus::schedules {

class ScheduleBook {
 public:
  struct RecordView {
    std::string_view key;
    std::optional<std::string_view> value;  // nullopt: a tombstone
  };
  struct Counts {
    std::uint64_t schedules = 0;
    std::uint32_t partitions = 0;
    std::uint32_t loading = 0;
    std::uint64_t fired = 0;
  };

  ScheduleBook(const SchedulerConfig& config, kafka::Producer& producer) : config_(config), producer_(producer) {}

  void Assign(std::int32_t partition);
  void Revoke(std::int32_t partition);
  void Loaded(std::int32_t partition);
  void Apply(std::int32_t partition, std::int64_t offset, RecordView record);
  void Tick(std::int64_t now_ms);
  Counts Stats() const;

 private:
  struct Entry {
    ScheduleSpec spec;
    std::optional<Calendar> calendar;
    ScheduleState state;
    std::deque<Request> requests;  // to apply, in order
    std::optional<std::int64_t> wake_ms;  // when Evaluate has something to do; nullopt: now
  };
  struct Partition {
    bool live = false;
    std::map<std::string, Entry, std::less<>> schedules;
    // Requests for schedules not there (a put of a new one, or anything for a deleted one).
    std::map<std::string, std::deque<Request>, std::less<>> orphans;
  };

  void Settle(std::int32_t partition, Partition& part, std::int64_t now_ms);
  bool Commit(std::int32_t partition, const std::string& id, const Plan& plan, const Entry* entry,
              const std::string& rejected, const std::deque<std::string>* applied);

  const SchedulerConfig& config_;
  kafka::Producer& producer_;
  std::map<std::int32_t, Partition> partitions_;
  std::uint64_t fired_ = 0;
};

}  // namespace kbus::schedules
