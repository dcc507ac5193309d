#pragma once
// Context: what a handler sees besides its message: the envelope, where the record came from,
// and Send/Publish for outgoing messages. Outgoing messages are buffered and leave only if the
// handler's outcome is Ack; a failed attempt publishes nothing.
//
// Thread safety: a Context belongs to one delivery on one thread; it is not shared. Its
// Visibility is shared with the worker, which may abandon the delivery from another thread.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kbus/codec.hpp"
#include "kbus/envelope.hpp"
#include "kbus/message.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"
#include "kbus/slots.hpp"

namespace kbus {

// Where delayed messages wait (docs/schedules.md): a compacted topic keyed by message id.
inline constexpr std::string_view kDefaultPendingTopic = "kbus.delayed";
// The longest wait a delayed message may ask for. The pending topic is compacted and cleans
// nothing by time, so a message waits as long as it must; the bound is kbus's own: a wait of
// more than a year belongs in a schedule, and a pending topic given a time retention
// (cleanup.policy=compact,delete) must keep records longer than this.
inline constexpr std::chrono::milliseconds kMaxDelay = std::chrono::hours(24 * 365);

struct SendOptions {
  std::string topic;     // default: the message type's kTopic
  std::string key;       // default: workflow id, else correlation id
  std::string workflow_id;  // default: inherited from the message being handled
  // Only for messages sent outside a handler; default: the new message's own id. Inside a
  // handler the correlation id is always inherited.
  std::string correlation_id;
  std::vector<Header> headers;  // extra application headers
  // Delivery later (docs/schedules.md): the message goes to the pending topic now and reaches
  // `topic` at `deliver_at`, or `delay` from now, never earlier, with this same envelope (the
  // same id). At most one of the two; each at most kMaxDelay ahead. A time in the past is due
  // at once.
  std::chrono::milliseconds delay{0};
  std::optional<std::chrono::system_clock::time_point> deliver_at;
  std::string pending_topic;  // default: kDefaultPendingTopic
};

// Builds a record with a full envelope. With a parent (the message being handled) the new message
// inherits correlation, workflow id and traceparent, its causation id is the parent's id, and its
// id is derived from the parent's id and `index`, so a handler that runs twice produces the same
// ids. Without a parent, the id is random and the message starts its own correlation.
OutgoingRecord BuildRecord(std::string_view type, MessageKind kind, std::string_view default_topic,
                           std::string payload, SendOptions options, const Envelope* parent,
                           std::size_t index);

// Both throw EncodeError (codec.hpp) for what kbus does not put on the wire: a payload that
// is not valid JSON within kbus's rules (UTF-8 strings, at most kMaxJsonDepth levels), a
// kbus-* or traceparent header value that is not valid UTF-8, or a delay that is negative,
// beyond kMaxDelay, or given twice (delay and deliver_at).
template <Message T>
OutgoingRecord BuildRecord(const T& message, SendOptions options = {},
                           const Envelope* parent = nullptr, std::size_t index = 0) {
  using Traits = MessageTraits<T>;
  Result<std::string> json = EncodeJson(message);
  if (!json.ok()) {
    throw EncodeError(Error(json.error().code(),
                            std::string(Traits::kType) + ": " + json.error().message()));
  }
  return BuildRecord(Traits::kType, Traits::kKind, Traits::kTopic, std::move(json).value(),
                     std::move(options), parent, index);
}

// The record that cancels the delayed message `message_id` while it waits: a tombstone for its
// key in the pending topic. Cancelling a message that was delivered already, or never existed,
// does nothing.
OutgoingRecord CancelDelayed(std::string_view message_id,
                             std::string_view pending_topic = kDefaultPendingTopic);

// How long one delivery may take. The worker gives each delivery a deadline (the visibility
// timeout of its message type); when it passes, the worker abandons the delivery: it discards
// the late result and outgoing messages, delivers the message again, and sets `cancelled` so a
// cooperative handler can stop early. The handler may push the deadline back while it works.
//
// Thread safety: every member may be called from any thread.
class Visibility {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Visibility(Clock::time_point deadline = Clock::time_point::max())
      : deadline_(deadline.time_since_epoch().count()) {}

  Clock::time_point deadline() const {
    return Clock::time_point(Clock::duration(deadline_.load(std::memory_order_acquire)));
  }
  // Sets the deadline to now + `timeout`. False, and no change, once the delivery was abandoned.
  bool Extend(std::chrono::milliseconds timeout) {
    if (cancelled()) return false;
    deadline_.store((Clock::now() + timeout).time_since_epoch().count(), std::memory_order_release);
    return !cancelled();
  }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  void Cancel() { cancelled_.store(true, std::memory_order_release); }

