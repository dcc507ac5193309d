#include "kbus/dead_letter.hpp"

#include <chrono>
#include <cstddef>

#include "kbus/envelope.hpp"
#include "kbus/json.hpp"

namespace kbus {

std::string DeadLetterTopic(std::string_view group) {
  std::string t(group);
  t += ".dlq";
  return t;
}

namespace {

constexpr std::size_t kMaxErrorBytes = 4096;

bool HasPrefix(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// Where the record first came from: a record in a retry tier names its origin in headers.
struct Origin {
  std::string topic, partition, offset, timestamp;
};
Origin OriginOf(const InboundRecord& record) {
  if (auto topic = record.FindHeader(header::kRetryTopic)) {
    return {std::string(*topic), std::string(record.FindHeader(header::kRetryPartition).value_or("")),
            std::string(record.FindHeader(header::kRetryOffset).value_or("")),
            std::string(record.FindHeader(header::kRetryTimestamp).value_or(""))};
  }
  return {std::string(record.topic), std::to_string(record.partition), std::to_string(record.offset),
          std::to_string(record.timestamp_ms)};
}

// A copy of `record` for `topic`: the same key and value, and its headers but those `drop`
// picks out; room for `extra` more headers.
template <class Drop>
OutgoingRecord CopyOf(const InboundRecord& record, std::string topic, std::size_t extra, Drop drop) {
  OutgoingRecord r;
  r.topic = std::move(topic);
  r.key = std::string(record.key);
  r.payload = std::string(record.payload);
  r.headers.reserve(record.headers.size() + extra);
  for (const auto& h : record.headers) {
    if (!drop(h.name)) r.headers.push_back({std::string(h.name), std::string(h.value)});
  }
  return r;
}

}  // namespace

OutgoingRecord MakeRetry(const InboundRecord& record, const RetryInfo& info) {
  OutgoingRecord r = CopyOf(record, std::string(info.topic), 7, [](std::string_view name) {
    return HasPrefix(name, header::kRetryPrefix) || name == header::kDeliveryCount;
  });
  Origin origin = OriginOf(record);
  r.headers.push_back({std::string(header::kDeliveryCount), std::to_string(info.deliveries)});
  r.headers.push_back({std::string(header::kRetryDue), std::to_string(info.due_ms)});
  r.headers.push_back({std::string(header::kRetryTopic), std::move(origin.topic)});
  r.headers.push_back({std::string(header::kRetryPartition), std::move(origin.partition)});
  r.headers.push_back({std::string(header::kRetryOffset), std::move(origin.offset)});
  r.headers.push_back({std::string(header::kRetryTimestamp), std::move(origin.timestamp)});
  r.headers.push_back({std::string(header::kRetryError), ToValidUtf8(info.error, kMaxErrorBytes)});
  return r;
}

OutgoingRecord MakeDeadLetter(const InboundRecord& record, const DeadLetterInfo& info) {
  // A redriven message that fails again gets fresh diagnostics, not two sets; a record from a
  // retry tier loses the headers of the tier (the dlq headers name its origin).
  const bool from_tier = record.FindHeader(header::kRetryTopic).has_value();
  OutgoingRecord r = CopyOf(record, DeadLetterTopic(info.group), 10, [&](std::string_view name) {
    return HasPrefix(name, header::kDlqPrefix) || HasPrefix(name, header::kRetryPrefix) ||
           (from_tier && name == header::kDeliveryCount);
  });
  Origin origin = OriginOf(record);
  // Diagnostics quote input (a type name, a member name): made valid UTF-8 and cut between
  // characters, as kbus writes no header that is not text.
  std::string error = ToValidUtf8(info.error, kMaxErrorBytes);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  r.headers.push_back({std::string(header::kDlqReason), ToValidUtf8(info.reason, kMaxErrorBytes)});
  r.headers.push_back({std::string(header::kDlqError), std::move(error)});
  r.headers.push_back({std::string(header::kDlqTopic), std::move(origin.topic)});
  r.headers.push_back({std::string(header::kDlqPartition), std::move(origin.partition)});
  r.headers.push_back({std::string(header::kDlqOffset), std::move(origin.offset)});
  r.headers.push_back({std::string(header::kDlqTimestamp), std::move(origin.timestamp)});
  r.headers.push_back({std::string(header::kDlqGroup), std::string(info.group)});
  r.headers.push_back({std::string(header::kDlqAttempts), std::to_string(info.attempts)});
  r.headers.push_back({std::string(header::kDlqHost), std::string(info.host)});
  r.headers.push_back({std::string(header::kDlqAt), std::to_string(now_ms)});
  return r;
}

}  // namespace kbus
