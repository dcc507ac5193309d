#pragma once
// The worker's consumer: the librdkafka handle, its subscription, and what the worker tells it
// or asks it about the assigned partitions (pause and resume, lag, stalls). Its callbacks
// (rebalances, statistics, errors) and everything else are served on the poll thread, from
// rd_kafka_consumer_poll.

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../rd_handles.hpp"
#include "kbus/kafka/config.hpp"
#include "partition_book.hpp"
#include "series.hpp"

namespace kbus::kafka::worker {

class Consumer {
 public:
  struct Callbacks {
    void* opaque = nullptr;
    void (*rebalance)(rd_kafka_t*, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*, void*) = nullptr;
    int (*stats)(rd_kafka_t*, char*, size_t, void*) = nullptr;  // null: no statistics
    void (*error)(rd_kafka_t*, int, const char*, void*) = nullptr;
  };

  Consumer(const WorkerConfig& config, Counters& counters) : config_(config), counters_(counters) {}

  // Creates the handle with `properties` and subscribes to `topics` (sorted, unique).
  void Open(const std::map<std::string, std::string>& properties, const Callbacks& callbacks,
            const std::vector<std::string>& topics);

  rd_kafka_t* get() const { return handle_.get(); }
  rd_kafka_queue_t* queue() const { return queue_.get(); }

  // Takes or gives up `parts` in a rebalance (served from the rebalance callback on `rk`).
  // Assigned partitions start fetching, whatever librdkafka kept from before.
  static void Assign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative);
  static void Unassign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool cooperative);

  // Pauses or resumes fetching of `p` so that librdkafka's state matches the book's reasons
  // (PartitionBook::WantsPause): the one place that tells librdkafka.
  void SyncPause(Partition& p);
  // Sets each partition's lag: its high watermark (as librdkafka last heard it) minus where the
  // next commit points.
  void UpdateLag(PartitionBook& book);
  // Reports partitions that have work and have not moved for stall_warning while nothing of the
  // worker holds them (see the .cpp); also pauses or resumes again what librdkafka refused.
  void CheckStalls(PartitionBook& book, Clock::time_point now);

  // Unsubscribes, and polls until `revoked()` says the resulting revoke was served (at most
  // 10 s), so that closing has nothing left to revoke; then closes.
  void Close(const std::function<bool()>& revoked);

 private:
  const WorkerConfig& config_;
  Counters& counters_;
  detail::RdKafkaPtr handle_;
  detail::RdQueuePtr queue_;
};

}  // namespace kbus::kafka::worker