 private:
  std::atomic<Clock::rep> deadline_;
  std::atomic<bool> cancelled_{false};
};

class Context {
 public:
  // `visibility` may be null: the delivery then has no deadline. `slot` is the slot taken for
  // this delivery when its type's policy names Slots.
  Context(const InboundRecord& record, const Envelope& envelope, int attempt,
          Visibility* visibility = nullptr, SlotHold* slot = nullptr)
      : record_(record), envelope_(envelope), attempt_(attempt), visibility_(visibility), slot_(slot) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Envelope& envelope() const { return envelope_; }
  const InboundRecord& record() const { return record_; }
  // Which delivery of this message this is: 1 for the first.
  int attempt() const { return attempt_; }

  // When the bus will abandon this delivery and deliver the message again; time_point::max()
  // without a visibility timeout.
  Visibility::Clock::time_point Deadline() const {
    return visibility_ ? visibility_->deadline() : Visibility::Clock::time_point::max();
  }
  // Asks for `timeout` more from now (like SQS's ChangeMessageVisibility). Call it from a long
  // handler that is still making progress. False when it is too late: the delivery was
  // abandoned, and its result will be discarded.
  bool ExtendVisibility(std::chrono::milliseconds timeout) {
    return visibility_ == nullptr || visibility_->Extend(timeout);
  }
  // True once the delivery was abandoned (its deadline passed, or the worker is giving the
  // partition away). A cooperative handler stops early; whatever it returns is discarded.
  bool Cancelled() const { return visibility_ != nullptr && visibility_->cancelled(); }

  // Keeps this delivery's slot (DeliveryPolicy::slots) past the handler's return, for work that
  // goes on after it; the slot is given back when the returned hold is destroyed. An empty hold
  // when the type has no slots, or when it was kept already.
  SlotHold KeepSlot() { return slot_ != nullptr ? std::move(*slot_) : SlotHold(); }

  // Sends a command, sent only if this handler returns Ack. Throws EncodeError (codec.hpp) for a
  // message kbus will not put on the wire, such as a string field that is not valid UTF-8.
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
  // Throws EncodeError when the payload is not JSON within kbus's rules (json.hpp).
  void SendRaw(std::string_view type, MessageKind kind, std::string payload_json,
               SendOptions options) {
    if (Status s = ValidateJson(payload_json); !s.ok()) {
      throw EncodeError(Error(ErrorCode::kInvalidArgument, std::string(type) +
                                                               ": cannot send the payload: " +
                                                               s.error().message()));
    }
    Add(BuildRecord(type, kind, {}, std::move(payload_json), std::move(options), &envelope_,
                    outgoing_.size()));
  }

  // For generic code that forwards or re-sends records it built itself (a workflow host
  // re-keying a message, or re-sending what a duplicate's first delivery sent). Sent only if
  // this handler returns Ack, like the rest.
  void AddOutgoing(OutgoingRecord record) { Add(std::move(record)); }

  std::size_t outgoing_count() const { return outgoing_.size(); }
  std::vector<OutgoingRecord> TakeOutgoing() { return std::move(outgoing_); }

  // A record the broker must acknowledge before this handler's outgoing messages leave (a
  // workflow's state record: the messages a step sends may leave only once its state is
  // stored). Sent only if the handler returns Ack, like the rest. The worker sends these,
  // without a handler thread waiting; once all are acknowledged the outgoing messages follow,
  // then the offset may be committed. The next message of the same ordering key runs only after
  // that acknowledgement; other keys do not wait.
  //
  // `verdict`, set once per delivery, is called at most once, and only if the handler returned
  // Ack: with Ok when every write-ahead record was acknowledged; with an error when the worker
  // gave up on them (sent in vain for the type's max deliveries, the message then dead-lettered
  // as "publish-error") or discarded the result (the delivery was abandoned, or its partition
  // given away, before the result was served). It is not called when the partition is given
  // away or the worker stops while the records are on their way: the next owner redelivers the
  // message. It runs on the worker's poll thread (the in-memory bus: the caller's thread)
  // before the key's next message starts, so it must be quick and must not call the worker.
  void WriteAhead(OutgoingRecord record) { write_ahead_.push_back(std::move(record)); }
  void OnWriteAheadVerdict(std::function<void(const Status&)> verdict) { verdict_ = std::move(verdict); }
  std::vector<OutgoingRecord> TakeWriteAhead() { return std::move(write_ahead_); }
  std::function<void(const Status&)> TakeVerdict() { return std::move(verdict_); }

 private:
  void Add(OutgoingRecord r) { outgoing_.push_back(std::move(r)); }

  const InboundRecord& record_;
  const Envelope& envelope_;
  int attempt_;
  Visibility* visibility_;
  SlotHold* slot_;
  std::vector<OutgoingRecord> outgoing_;
  std::vector<OutgoingRecord> write_ahead_;
  std::function<void(const Status&)> verdict_;
};

}  // namespace kbus
