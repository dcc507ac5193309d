#pragma once
// Worker: a member of a Kafka consumer group that runs the registered handlers.
//
// Delivery (docs/delivery.md): at-least-once. Handlers run on a pool of `handler_threads`
// threads, which start the records of priority lanes (HandlerOptions::lanes) by the lanes'
// weights; records of one key run one at a time in offset order (WorkerConfig::ordering). A
// record's offset is committed only after its handler finished and everything it sent, or its
// dead-letter or retry copy, was acknowledged by the broker, and every record before it too.
// Each delivery is counted in the commit metadata before it runs, so counts survive crashes.
// A delivery that outlives its visibility timeout is abandoned and delivered again; a failing
// record is retried with backoff in the worker, then through retry tier topics if configured,
// up to max_deliveries, then dead-lettered. Undecodable records, unknown command types and
// DeadLetter outcomes go to "<group>.dlq" at once; event types nobody here handles are skipped.
//
// A handler still running kStuckFactor (3) visibility timeouts after it started cannot be
// stopped safely: the worker commits what it can and exits the process with
// kExitStuckHandler, for its supervisor to restart it.
//
// Thread safety: Run() on one thread (the poll thread); handlers on the pool's threads; Stop()
// and Stats() from any thread, Stop() also from a signal handler (it only sets an atomic).
//
// Operations (docs/operations.md): with WorkerConfig::http_port set, the worker serves
// /healthz, /readyz and /metrics from its constructor on; the port is bound there, so a port in
// use is a setup error. Its metrics are kbus_worker_*, labelled with the group; its probe on the
// health board is "worker <group>":
// - live while the poll loop turns (it turned within max(30 s, 3 session timeouts), or the
//   worker is stopping) and no handler has run past kStuckFactor visibility timeouts;
// - ready while the group coordinator is reachable (librdkafka's group state "up", from its
//   statistics once a second), the member has joined the group (an assignment, possibly
//   empty, since it last lost its membership) and the worker's producer has learned the
//   cluster's topics (Producer::LearnTopics); never once Stop() was called. A worker whose
//   brokers are not up yet keeps trying, not ready, and logs "waiting for the brokers".

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
  std::uint64_t abandoned = 0;      // deliveries that outlived their visibility timeout
  std::uint64_t delayed = 0;        // copies acknowledged by a retry tier topic
  std::uint32_t assigned_partitions = 0;
  std::uint32_t paused_partitions = 0;   // not fetched now: buffer full, retry wait or no free slot
  std::uint32_t stalled_partitions = 0;  // have work and have not moved (WorkerConfig::stall_warning)
};

// The process exit code when a handler is stuck (EX_SOFTWARE).
inline constexpr int kExitStuckHandler = 70;

class Worker {
 public:
  // Validates the configuration (throws std::invalid_argument naming the option). The registry
  // must outlive the worker.
  Worker(WorkerConfig config, const HandlerRegistry& handlers);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Joins the group and handles records until Stop(); then starts no new record, gives the
  // running handlers and then their outgoing sends until shutdown_grace (one deadline for both),
  // abandons what still runs, commits what finished, and leaves the group. Returns once the
  // abandoned handlers have returned; one still running kStuckFactor visibility timeouts after
  // it started makes the process exit with kExitStuckHandler instead.
  void Run();
  void Stop() noexcept;

  WorkerStats Stats() const;

  // Where the worker reports (WorkerConfig::metrics and ::health, or its own): other components
  // of the process register there to be served on the same port.
  metrics::Registry& metrics();
  health::Board& health();
  // The operations port being served; 0 when off.
  int http_port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::kafka
