#pragma once
// Dead letters and retry-tier copies: the records a transport sends when a delivery fails for
// good or waits in a retry tier, and the reason codes a dead letter carries in kbus-dlq-reason
// (docs/delivery.md, "Dead letters"). Pure functions of their input: no I/O, no shared state,
// so they may run on any thread.

#include <cstdint>
#include <string>
#include <string_view>

#include "kbus/record.hpp"

namespace kbus {

// Why a record was dead-lettered: the value of its kbus-dlq-reason header.
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

// "<group>.dlq": the group's dead-letter topic.
std::string DeadLetterTopic(std::string_view group);

// Facts the dead-letter record carries besides the original record.
struct DeadLetterInfo {
  std::string_view group;
  std::string_view reason;  // one of reason::*, or a component's own code
  std::string_view error;
  int attempts = 0;
  std::string_view host;
};

// The dead-letter copy of `record`, for DeadLetterTopic(info.group): same key, value and
// headers, plus kbus-dlq-* headers. Error text is cut to a few KiB so that a huge exception
// message cannot make the record too large to send.
OutgoingRecord MakeDeadLetter(const InboundRecord& record, const DeadLetterInfo& info);

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

}  // namespace kbus
