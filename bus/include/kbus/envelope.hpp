#pragma once
// The envelope: kbus's metadata about a message, carried in Kafka headers so that the payload
// stays plain JSON any client can read. Header names are part of the wire format.

#include <cstdint>
#include <span>
#include <string_view>

#include "kbus/record.hpp"

namespace kbus {

namespace header {
inline constexpr std::string_view kType = "kbus-type";  // stable type name
inline constexpr std::string_view kKind = "kbus-kind";  // "command" or "event"
inline constexpr std::string_view kId = "kbus-id";      // UUID of this message
inline constexpr std::string_view kCorrelationId = "kbus-correlation-id";
inline constexpr std::string_view kCausationId = "kbus-causation-id";  // id of the parent message
inline constexpr std::string_view kWorkflowId = "kbus-workflow-id";
inline constexpr std::string_view kSentAt = "kbus-sent-at";  // Unix epoch milliseconds, decimal
inline constexpr std::string_view kDeliveryCount = "kbus-delivery-count";  // prior deliveries
inline constexpr std::string_view kTraceparent = "traceparent";            // W3C, passed through
// Set by a sender to name the side effect a message asks for, so that two messages with
// different ids can be deduplicated as one (kbus::IdempotencyKey; default: the message id).
inline constexpr std::string_view kIdempotencyKey = "kbus-idempotency-key";
inline constexpr std::string_view kDlqPrefix = "kbus-dlq-";
inline constexpr std::string_view kDlqReason = "kbus-dlq-reason";
inline constexpr std::string_view kDlqError = "kbus-dlq-error";
inline constexpr std::string_view kDlqTopic = "kbus-dlq-original-topic";
inline constexpr std::string_view kDlqPartition = "kbus-dlq-original-partition";
inline constexpr std::string_view kDlqOffset = "kbus-dlq-original-offset";
inline constexpr std::string_view kDlqTimestamp = "kbus-dlq-original-timestamp";
inline constexpr std::string_view kDlqGroup = "kbus-dlq-group";
inline constexpr std::string_view kDlqAttempts = "kbus-dlq-attempts";
inline constexpr std::string_view kDlqHost = "kbus-dlq-host";
inline constexpr std::string_view kDlqAt = "kbus-dlq-at";
// On a redriven copy: where it was re-sent from, "<dlq topic>/<partition>/<offset>".
inline constexpr std::string_view kRedriveOf = "kbus-redrive-of";
// On records in a retry tier topic ("<group>.retry.<delay>"): when the record is due (Unix epoch
// milliseconds), where it first came from, and the last error. kbus-delivery-count says how
// often it was delivered before.
inline constexpr std::string_view kRetryPrefix = "kbus-retry-";
inline constexpr std::string_view kRetryDue = "kbus-retry-due";
inline constexpr std::string_view kRetryTopic = "kbus-retry-original-topic";
inline constexpr std::string_view kRetryPartition = "kbus-retry-original-partition";
inline constexpr std::string_view kRetryOffset = "kbus-retry-original-offset";
inline constexpr std::string_view kRetryTimestamp = "kbus-retry-original-timestamp";
inline constexpr std::string_view kRetryError = "kbus-retry-error";
// Delayed messages (docs/schedules.md). A delayed message waits in the pending topic, keyed by
// its id, with the envelope it will be delivered with plus where it goes. kbus-deliver-at (Unix
// epoch milliseconds) stays on the delivered copy; the other two are removed from it.
inline constexpr std::string_view kDeliverAt = "kbus-deliver-at";
inline constexpr std::string_view kDeliverTopic = "kbus-deliver-topic";
inline constexpr std::string_view kDeliverKey = "kbus-deliver-key";
}  // namespace header

// Envelope fields as views into the record's headers; empty when the header is absent.
struct Envelope {
  std::string_view type;
  std::string_view kind;
  std::string_view message_id;
  std::string_view correlation_id;
  std::string_view causation_id;
  std::string_view workflow_id;
  std::string_view traceparent;
  std::int64_t sent_at_ms = -1;
  int delivery_count = 0;  // deliveries before this one that the bus counted
};

// Reads the envelope from headers. Malformed numeric headers read as absent (-1 / 0).
Envelope ParseEnvelope(std::span<const HeaderView> headers);

}  // namespace kbus
