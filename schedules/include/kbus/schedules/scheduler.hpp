#pragma once
// Scheduler: the service that delivers delayed messages and fires recurring schedules
// (docs/schedules.md). Run it in one or more processes: its instances form a consumer group
// over the pending topic and the schedules topic, and each partition has one owner at a time,
// the only instance that delivers its messages and fires its schedules.
//
// Delayed messages (SendOptions::delay / deliver_at) wait in the pending topic, keyed by message
// id. The owner of a partition reads it from its beginning when it is assigned, keeps a small
// index entry per waiting message (due time and offset, not the record), reads each record back
// `prefetch` before it falls due, and at its time sends it to its destination with its envelope
// unchanged, then writes a tombstone for it. A crash between the two sends the message again
// with the same id on the next owner: a duplicate receivers can recognise, never a loss.
//
// Recurring schedules (kbus/schedules/schedule.hpp) live in the schedules topic, keyed by
// schedule id: definitions and the owner's state (last tick, runs) in one record per schedule.
// The owner fires each tick's command, id derived from (schedule id, tick), then records the
// tick: a crash between the two fires the tick again with the same id.
//
// Thread safety: Run() on one thread; Stop() and Stats() from any thread, Stop() also from a
// signal handler (it only sets an atomic).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kbus/context.hpp"
#include "kbus/health.hpp"
#include "kbus/kafka/config.hpp"
#include "kbus/metrics.hpp"

namespace kbus::schedules {

inline constexpr std::string_view kDefaultSchedulesTopic = "kbus.schedules";
inline constexpr std::string_view kDefaultSchedulerGroup = "kbus.scheduler";

struct SchedulerConfig {
  // Every property applies (security, timeouts...) but those the scheduler's reading rests on,
  // which it sets itself: group.id, group.instance.id, enable.auto.commit,
  // enable.auto.offset.store, enable.partition.eof, auto.offset.reset,
  // partition.assignment.strategy (the eager range assignor) and log.queue.
  kafka::ClientConfig client;
  std::string group = std::string(kDefaultSchedulerGroup);
  std::string pending_topic = std::string(kDefaultPendingTopic);
  std::string schedules_topic = std::string(kDefaultSchedulesTopic);
  // How long before its time a delayed message is read back from Kafka. It bounds nothing but
  // memory: a message read back waits in memory until it is due.
  std::chrono::milliseconds prefetch{5000};
  // Where the events of scheduled runs arrive (for schedules whose overlap policy waits for a
  // run to end, docs/schedules.md). An event whose correlation id names a schedule's run is
  // passed to the schedule's owner; the instances share these topics' partitions and commit
  // what they passed on. Launch progress, heartbeats and starts are not passed on.
  std::vector<std::string> run_topics = {"kbus.launcher.events", "kbus.workflows.events"};
  // Command types a schedule may send; a schedule of another type is refused when it is
  // created (`kbus schedules create` says so). Empty: any type.
  std::vector<std::string> known_types;
  // Partitions of a crashed instance move to the others after this long.
  std::chrono::milliseconds session_timeout{10000};
  // Where the scheduler reports; null: a registry and a board of its own.
  std::shared_ptr<metrics::Registry> metrics;
  std::shared_ptr<health::Board> health;
};

// Checks a configuration; the error names the option.
Status Validate(const SchedulerConfig& config);

struct SchedulerStats {
  std::uint64_t pending = 0;     // delayed messages waiting in the partitions owned here
  std::uint64_t delivered = 0;   // delayed messages delivered by this instance (acknowledged)
  std::uint64_t schedules = 0;   // schedules in the partitions owned here
  std::uint64_t fired = 0;       // schedule ticks fired by this instance (acknowledged)
  std::uint32_t partitions = 0;  // partitions owned (both topics)
  std::uint32_t loading = 0;     // of which not read to their end yet: nothing fires there
};

class Scheduler {
 public:
  // Throws std::invalid_argument naming a bad option or a refused client property.
  explicit Scheduler(SchedulerConfig config);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Joins the group and works until Stop(); then finishes the sends under way (up to 10 s) and
  // leaves the group.
  void Run();
  void Stop() noexcept;

  SchedulerStats Stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::schedules
