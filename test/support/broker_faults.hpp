#pragma once
// Broker faults for kbus's own tests: the embedded broker's librdkafka mock cluster, which
// EmbeddedBroker keeps out of its public API, for rd_kafka_mock_* calls (a broker down, request
// errors, slow answers). Thread safety: the mock calls may come from any thread.

#include <librdkafka/rdkafka_mock.h>

#include "kbus/kafka/embedded_broker.hpp"

namespace kbus::kafka {

struct EmbeddedBrokerFaults {
  // Valid as long as `broker`.
  static rd_kafka_mock_cluster_t* MockCluster(const EmbeddedBroker& broker) {
    return broker.mock_cluster();
  }
};

}  // namespace kbus::kafka
