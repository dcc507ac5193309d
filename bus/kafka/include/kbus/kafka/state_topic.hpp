#pragma once
// StateTopic: a topic used as a keyed store, one record per key (compacted on real Kafka). The
// single writer of a partition writes with Write/Erase and waits for each acknowledgement; a
// new owner rebuilds its view with Load. kbus's workflows keep their instances here
// (kbus/workflows/kafka.hpp).
//
// Thread safety: every member may be called from any thread; loads of different partitions
// run in parallel (each uses its own short-lived reader).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "kbus/kafka/config.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka {

class StateTopic {
 public:
  // Throws std::invalid_argument when a client property is refused.
  StateTopic(ClientConfig client, std::string topic);
  ~StateTopic();
  StateTopic(const StateTopic&) = delete;
  StateTopic& operator=(const StateTopic&) = delete;

  const std::string& topic() const { return topic_; }

  // Reads `partition` from its first kept record to its end as of the call, and calls `each`
  // once per key with the key's latest value and its offset (keys in byte order). A tombstone
  // removes its key; records without a key are skipped. It reads with a PartitionReader of its
  // own. Errors: kTransport when the partition cannot be read (no such topic or partition,
  // records deleted while loading), kTimeout when it was not read to its end within `timeout`,
  // kInvalidArgument for a client property the reader refuses.
  Status Load(std::int32_t partition,
              const std::function<void(std::string_view key, std::string_view value, std::int64_t offset)>& each,
              std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Sends to exactly `partition` and waits for the broker's acknowledgement.
  Status Write(std::int32_t partition, std::string_view key, std::string_view value);
  Status Erase(std::int32_t partition, std::string_view key);  // a tombstone
  const std::string& name() const { return topic_; }

 private:
  ClientConfig client_;
  std::string topic_;
  Producer producer_;
};

// The configs of a compacted state topic: cleanup.policy=compact, with a short enough
// segment.ms that old values actually get compacted away.
std::map<std::string, std::string> CompactedTopicConfigs();

}  // namespace kbus::kafka
