#pragma once
// InMemoryBus: runs handlers without a broker, for unit tests of handler logic. Records live in
// in-memory topics; RunUntilIdle() dispatches them with the same Dispatcher as the Kafka worker,
// so decode errors, unknown types, retries and dead letters behave the same way. Retries run at
// once (no waiting): tests check decisions, not timing.
//
// Records are kept as sent, `partition` and `tombstone` included, so a test sees what a handler
// asked for. They are delivered on their partition, with offsets counted per partition; where
// the partitioner would choose (partition -1) the bus has one partition, 0. A tombstone is
// delivered with a null payload, as the Kafka worker delivers one, so it never reaches a
// handler: without a kbus-type header it is skipped on an event topic and dead-lettered as
// unknown-type on a command topic, with one it is a decode error. Messages<T>() leaves it out.
//
// Thread safety: none; one test thread.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/context.hpp"
#include "kbus/dispatcher.hpp"
#include "kbus/handler_registry.hpp"

namespace kbus::testing {

struct InMemoryOptions {
  std::string group = "test";
  int max_deliveries = 5;  // unless the message type's DeliveryPolicy says otherwise
};

class InMemoryBus {
 public:
  explicit InMemoryBus(const HandlerRegistry& handlers, InMemoryOptions options = {});

  // Appends a message with a fresh envelope to its topic.
  template <Message T>
  void Send(const T& message, SendOptions options = {}) {
    Append(BuildRecord(message, std::move(options)));
  }
  // Appends a record exactly as given (e.g. with broken headers or payload).
  void Append(OutgoingRecord record);

  // Dispatches records on handled topics until none is left; returns how many deliveries ran.
  std::size_t RunUntilIdle(std::size_t max_deliveries = 1'000'000);

  // Everything appended to a topic, in order, as it was sent (handled records stay in their
  // topic).
  const std::vector<OutgoingRecord>& Records(std::string_view topic) const;
  const std::vector<OutgoingRecord>& DeadLetters() const;

  // The messages of type T on T's default topic (or `topic`), decoded.
  template <Message T>
  std::vector<T> Messages(std::string_view topic = MessageTraits<T>::kTopic) const {
    std::vector<T> out;
    for (const auto& r : Records(topic)) {
      if (r.tombstone || r.FindHeader(header::kType) != MessageTraits<T>::kType) continue;
      if (auto decoded = FromJson<T>(r.payload); decoded.ok()) out.push_back(std::move(*decoded));
    }
    return out;
  }

  std::size_t handled() const { return handled_; }
  std::size_t skipped() const { return skipped_; }

 private:
  struct Pending {
    std::string topic;
    std::size_t index;
    int attempts = 0;
  };
  struct Topic {
    std::vector<OutgoingRecord> records;
    std::vector<std::int64_t> offsets;                  // records[i]'s offset in its partition
    std::map<std::int32_t, std::int64_t> next_offsets;  // per partition
  };

  const HandlerRegistry& handlers_;
  InMemoryOptions options_;
  Dispatcher dispatcher_;
  std::map<std::string, Topic, std::less<>> topics_;
  std::deque<Pending> pending_;
  std::size_t handled_ = 0;
  std::size_t skipped_ = 0;
};

}  // namespace kbus::testing
