#pragma once
// librdkafka's C handles, owned, and the steps every kbus client takes to make its handle:
// MakeConf, RouteLogs, NewHandle. Private to kbus::kafka's sources (and bench/, which measures
// raw librdkafka against kbus): no public header and no tool includes it. Nothing outside this
// file calls *_destroy. The readers that join no group (dead letters, state topics, `kbus
// tail`) share kbus/kafka/partition_reader.hpp instead of handles of their own.

#include <librdkafka/rdkafka.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>

namespace kbus::kafka::detail {

template <class T, void (*Destroy)(T*)>
struct RdDeleter {
  void operator()(T* p) const noexcept {
    if (p) Destroy(p);
  }
};

using RdKafkaPtr = std::unique_ptr<rd_kafka_t, RdDeleter<rd_kafka_t, &rd_kafka_destroy>>;
using RdConfPtr = std::unique_ptr<rd_kafka_conf_t, RdDeleter<rd_kafka_conf_t, &rd_kafka_conf_destroy>>;
using RdMessagePtr =
    std::unique_ptr<rd_kafka_message_t, RdDeleter<rd_kafka_message_t, &rd_kafka_message_destroy>>;
using RdPartitionListPtr =
    std::unique_ptr<rd_kafka_topic_partition_list_t,
                    RdDeleter<rd_kafka_topic_partition_list_t, &rd_kafka_topic_partition_list_destroy>>;
using RdHeadersPtr = std::unique_ptr<rd_kafka_headers_t, RdDeleter<rd_kafka_headers_t, &rd_kafka_headers_destroy>>;
using RdQueuePtr = std::unique_ptr<rd_kafka_queue_t, RdDeleter<rd_kafka_queue_t, &rd_kafka_queue_destroy>>;
using RdEventPtr = std::unique_ptr<rd_kafka_event_t, RdDeleter<rd_kafka_event_t, &rd_kafka_event_destroy>>;
using RdMetadataPtr =
    std::unique_ptr<const rd_kafka_metadata_t, RdDeleter<const rd_kafka_metadata_t, &rd_kafka_metadata_destroy>>;

// Builds a conf from properties; throws std::invalid_argument naming a refused property.
RdConfPtr MakeConf(const std::map<std::string, std::string>& properties);

// Routes librdkafka's log lines into kbus::Log (log.queue and a noexcept log callback). The
// lines wait on the handle's main queue until a poll call serves them, so they are written on a
// kbus thread, never on librdkafka's own. A consumer that forwards its main queue
// (rd_kafka_poll_set_consumer) serves them from rd_kafka_consumer_poll.
void RouteLogs(rd_kafka_conf_t* conf);
// Points the handle's log queue at its main queue; NewHandle does it.
void AttachLogQueue(rd_kafka_t* rk);

// rd_kafka_new, then AttachLogQueue; on success the handle owns the conf (released from
// `conf`), on failure it is left with the caller. Throws std::runtime_error with librdkafka's
// reason.
RdKafkaPtr NewHandle(rd_kafka_type_t type, RdConfPtr& conf);

// This machine's host name (kbus-dlq-host); "unknown" when it cannot be read.
std::string HostName();

}  // namespace kbus::kafka::detail
