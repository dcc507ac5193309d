#pragma once
// EmbeddedBroker: librdkafka's mock cluster, a Kafka-protocol broker inside this process, for
// demos, local development and tests. Other processes reach it over loopback.
//
// Know its limits (docs/testing.md): it keeps about 5 MiB per partition and drops older data
// silently, forgets everything when the process ends, has no admin API (create topics here),
// refuses offset commits during a rebalance, and waits session.timeout.ms on every rebalance.
//
// Thread safety: all members may be called from any thread.

#include <memory>
#include <string>
#include <string_view>

#include "kbus/result.hpp"

struct rd_kafka_mock_cluster_s;  // librdkafka's mock cluster: never handed out (see below)

namespace kbus::kafka {

class EmbeddedBroker {
 public:
  struct Options {
    int brokers = 1;
    // 0: clients bootstrap straight to the mock's ephemeral port. Otherwise a relay listens on
    // 127.0.0.1:port and forwards bootstrap connections, so clients can use a fixed address.
    int port = 0;
  };

  // Throws std::runtime_error when the cluster or the relay cannot start.
  explicit EmbeddedBroker(Options options);
  EmbeddedBroker() : EmbeddedBroker(Options{}) {}
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // "127.0.0.1:port[,...]" for bootstrap.servers.
  const std::string& bootstrap() const;

  // Creates a topic. Topics a producer or consumer names that do not exist are auto-created
  // with 4 partitions.
  Status CreateTopic(std::string_view name, int partitions);

 private:
  // Fault injection (librdkafka's rd_kafka_mock_* calls) is not part of this API: kbus's own
  // tests reach the cluster through EmbeddedBrokerFaults (test/support/broker_faults.hpp).
  friend struct EmbeddedBrokerFaults;
  rd_kafka_mock_cluster_s* mock_cluster() const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// When config.brokers is "embedded", starts an in-process broker and points `brokers` at it.
// Returns the broker (keep it alive as long as the clients), or nullptr when not requested.
std::unique_ptr<EmbeddedBroker> StartEmbeddedIfRequested(std::string& brokers);

}  // namespace kbus::kafka
