#include "kbus/testing/in_memory_bus.hpp"

#include <algorithm>

#include "kbus/dead_letter.hpp"

namespace kbus::testing {

InMemoryBus::InMemoryBus(const HandlerRegistry& handlers, InMemoryOptions options)
    : handlers_(handlers), options_(std::move(options)), dispatcher_(handlers) {
  topics_[DeadLetterTopic(options_.group)];
}

namespace {
// Where a record is delivered: its own partition, or the only one when the partitioner chooses.
std::int32_t DeliveryPartition(const OutgoingRecord& r) { return r.partition < 0 ? 0 : r.partition; }
}  // namespace

void InMemoryBus::Append(OutgoingRecord record) {
  auto& topic = topics_[record.topic];
  topic.offsets.push_back(topic.next_offsets[DeliveryPartition(record)]++);
  topic.records.push_back(std::move(record));
  const auto& topic_name = topic.records.back().topic;
  const auto subscribed = handlers_.Topics();
  if (std::find(subscribed.begin(), subscribed.end(), topic_name) != subscribed.end()) {
    pending_.push_back({topic_name, topic.records.size() - 1, 0});
  }
}

std::size_t InMemoryBus::RunUntilIdle(std::size_t max_deliveries) {
  std::size_t runs = 0;
  while (!pending_.empty() && runs < max_deliveries) {
    Pending item = pending_.front();
    pending_.pop_front();
    ++runs;
    // Copy: the handler may append to the same topic, which can move the stored record.
    const Topic& topic = topics_[item.topic];
    const OutgoingRecord stored = topic.records[item.index];
    std::vector<HeaderView> headers;
    for (const auto& h : stored.headers) headers.push_back({h.name, h.value});
    InboundRecord in;
    in.topic = stored.topic;
    in.partition = DeliveryPartition(stored);
    in.offset = topic.offsets[item.index];
    in.key = stored.key;
    if (!stored.tombstone) in.payload = stored.payload;  // a null value, as the worker sees it
    in.headers = headers;
    ++item.attempts;
    DispatchResult r = dispatcher_.Dispatch(in, item.attempts);
    switch (r.kind) {
      case DispatchResult::Kind::kAck:
        ++handled_;
        // Write-ahead records are stored at once (an in-memory append cannot fail), then the rest.
        for (auto& out : r.write_ahead) Append(std::move(out));
        if (r.verdict) r.verdict(Ok());
        for (auto& out : r.outgoing) Append(std::move(out));
        break;
      case DispatchResult::Kind::kSkip:
        ++skipped_;
        break;
      case DispatchResult::Kind::kRetry: {
        const HandlerRegistry::Route* route = handlers_.Find(r.type, in.topic);  // as the worker: per topic
        const int max_deliveries = route != nullptr && route->policy.max_deliveries
                                       ? *route->policy.max_deliveries
                                       : options_.max_deliveries;
        if (item.attempts < max_deliveries) {
          pending_.push_front(item);  // per-partition order: the retry goes first
        } else {
          Append(MakeDeadLetter(in, {options_.group, reason::kHandlerError, r.error, item.attempts,
                                     "in-memory"}));
        }
        break;
      }
      case DispatchResult::Kind::kDeadLetter:
        Append(MakeDeadLetter(in, {options_.group, r.reason, r.error, item.attempts, "in-memory"}));
        break;
    }
  }
  return runs;
}

const std::vector<OutgoingRecord>& InMemoryBus::Records(std::string_view topic) const {
  static const std::vector<OutgoingRecord> kEmpty;
  auto it = topics_.find(topic);
  return it == topics_.end() ? kEmpty : it->second.records;
}

const std::vector<OutgoingRecord>& InMemoryBus::DeadLetters() const {
  return Records(DeadLetterTopic(options_.group));
}

}  // namespace kbus::testing
