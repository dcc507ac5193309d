#include "kbus/kafka/state_topic.hpp"

#include <map>
#include <optional>

#include "kbus/log.hpp"
#include "rd_handles.hpp"

namespace kbus::kafka {

namespace {

ProducerConfig StateProducerConfig(const ClientConfig& client) {
  ProducerConfig p;
  p.client = client;
  p.linger = std::chrono::milliseconds(0);  // one writer, each write waited for
  return p;
}

std::string Where(const std::string& topic, std::int32_t partition) {
  return "state topic '" + topic + "' partition " + std::to_string(partition);
}

}  // namespace

StateTopic::StateTopic(ClientConfig client, std::string topic)
    : client_(std::move(client)), topic_(std::move(topic)), producer_(StateProducerConfig(client_)) {}

StateTopic::~StateTopic() = default;

Status StateTopic::Write(std::int32_t partition, std::string_view key, std::string_view value) {
  OutgoingRecord r;
  r.topic = topic_;
  r.key = std::string(key);
  r.payload = std::string(value);
  r.partition = partition;
  return producer_.SendSync(r);
}

Status StateTopic::Erase(std::int32_t partition, std::string_view key) {
  OutgoingRecord r;
  r.topic = topic_;
  r.key = std::string(key);
  r.partition = partition;
  r.tombstone = true;
  return producer_.SendSync(r);
}

Status StateTopic::Load(std::int32_t partition,
                        const std::function<void(std::string_view, std::string_view, std::int64_t)>& each,
                        std::chrono::milliseconds timeout) {
  std::map<std::string, std::string> props{
      {"bootstrap.servers", client_.brokers},
      {"client.id", client_.client_id + "-state-reader"},
      {"group.id", "kbus-state-reader"},  // never joined: the reader assigns, and commits nothing
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      // Records deleted under the reader (retention, DeleteRecords) must fail the load; the
      // default would jump to the end and report a partial view as the whole.
      {"auto.offset.reset", "error"},
  };
  for (const auto& [k, v] : client_.properties) {
    if (k.starts_with("sasl.") || k.starts_with("ssl.") || k == "security.protocol") props[k] = v;
  }
  auto conf = detail::MakeConf(props);
  detail::RouteLogs(conf.get());
  detail::RdKafkaPtr rk = detail::NewHandle(RD_KAFKA_CONSUMER, conf);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left_ms = [&] {
    return static_cast<int>(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };

  std::int64_t low = 0, high = 0;
  if (rd_kafka_resp_err_t err =
          rd_kafka_query_watermark_offsets(rk.get(), topic_.c_str(), partition, &low, &high, left_ms())) {
    return Error(ErrorCode::kTransport, "cannot read the end of " + Where(topic_, partition) + ": " + rd_kafka_err2str(err),
                 true);
  }
  if (high <= low) return Ok();

  detail::RdPartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic_.c_str(), partition)->offset = low;
  if (rd_kafka_resp_err_t err = rd_kafka_assign(rk.get(), list.get())) {
    return Error(ErrorCode::kTransport, "cannot read " + Where(topic_, partition) + ": " + rd_kafka_err2str(err), true);
  }
  std::map<std::string, std::optional<std::pair<std::string, std::int64_t>>> latest;
  std::int64_t next = low;
  while (next < high) {
    rd_kafka_poll(rk.get(), 0);  // log lines
    if (left_ms() == 0) {
      rd_kafka_assign(rk.get(), nullptr);
      return Error(ErrorCode::kTimeout,
                   Where(topic_, partition) + " not read to its end (" + std::to_string(high) + ") within " +
                       std::to_string(timeout.count()) + " ms; reached " + std::to_string(next),
                   true);
    }
    detail::RdMessagePtr m(rd_kafka_consumer_poll(rk.get(), std::min(left_ms(), 100)));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      next = std::max(next, m->offset);
      continue;
    }
    if (m->err) {
      std::string what = rd_kafka_message_errstr(m.get());
      if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
        what += " (records from offset " + std::to_string(next) + " on were deleted while reading; load again)";
      }
      rd_kafka_assign(rk.get(), nullptr);
      return Error(ErrorCode::kTransport, "reading " + Where(topic_, partition) + " failed: " + what, true);
    }
    next = m->offset + 1;
    if (m->key == nullptr || m->key_len == 0) continue;
    std::string key(static_cast<const char*>(m->key), m->key_len);
    if (m->payload == nullptr) {
      latest[std::move(key)] = std::nullopt;
    } else {
      latest[std::move(key)] = std::make_pair(std::string(static_cast<const char*>(m->payload), m->len), m->offset);
    }
  }
  rd_kafka_assign(rk.get(), nullptr);
  for (const auto& [key, value] : latest) {
    if (value) each(key, value->first, value->second);
  }
  return Ok();
}

std::map<std::string, std::string> CompactedTopicConfigs() {
  return {{"cleanup.policy", "compact"}, {"segment.ms", "3600000"}, {"min.cleanable.dirty.ratio", "0.5"}};
}

}  // namespace kbus::kafka
