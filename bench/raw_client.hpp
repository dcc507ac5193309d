#pragma once
// The benchmarks' plain librdkafka clients: how kbus-bench and kbus-workflow-bench build the raw
// consumers and producers of their baselines, and the pieces every raw loop repeats (subscribe,
// produce with a retry on a full queue, store an offset, read a header, watermarks, close).
//
// A raw consumer gets the librdkafka properties a kbus Worker with the same WorkerConfig gets
// (kbus::kafka::ConsumerProperties, then client.properties), except for commits: a Worker
// commits itself, a raw loop stores offsets (enable.auto.offset.store=false) and librdkafka
// commits what was stored every commit_interval (auto-commit). A raw producer gets what a
// kbus::kafka::Producer gets (ProducerProperties: idempotent, acks=all, linger, murmur2_random).
// So a baseline differs from kbus in its loop only, never in a setting nobody sees.
//
// Built on kbus's owning handles (bus/kafka/src/rd_handles.hpp, a private library header: the
// benchmarks are in-tree), so nothing here calls *_destroy.
//
// Thread safety: librdkafka's. One thread polls a consumer; a producer may be used from any.

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "kbus/kafka/config.hpp"
#include "kbus/record.hpp"
#include "rd_handles.hpp"

namespace bench::raw {

using kbus::kafka::detail::RdConfPtr;
using kbus::kafka::detail::RdEventPtr;
using kbus::kafka::detail::RdHeadersPtr;
using kbus::kafka::detail::RdKafkaPtr;
using kbus::kafka::detail::RdMessagePtr;
using kbus::kafka::detail::RdQueuePtr;
using RdListPtr = kbus::kafka::detail::RdPartitionListPtr;

using Properties = std::map<std::string, std::string>;

inline std::string Ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }

// A conf from properties. librdkafka logs only errors unless `properties` says otherwise (its
// log lines go to stderr, between the benchmark's figures). Throws std::invalid_argument naming
// a refused property.
inline RdConfPtr Conf(Properties properties) {
  properties.emplace("log_level", "3");
  return kbus::kafka::detail::MakeConf(properties);
}

// The consumer of a raw loop that does what a Worker configured by `config` does; `extra`
// overrides. Callbacks (rebalance, opaque) go on the conf before NewClient.
inline RdConfPtr ConsumerConf(const kbus::kafka::WorkerConfig& config, const Properties& extra = {}) {
  Properties p = kbus::kafka::ConsumerProperties(config);
  for (const auto& [k, v] : config.client.properties) p[k] = v;
  p["enable.auto.commit"] = "true";
  p["auto.commit.interval.ms"] = Ms(config.commit_interval);
  p["enable.auto.offset.store"] = "false";
  for (const auto& [k, v] : extra) p[k] = v;
  return Conf(std::move(p));
}

// The producer of a raw loop that sends what a kbus::kafka::Producer configured by `config`
// would; `extra` overrides.
inline RdConfPtr ProducerConf(const kbus::kafka::ProducerConfig& config, const Properties& extra = {}) {
  Properties p = kbus::kafka::ProducerProperties(config);
  for (const auto& [k, v] : config.client.properties) p[k] = v;
  for (const auto& [k, v] : extra) p[k] = v;
  return Conf(std::move(p));
}

// rd_kafka_new. The handle owns the conf only if this succeeds, so it is released after the
// check. Throws std::runtime_error with librdkafka's reason.
inline RdKafkaPtr NewClient(rd_kafka_type_t type, RdConfPtr& conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (rk == nullptr) throw std::runtime_error(std::string("cannot create a Kafka client: ") + err);
  conf.release();
  return RdKafkaPtr(rk);
}

inline RdKafkaPtr NewClient(rd_kafka_type_t type, const Properties& properties) {
  RdConfPtr conf = Conf(properties);
  return NewClient(type, conf);
}

// Joins the consumer's group on `topic`, rebalances, logs and commit results served by
// rd_kafka_consumer_poll.
inline void Subscribe(rd_kafka_t* consumer, const std::string& topic) {
  rd_kafka_poll_set_consumer(consumer);
  RdListPtr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer, topics.get())) {
    throw std::runtime_error("cannot subscribe to " + topic + ": " + rd_kafka_err2str(err));
  }
}

// Reads partitions 0..partitions-1 of `topic` from `offset`, outside any group.
inline void Assign(rd_kafka_t* consumer, const std::string& topic, int partitions, std::int64_t offset) {
  rd_kafka_poll_set_consumer(consumer);
  RdListPtr list(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = offset;
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer, list.get())) {
    throw std::runtime_error("cannot assign " + topic + ": " + rd_kafka_err2str(err));
  }
}

// Leaves the group (or the assignment); a failure is only reported, the handle goes anyway.
inline void Close(rd_kafka_t* consumer) {
  if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer)) {
    std::fprintf(stderr, "warning: consumer close: %s\n", rd_kafka_err2str(err));
  }
}

