#pragma once
// Owning wrappers for librdkafka's C handles. Nothing outside this file calls *_destroy.

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

// Builds a conf from properties; throws std::invalid_argument naming a refused property.
RdConfPtr MakeConf(const std::map<std::string, std::string>& properties);

// Routes librdkafka's log lines into kbus::Log, served from the handle's main queue (so from a
// kbus thread, never from librdkafka's own threads).
void RouteLogs(rd_kafka_conf_t* conf);
void AttachLogQueue(rd_kafka_t* rk);

// rd_kafka_new; on success the handle owns the conf (released from `conf`), on failure it is
// left with the caller. Throws std::runtime_error with librdkafka's reason.
RdKafkaPtr NewHandle(rd_kafka_type_t type, RdConfPtr& conf);

// Copies rd_kafka headers of a message into `out` (views into the message).
std::string HostName();

}  // namespace kbus::kafka::detail
