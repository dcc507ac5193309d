#pragma once
// Topic administration through the Kafka admin API (real brokers; the embedded broker has no
// admin API, create its topics with EmbeddedBroker::CreateTopic).

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kbus/kafka/config.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka {

struct TopicSpec {
  std::string name;
  int partitions = 4;
  int replication_factor = -1;  // -1: the broker's default
  std::map<std::string, std::string> configs;  // e.g. cleanup.policy=compact
};

struct TopicInfo {
  std::string name;
  int partitions = 0;
};

// Creates topics; one that already exists counts as success when `if_not_exists`.
Status CreateTopics(const ClientConfig& client, const std::vector<TopicSpec>& topics,
                    bool if_not_exists = true,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Topics the cluster knows, with their partition counts (from metadata).
Result<std::vector<TopicInfo>> ListTopics(const ClientConfig& client,
                                          std::chrono::milliseconds timeout = std::chrono::seconds(10));

// How far consumer group `group` is behind on `topics`: per topic, the records between the
// group's committed offsets and the ends of the partitions, summed. Topics where the group
// committed nothing are left out, and so are partitions without a committed offset. One
// OffsetFetch and one ListOffsets request, without joining the group (works on the embedded
// broker too).
Result<std::map<std::string, std::int64_t>> GroupLag(const ClientConfig& client, const std::string& group,
                                                     const std::vector<TopicInfo>& topics,
                                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A topic's effective configuration (DescribeConfigs): every entry the broker reports, defaults
// included, e.g. "cleanup.policy" -> "compact". Sensitive values come back empty. An unknown
// topic is an error naming it.
Result<std::map<std::string, std::string>> DescribeTopicConfigs(
    const ClientConfig& client, const std::string& topic,
    std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace kbus::kafka