// rd_kafka_offsets_store with one cached 1-element list per partition. librdkafka caches the
// partition's handle inside a list element on first use and trusts it afterwards, so an element
// must never be reused for another partition; a list per partition is also cheaper than a new
// list per record. Clear() before the consumer handle goes: the lists hold partition references.
class OffsetStore {
 public:
  // Stores `next` (the offset after the last record done) for topic[partition].
  rd_kafka_resp_err_t Store(rd_kafka_t* consumer, const char* topic, std::int32_t partition, std::int64_t next) {
    const auto p = static_cast<std::size_t>(partition);
    if (p >= lists_.size()) lists_.resize(p + 1);
    if (!lists_[p]) {
      lists_[p].reset(rd_kafka_topic_partition_list_new(1));
      rd_kafka_topic_partition_list_add(lists_[p].get(), topic, partition);
    }
    lists_[p]->elems[0].offset = next;
    return rd_kafka_offsets_store(consumer, lists_[p].get());
  }
  // The record `m` is done.
  rd_kafka_resp_err_t Done(rd_kafka_t* consumer, const rd_kafka_message_t* m) {
    return Store(consumer, rd_kafka_topic_name(m->rkt), m->partition, m->offset + 1);
  }
  void Clear() { lists_.clear(); }

 private:
  std::vector<RdListPtr> lists_;  // one topic per store: the benchmarks' loops read one
};

// Makes `producer` know `topic`'s partitions and leaders now. A producer learns a topic it has
// not seen on its first record and, in librdkafka 2.0, asks the broker about it only on its next
// once-a-second topic scan, unless the topic is in its metadata cache already: without this,
// that first record waits up to a second (seen with debug=topic,metadata). Throws when the
// topic has no leaders after 5 s.
inline void LearnTopic(rd_kafka_t* producer, const std::string& topic) {
  using MetadataPtr =
      std::unique_ptr<const rd_kafka_metadata_t,
                      kbus::kafka::detail::RdDeleter<const rd_kafka_metadata_t, &rd_kafka_metadata_destroy>>;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(producer, 1, nullptr, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      MetadataPtr owned(md);
      for (int i = 0; i < md->topic_cnt; ++i) {
        const rd_kafka_metadata_topic_t& t = md->topics[i];
        if (topic == t.topic && t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0) return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a new topic may take a moment
  } while (std::chrono::steady_clock::now() < deadline);
  throw std::runtime_error("no leaders for " + topic + " after 5 s");
}

// Queues one record (copied). On a full queue it serves the producer's callbacks for 5 ms and
// tries again; any other refusal throws. `headers` are owned by the record once queued;
// `opaque` comes back in the delivery report as m->_private.
inline void Produce(rd_kafka_t* producer, const char* topic, std::int32_t partition, std::string_view key,
                    std::string_view value, RdHeadersPtr headers = {}, void* opaque = nullptr) {
  for (;;) {
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers.get()), RD_KAFKA_V_OPAQUE(opaque),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      headers.release();  // owned by the queued record now
      return;
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      throw std::runtime_error(std::string("produce to ") + topic + " failed: " + rd_kafka_err2str(err));
    }
    rd_kafka_poll(producer, 5);
  }
}

// A kbus record, envelope headers and all, so a raw consumer sees what kbus sends.
inline void Produce(rd_kafka_t* producer, const kbus::OutgoingRecord& r, std::int32_t partition,
                    void* opaque = nullptr) {
  RdHeadersPtr headers(rd_kafka_headers_new(r.headers.size()));
  for (const auto& h : r.headers) {
    rd_kafka_header_add(headers.get(), h.name.data(), static_cast<ssize_t>(h.name.size()), h.value.data(),
                        static_cast<ssize_t>(h.value.size()));
  }
  Produce(producer, r.topic.c_str(), partition, r.key, r.payload, std::move(headers), opaque);
}

// Waits for every queued record; throws if some are still queued after `timeout`.
inline void Flush(rd_kafka_t* producer, std::chrono::milliseconds timeout) {
  if (rd_kafka_resp_err_t err = rd_kafka_flush(producer, static_cast<int>(timeout.count()))) {
    throw std::runtime_error(std::string("flush failed: ") + rd_kafka_err2str(err));
  }
}

// The last value of header `name`; empty when absent.
inline std::string_view Header(const rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* headers = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || value == nullptr) {
    return {};
  }
  return {static_cast<const char*>(value), size};
}

// The low and high watermarks of topic[partition], asked of the broker. Throws on failure.
inline std::pair<std::int64_t, std::int64_t> Watermarks(rd_kafka_t* rk, const std::string& topic,
                                                        std::int32_t partition) {
  std::int64_t low = -1, high = -1;
  if (rd_kafka_resp_err_t err =
          rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high, 10000)) {
    throw std::runtime_error("cannot read the watermarks of " + topic + "[" + std::to_string(partition) +
                             "]: " + rd_kafka_err2str(err));
  }
  return {low, high};
}

// Deletes a topic a run created on a real broker; a failure is only reported.
inline void DeleteTopic(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_DeleteTopic_t* del = rd_kafka_DeleteTopic_new(topic.c_str());
  RdQueuePtr queue(rd_kafka_queue_new(rk));
  rd_kafka_DeleteTopics(rk, &del, 1, nullptr, queue.get());
  rd_kafka_DeleteTopic_destroy(del);
  RdEventPtr event(rd_kafka_queue_poll(queue.get(), 30000));
  if (!event || rd_kafka_event_error(event.get())) {
    std::fprintf(stderr, "warning: could not delete topic %s\n", topic.c_str());
  }
}

}  // namespace bench::raw
