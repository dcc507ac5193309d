#pragma once
// Records as they cross the transport boundary: InboundRecord is a consumed Kafka record seen
// through views (valid until the handler returns), OutgoingRecord owns everything it carries.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kbus {

struct HeaderView {
  std::string_view name;
  std::string_view value;
};

struct Header {
  std::string name;
  std::string value;
  bool operator==(const Header&) const = default;
};

struct InboundRecord {
  std::string_view topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::int64_t timestamp_ms = -1;  // the record's Kafka timestamp; -1 when it has none
  std::string_view key;            // empty for a null key
  std::string_view payload;
  std::span<const HeaderView> headers;

  // The last header of that name (Kafka allows repeats; the newest wins).
  std::optional<std::string_view> FindHeader(std::string_view name) const;
};

struct OutgoingRecord {
  std::string topic;
  std::string key;  // empty: no key, the partitioner spreads the record
  std::string payload;
  std::vector<Header> headers;
  // -1: the partitioner chooses from the key. Otherwise exactly this partition (a workflow's
  // state record goes to the partition number of its input).
  std::int32_t partition = -1;
  bool tombstone = false;  // a null value (payload ignored): deletes the key on a compacted topic

  // The last header of that name, or nullopt.
  std::optional<std::string_view> FindHeader(std::string_view name) const;
  // Replaces every header of that name with one of the given value.
  void SetHeader(std::string_view name, std::string_view value);
};

}  // namespace kbus
