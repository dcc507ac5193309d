#pragma once
// Typed configuration for kbus's Kafka clients. Defaults live here, in one place; main()s fill
// these structs from flags and KBUS_* environment variables. Raw librdkafka properties pass
// through `properties` (the -X key=value of the CLI) and override what kbus sets.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "kbus/health.hpp"
#include "kbus/metrics.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka {

// A value that must not be logged: printing it shows "***".
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  const std::string& reveal() const { return value_; }
  bool empty() const { return value_.empty(); }
  friend std::ostream& operator<<(std::ostream& os, const Secret&) { return os << "***"; }

 private:
  std::string value_;
};

// True for librdkafka properties whose values are credentials (sasl.password, ssl.key.password,
// *.secret, ...): they are masked wherever kbus prints configuration.
bool IsSecretProperty(const std::string& name);

struct ClientConfig {
  // Bootstrap servers, "host:port[,host:port]". The CLI and examples also accept "embedded".
  std::string brokers = "localhost:9092";
  std::string client_id = "kbus";
  // Raw librdkafka properties; applied last, so they override kbus's choices. PartitionReader
  // keeps the few its reads rest on (kbus/kafka/partition_reader.hpp).
  std::map<std::string, std::string> properties;
};

struct ProducerConfig {
  ClientConfig client;
  std::chrono::milliseconds linger{5};
  // A background thread serves delivery reports. Off: the owner calls Producer::Poll.
  bool background_poll = true;
  // With background_poll off: called on a librdkafka thread when reports wait to be served, so
  // that an owner blocked on something else can wake up and call Poll. Must not block.
  std::function<void()> reports_ready;
};

// Which records of a partition may run at the same time.
enum class Ordering {
  kKey,        // one record per key at a time, in offset order (records without a key: any time)
  kPartition,  // one record per partition at a time, in offset order
  kUnordered,  // any record at any time; only the commit follows offset order
};

// "key", "partition", "unordered"
std::string_view OrderingName(Ordering ordering);
Result<Ordering> ParseOrdering(std::string_view name);

struct TopicPartition {
  std::string topic;
  std::int32_t partition = -1;
  bool operator==(const TopicPartition&) const = default;
};

struct WorkerConfig {
  ClientConfig client;
  std::string group;                      // consumer group id; required
  std::vector<std::string> extra_topics;  // subscribed besides the handlers' topics
  // "range", "roundrobin" or "cooperative-sticky". Every member of a group must use the same.
  std::string assignment_strategy = "range";
  std::chrono::milliseconds session_timeout{10000};
  std::chrono::milliseconds fetch_wait_max{100};
  std::chrono::milliseconds commit_interval{500};
  // How long the worker's producer lets a record wait for others to share its request
  // (librdkafka's linger.ms, 0 to 1000). At low load it is most of a hop's latency; under load
  // fuller requests move more records. Default: 1 ms for a worker, 5 ms once a workflow host
  // is attached (kbus/workflows/kafka.hpp: a step's state record and messages are all sent by
  // this producer, and 5 ms carried twice the steps of 1 ms, docs/workflows.md).
  std::optional<std::chrono::milliseconds> producer_linger;
  // Handler threads: records run in parallel on this many threads, within `ordering`.
  int handler_threads = 8;
  Ordering ordering = Ordering::kKey;
  // How long one delivery may run before it is abandoned and the record delivered again.
  // A handler may extend it (Context::ExtendVisibility); a message type may set its own.
  std::chrono::milliseconds visibility_timeout{30000};
  int max_deliveries = 5;  // then the dead-letter topic
  std::chrono::milliseconds retry_backoff_initial{200};
  std::chrono::milliseconds retry_backoff_max{10000};
  // Delay tiers for retries that should not hold anything back: after `local_attempts`
  // deliveries in the worker, a failing record moves to "<group>.retry.<delay>" (e.g.
  // "orders.retry.10s"), the next tier on each further failure, the last tier repeating, until
  // max_deliveries. Empty: every retry happens in the worker.
  std::vector<std::chrono::milliseconds> retry_tiers;
  int local_attempts = 3;
  // Records fetched but not yet finished, per partition; past it the partition is paused.
  std::size_t max_buffered_per_partition = 5000;
  // After Stop(): one deadline for the running handlers of every partition and then for the
  // outgoing sends (their results, dead letters, retry copies). No new record starts. At the
  // deadline, handlers still running are abandoned (cancelled; their records are not committed
  // and go to the next owner) and unacknowledged sends are no longer waited for; the worker
  // commits what finished and leaves the group. Run() then still waits for the abandoned
  // handlers to return, up to their stuck limit (worker.hpp). Before the exit for a stuck
  // handler, sends are waited for the shorter of this and 5 s.
  std::chrono::milliseconds shutdown_grace{10000};
  // When partitions are revoked: the same deadline, for the revoked partitions' running
  // handlers and then their outgoing sends; then what finished is committed and the partitions
  // are given up. The group's rebalance waits for this member meanwhile. Lost partitions (the
  // session expired) get no grace and no commit.
  std::chrono::milliseconds revoke_grace{3000};
  // A partition that has work (records buffered, or the broker's end beyond what was read)
  // but has neither received nor finished a record for this long, with nothing of ours holding
  // it (no run in flight, no retry wait, no slot wait), is reported stalled: a warning log line
  // and WorkerStats::stalled_partitions. Zero turns the check off.
  std::chrono::milliseconds stall_warning{60000};
  std::string host;  // for kbus-dlq-host; default: this machine's host name
  // The operations port (docs/operations.md): /healthz, /readyz and /metrics over HTTP.
  // 0: off (the default); -1: any free port (Worker::http_port() tells which), for tests.
  int http_port = 0;
  std::string http_bind_address = "0.0.0.0";
  // Where the worker's metrics and health probe go; null: a registry and a board of its own.
  // A program whose other components (a workflow host, a launcher) report too gives them all
  // the same ones, and the worker's port serves everything.
  std::shared_ptr<metrics::Registry> metrics;
  std::shared_ptr<health::Board> health;
  // Rebalance hooks, called on the poll thread. on_assigned: partitions given to this worker,
  // before any of their records reaches a handler. on_revoked: partitions taken away (revoked
  // or lost) after their in-flight work finished or was abandoned, and at shutdown those still
  // held; once per assignment. Exceptions are logged, never passed on. A hook that blocks holds
  // up the group's rebalance.
  std::function<void(const std::vector<TopicPartition>&)> on_assigned;
  std::function<void(const std::vector<TopicPartition>&)> on_revoked;
};

// "<group>.retry.<delay>", the delay written as 500ms, 10s, 5m or 1h (whole units only).
std::string RetryTierTopic(std::string_view group, std::chrono::milliseconds delay);

// Checks a worker configuration. The error names the option and the remedy.
Status Validate(const WorkerConfig& config);

// The librdkafka properties kbus sets, before `properties` is applied over them.
std::map<std::string, std::string> ProducerProperties(const ProducerConfig& config);
std::map<std::string, std::string> ConsumerProperties(const WorkerConfig& config);

// Renders properties as "k=v" lines with secret values masked, for logs and --help output.
std::string DescribeProperties(const std::map<std::string, std::string>& properties);

}  // namespace kbus::kafka
