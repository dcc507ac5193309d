#include "kbus/kafka/state_topic.hpp"

#include <map>
#include <optional>

#include "kbus/kafka/partition_reader.hpp"

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
  ClientConfig client = client_;
  client.client_id += "-state-reader";
  // Records deleted under the reader (retention, DeleteRecords) must fail the load; reading on
  // from the earliest kept one would report a partial view as the whole.
  auto reader = PartitionReader::Open(client, {.topic = topic_, .reset = OffsetReset::kError});
  if (!reader.ok()) return reader.error();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto range = (*reader)->Watermarks(partition, timeout);
  if (!range.ok()) {
    return Error(ErrorCode::kTransport,
                 "cannot read the end of " + Where(topic_, partition) + ": " + range.error().message(), true);
  }
  if (range->high <= range->low) return Ok();
  if (Status s = (*reader)->Assign({{.partition = partition, .from = range->low, .to = range->high}}); !s.ok()) {
    return s;
  }
  std::map<std::string, std::optional<std::pair<std::string, std::int64_t>>> latest;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  const Status read = (*reader)->ReadToEnd(std::max(left, std::chrono::milliseconds(1)), [&](ReaderRecord&& r) {
    if (!r.key || r.key->empty()) return true;
    if (r.payload) {
      latest[std::move(*r.key)] = std::make_pair(std::move(*r.payload), r.offset);
    } else {
      latest[std::move(*r.key)] = std::nullopt;
    }
    return true;
  });
  if (!read.ok()) {
    return Error(read.error().code() == ErrorCode::kTimeout ? ErrorCode::kTimeout : ErrorCode::kTransport,
                 "loading " + Where(topic_, partition) + " failed: " + read.error().message(), true);
  }
  for (const auto& [key, value] : latest) {
    if (value) each(key, value->first, value->second);
  }
  return Ok();
}

std::map<std::string, std::string> CompactedTopicConfigs() {
  return {{"cleanup.policy", "compact"}, {"segment.ms", "3600000"}, {"min.cleanable.dirty.ratio", "0.5"}};
}

}  // namespace kbus::kafka
