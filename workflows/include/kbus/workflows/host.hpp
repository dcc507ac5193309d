#pragma once
// WorkflowHost: runs one workflow inside a bus worker. It registers the workflow's handlers,
// keeps each instance's state in a StateStore (a compacted Kafka topic in production, see
// kbus/workflows/kafka.hpp), and fires timeouts. docs/workflows.md explains the guarantees.
//
// How one message is handled:
//   1. Its workflow id comes from the starter's key extractor or the kbus-workflow-id header.
//      A message that is not on the input topic keyed by that id is re-keyed into it first, so
//      that all of an instance's messages share one partition and run one at a time.
//   2. The owner of input partition p keeps the instances of state partition p in memory,
//      loaded when p is assigned. A message whose id the instance already processed only
//      re-sends that message's outgoing messages (if it was the last one); otherwise the
//      handler runs.
//   3. The new state record (user state, version, processed ids, the outgoing messages,
//      pending timeouts) is written and acknowledged; then the outgoing messages leave; then
//      the input offset is committed (the worker does these two).
// Timeouts live in the state. The host fires a due one by sending a timeout message into the
// input topic, keyed by the workflow id, so it runs through the same path.
//
// Thread safety: Register before the worker runs; OnAssigned/OnRevoked from the worker's
// rebalance hooks; the handlers from the worker's pool; Start/Stop/Stats/Instances from any
// thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "kbus/health.hpp"
#include "kbus/metrics.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"
#include "kbus/workflows/workflow.hpp"

namespace kbus::workflows {

// Where instance records live: one record per workflow id, in the partition of the workflow's
// input messages. KafkaStateStore (kafka.hpp) in production; MemoryStateStore
// (memory_state_store.hpp, part of the test kit) in tests.
class StateStore {
 public:
  virtual ~StateStore() = default;
  // Calls `each` for every live record of `partition`.
  virtual Status Load(std::int32_t partition,
                      const std::function<void(std::string_view key, std::string_view value)>& each) = 0;
  // Writes and waits for the store's acknowledgement.
  virtual Status Write(std::int32_t partition, std::string_view key, std::string_view value) = 0;
  virtual Status Erase(std::int32_t partition, std::string_view key) = 0;
  // A store the worker can write to itself: the record that stores `value`, which a step hands
  // the worker (Context::WriteAhead) instead of waiting for Write, so that no handler thread
  // waits for the broker. nullopt, the default: the host calls Write.
  virtual std::optional<OutgoingRecord> WriteAheadRecord(std::int32_t /*partition*/, std::string_view /*key*/,
                                                         std::string_view /*value*/) {
    return std::nullopt;
  }
};

struct HostConfig {
  std::string group;  // the worker's group: dead letters go to "<group>.dlq"
  std::string host;   // for kbus-dlq-host
  // Sends a timeout's firing into the input topic (a Kafka producer in production). Must wait
  // for the acknowledgement.
  std::function<Status(const OutgoingRecord&)> send;
  // The clock, Unix epoch milliseconds; default the system clock.
  std::function<std::int64_t()> now_ms;
  // How often the timer thread looks for due timeouts, and how long a fired timeout that has
  // not run yet waits before it is fired again.
  std::chrono::milliseconds timer_tick{200};
  std::chrono::milliseconds refire_after{std::chrono::seconds(30)};
};

struct HostStats {
  std::uint64_t started = 0;      // runs begun
  std::uint64_t handled = 0;      // messages and timeouts that ran a handler
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;       // runs ended by DeadLetter
  std::uint64_t duplicates = 0;   // messages an instance had processed already
  std::uint64_t not_found = 0;    // messages for no running instance
  std::uint64_t no_id = 0;        // messages with an empty workflow id: dead-lettered
  std::uint64_t late = 0;         // messages for a completed or failed instance
  std::uint64_t rekeyed = 0;      // messages forwarded into the input topic
  std::uint64_t state_writes = 0;
  std::uint64_t state_bytes = 0;  // written, in all
  std::uint64_t unchanged = 0;    // handlers that changed nothing, so wrote nothing
  std::uint64_t timeouts_fired = 0;  // timeout messages sent
  std::uint64_t expired = 0;      // finished instances removed after their retention
  std::uint64_t instances = 0;    // in memory now, any status
};

// An instance as the host holds it (for tools, tests and the test kit).
struct InstanceInfo {
  std::string workflow_id;
  std::string status;  // running | completed | failed
  int run = 0;
  std::uint64_t version = 0;
  int schema = 0;
  std::string state_json;
  std::vector<Timeout> timeouts;
  std::vector<OutgoingRecord> outbox;  // what the last message sent
  // The result the run recorded (compact JSON, "" for none) and when it stops being served
  // (Unix epoch ms; 0 without one). Dropped from the record when it expires.
  std::string result_json;
  std::int64_t result_expires_ms = 0;
};

class WorkflowHost {
 public:
  // Throws std::invalid_argument for an unusable spec (no starter, a type handled twice) or
  // config (no group).
  WorkflowHost(const detail::Spec& spec, HostConfig config, StateStore& store);
  template <class S>
  WorkflowHost(const Workflow<S>& workflow, HostConfig config, StateStore& store)
      : WorkflowHost(workflow.spec(), std::move(config), store) {}
  ~WorkflowHost();  // Stop()
  WorkflowHost(const WorkflowHost&) = delete;
  WorkflowHost& operator=(const WorkflowHost&) = delete;

  // Registers a handler for each message type and for the workflow's timeout messages.
  void Register(HandlerRegistry& registry);
  // Topics the worker must read besides the handlers' own: the input topic.
  std::vector<std::string> ExtraTopics() const;
  const std::string& input_topic() const;
  const std::string& state_topic() const;
  // The timeout message's type name: "<name>.timeout".
  const std::string& timeout_type() const;

  // Input partitions given to / taken from this host. Loading a partition's states runs in the
  // background; its messages wait for it.
  void OnAssigned(const std::vector<std::int32_t>& partitions);
  void OnRevoked(const std::vector<std::int32_t>& partitions);

  // The timer thread. Without it, FireDue() fires what is due (the test kit does that).
  void Start();
  void Stop();
  // Sends the timeout messages due now; returns how many.
  int FireDue();

  HostStats Stats() const;
  std::optional<InstanceInfo> Instance(std::string_view workflow_id) const;

  // Reports to the operations port (docs/operations.md): the kbus_workflow_* metrics, labelled
  // with the workflow's name, in `metrics`, and the probe "workflow <name>" on `health`: ready
  // once the state of every assigned input partition is loaded (not while one loads, nor after
  // Stop), live while the timer thread Start() began runs. Call once, before the worker runs;
  // both must outlive the host.
  void ReportTo(metrics::Registry& metrics, health::Board& health);
  std::vector<InstanceInfo> Instances() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus::workflows
