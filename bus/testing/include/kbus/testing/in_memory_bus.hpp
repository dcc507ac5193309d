#pragma once
// InMemoryBus: runs handlers without a broker, for unit tests of handler logic. Records live in
// in-memory topics; RunUntilIdle() dispatches them with the same Dispatcher as the Kafka worker,
// so decode errors, unknown types, retries and dead letters behave the same way. Retries run at
// once (no waiting): tests check decisions, not timing.
//
// Thread safety: none; one test thread.

#include <cstddef>
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

  // Everything appended to a topic, in order (handled records stay in their topic).
  const std::vector<OutgoingRecord>& Records(std::string_view topic) const;
  const std::vector<OutgoingRecord>& DeadLetters() const;

  // The messages of type T on T's default topic (or `topic`), decoded.
  template <Message T>
  std::vector<T> Messages(std::string_view topic = MessageTraits<T>::kTopic) const {
    std::vector<T> out;
    for (const auto& r : Records(topic)) {
      if (r.FindHeader(header::kType) != MessageTraits<T>::kType) continue;
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

  const HandlerRegistry& handlers_;
  InMemoryOptions options_;
  Dispatcher dispatcher_;
  std::map<std::string, std::vector<OutgoingRecord>, std::less<>> topics_;
  std::deque<Pending> pending_;
  std::size_t handled_ = 0;
  std::size_t skipped_ = 0;
};

}  // namespace kbus::testing
