#pragma once
// Dispatcher: turns one consumed record into a decision. It reads the envelope, finds the
// handler, decodes the payload, runs the handler, and reports what the transport must do:
// commit, retry, dead-letter or skip, with the handler's outgoing messages when it succeeded.
// It does no I/O, so every transport (Kafka, in-memory) shares exactly this logic.
//
// Thread safety: Dispatch is const and may run on several threads at once.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/handler_registry.hpp"
#include "kbus/record.hpp"

namespace kbus {

namespace reason {
inline constexpr std::string_view kDecodeError = "decode-error";
inline constexpr std::string_view kUnknownType = "unknown-type";
inline constexpr std::string_view kRejected = "rejected";          // the handler said DeadLetter
inline constexpr std::string_view kHandlerError = "handler-error";  // retries used up
inline constexpr std::string_view kPublishError = "publish-error";  // outgoing sends kept failing
inline constexpr std::string_view kMaxDeliveries = "max-deliveries";  // counted, never finished
// Like max-deliveries, and the last owner died while delivering it: probably the record that
// crashed it.
inline constexpr std::string_view kSuspectedCrash = "suspected-crash";
// The handler threw an exception its policy's `non_retryable` picks out.
inline constexpr std::string_view kNonRetryable = "non-retryable";
// The last delivery outlived its visibility timeout, and deliveries are used up.
inline constexpr std::string_view kVisibilityTimeout = "visibility-timeout";
}  // namespace reason

struct DispatchResult {
  enum class Kind {
    kAck,         // commit; send `outgoing` first
    kRetry,       // deliver again after `retry_after`
    kDeadLetter,  // send to the dead-letter topic with `reason` and `error`
    kSkip,        // not for this group (an event type nobody here handles): commit
  };
  Kind kind = Kind::kAck;
  std::string_view reason;  // for kDeadLetter
  std::string error;        // for kRetry and kDeadLetter
  std::chrono::milliseconds retry_after{0};
  std::string_view type;  // the kbus-type header, if any
  std::vector<OutgoingRecord> outgoing;
};

class Dispatcher {
 public:
  explicit Dispatcher(const HandlerRegistry& registry) : registry_(registry) {}

  // `attempt` is 1 for the first delivery of this record. `visibility`, if given, is what the
  // handler's Context reports as its deadline and cancellation; `slot`, the slot taken for it
  // (Context::KeepSlot).
  DispatchResult Dispatch(const InboundRecord& record, int attempt,
                          Visibility* visibility = nullptr, SlotHold* slot = nullptr) const;

 private:
  const HandlerRegistry& registry_;
};

// Facts the dead-letter record carries besides the original record.
struct DeadLetterInfo {
  std::string_view group;
  std::string_view reason;
  std::string_view error;
  int attempts = 0;
  std::string_view host;
};

// Facts a retry-tier copy carries besides the original record.
struct RetryInfo {
  std::string_view topic;  // the tier topic
  int deliveries = 0;      // deliveries so far
  std::int64_t due_ms = 0;  // Unix epoch milliseconds
  std::string_view error;
};

// The copy of `record` for a retry tier topic: same key, value and headers, plus kbus-retry-*
// headers. Where the record first came from is kept across tiers.
OutgoingRecord MakeRetry(const InboundRecord& record, const RetryInfo& info);

// "<group>.dlq"
std::string DeadLetterTopic(std::string_view group);

// The dead-letter copy of `record`: same key, value and headers, plus kbus-dlq-* headers.
// Error text is cut to a few KiB so that a huge exception message cannot make the record too
// large to send.
OutgoingRecord MakeDeadLetter(const InboundRecord& record, const DeadLetterInfo& info);

}  // namespace kbus
