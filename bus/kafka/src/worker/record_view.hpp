#pragma once
// Reading a consumed librdkafka record: kbus's view of it, one of its headers, and the small
// parsing the worker's parts share.

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "kbus/record.hpp"

namespace kbus::kafka::worker {

using Clock = std::chrono::steady_clock;

// A consumed record, shared by the partition book and the runs of it (a run may outlive the
// record's place in the book, e.g. past a revocation).
using MessagePtr = std::shared_ptr<rd_kafka_message_t>;

// Views of a consumed message's headers, reusing `headers` to avoid an allocation per record.
InboundRecord ViewRecord(const rd_kafka_message_t* m, std::vector<HeaderView>& headers);

std::string_view MessageId(const InboundRecord& r);

// The last value of header `name`, if the message has it.
std::optional<std::string_view> HeaderOf(const rd_kafka_message_t& m, std::string_view name);

// A non-negative decimal integer, or nullopt for anything else.
std::optional<std::int64_t> ParseInt(std::optional<std::string_view> text);

// Unix epoch milliseconds now.
std::int64_t EpochMs();

// Lets an unordered container of strings be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace kbus::kafka::worker
