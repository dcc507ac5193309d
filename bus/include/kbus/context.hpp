#pragma once
// Context: what a handler sees besides its message: the envelope, where the record came from,
// and Send/Publish for outgoing messages. Outgoing messages are buffered and leave only if the
// handler's outcome is Ack; a failed attempt publishes nothing.
//
// Thread safety: a Context belongs to one delivery on one thread; it is not shared.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/envelope.hpp"
#include "kbus/message.hpp"
#include "kbus/record.hpp"

namespace kbus {

struct SendOptions {
  std::string topic;     // default: the message type's kTopic
  std::string key;       // default: workflow id, else correlation id
  std::string workflow_id;  // default: inherited from the message being handled
  // Only for messages sent outside a handler; default: the new message's own id. Inside a
  // handler the correlation id is always inherited.
  std::string correlation_id;
  std::vector<Header> headers;  // extra application headers
};

// Builds a record with a full envelope. With a parent (the message being handled) the new message
// inherits correlation, workflow id and traceparent, its causation id is the parent's id, and its
// id is derived from the parent's id and `index`, so a handler that runs twice produces the same
// ids. Without a parent, the id is random and the message starts its own correlation.
OutgoingRecord BuildRecord(std::string_view type, MessageKind kind, std::string_view default_topic,
                           std::string payload, SendOptions options, const Envelope* parent,
                           std::size_t index);

template <Message T>
OutgoingRecord BuildRecord(const T& message, SendOptions options = {},
                           const Envelope* parent = nullptr, std::size_t index = 0) {
  using Traits = MessageTraits<T>;
  return BuildRecord(Traits::kType, Traits::kKind, Traits::kTopic, ToJson(message),
                     std::move(options), parent, index);
}

class Context {
 public:
  Context(const InboundRecord& record, const Envelope& envelope, int attempt)
      : record_(record), envelope_(envelope), attempt_(attempt) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Envelope& envelope() const { return envelope_; }
  const InboundRecord& record() const { return record_; }
  // Which delivery of this message this is: 1 for the first.
  int attempt() const { return attempt_; }

  // Sends a command, sent only if this handler returns Ack.
  template <Command T>
  void Send(const T& command, SendOptions options = {}) {
    Add(BuildRecord(command, std::move(options), &envelope_, outgoing_.size()));
  }
  // Publishes an event, sent only if this handler returns Ack.
  template <Event T>
  void Publish(const T& event, SendOptions options = {}) {
    Add(BuildRecord(event, std::move(options), &envelope_, outgoing_.size()));
  }
  // For generic code (CLIs, bridges): a message known only by its type name and JSON payload.
  void SendRaw(std::string_view type, MessageKind kind, std::string payload_json,
               SendOptions options) {
    Add(BuildRecord(type, kind, {}, std::move(payload_json), std::move(options), &envelope_,
                    outgoing_.size()));
  }

  std::size_t outgoing_count() const { return outgoing_.size(); }
  std::vector<OutgoingRecord> TakeOutgoing() { return std::move(outgoing_); }

 private:
  void Add(OutgoingRecord r) { outgoing_.push_back(std::move(r)); }

  const InboundRecord& record_;
  const Envelope& envelope_;
  int attempt_;
  std::vector<OutgoingRecord> outgoing_;
};

}  // namespace kbus
