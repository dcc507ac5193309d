#pragma once
// Worker: a member of a Kafka consumer group that runs the registered handlers.
//
// Delivery (docs/delivery.md): at-least-once. A record's offset is committed only after its
// handler finished and everything it sent, or its dead-letter copy, was acknowledged by the
// broker. Records of one partition are handled in order; a failing record is retried with
// exponential backoff and jitter up to max_deliveries, holding back only its own partition, then
// dead-lettered. Undecodable records, unknown command types and DeadLetter outcomes go to
// "<group>.dlq" at once; event types nobody here handles are skipped and counted.
//
// Thread safety: Run() on one thread (the poll thread, where handlers run); Stop() and Stats()
// from any thread, Stop() also from a signal handler (it only sets an atomic).

#include <atomic>
#include <cstdint>
#include <memory>

#include "kbus/handler_registry.hpp"
#include "kbus/kafka/config.hpp"

namespace kbus::kafka {

struct WorkerStats {
  std::uint64_t handled = 0;        // acked by a handler
  std::uint64_t skipped = 0;        // events of types this group does not handle
  std::uint64_t retried = 0;        // deliveries that failed and were scheduled again
  std::uint64_t dead_lettered = 0;  // copies acknowledged by the dead-letter topic
  std::uint64_t committed = 0;      // successful offset commits
  std::uint32_t assigned_partitions = 0;
};

class Worker {
 public:
  // Validates the configuration (throws std::invalid_argument naming the option). The registry
  // must outlive the worker.
  Worker(WorkerConfig config, const HandlerRegistry& handlers);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Joins the group and handles records until Stop(); then finishes the record in hand, waits
  // up to shutdown_grace for outgoing sends, commits, and leaves the group.
  void Run();
  void Stop() noexcept;

  WorkerStats Stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::kafka
