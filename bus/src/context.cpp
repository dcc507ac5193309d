#include "kbus/context.hpp"

#include <chrono>

#include "kbus/uuid.hpp"

namespace kbus {
namespace {

std::string FormatDelay(std::chrono::milliseconds d) {
  using namespace std::chrono;
  if (d % hours(24) == milliseconds(0)) return std::to_string(d / hours(24)) + "d";
  if (d % hours(1) == milliseconds(0)) return std::to_string(d / hours(1)) + "h";
  if (d % minutes(1) == milliseconds(0)) return std::to_string(d / minutes(1)) + "m";
  if (d % seconds(1) == milliseconds(0)) return std::to_string(d / seconds(1)) + "s";
  return std::to_string(d.count()) + "ms";
}

// The record `r` as it waits in the pending topic: keyed by its id, with its destination in
// headers. The envelope is left as it is, so the delivered copy carries the same id.
OutgoingRecord Delay(OutgoingRecord r, std::string_view type, const std::string& id,
                     const SendOptions& options) {
  using namespace std::chrono;
  auto refuse = [&](const std::string& why) {
    throw EncodeError(Error(ErrorCode::kInvalidArgument, ToValidUtf8(type, 256) + ": " + why));
  };
  if (options.delay != milliseconds(0) && options.deliver_at) {
    refuse("give delay or deliver_at, not both");
  }
  if (options.delay < milliseconds(0)) refuse("delay is negative (" + std::to_string(options.delay.count()) + " ms)");
  const auto now = time_point_cast<milliseconds>(system_clock::now());
  const auto due = options.deliver_at ? time_point_cast<milliseconds>(*options.deliver_at) : now + options.delay;
  if (due - now > kMaxDelay) {
    refuse("delay: " + FormatDelay(duration_cast<milliseconds>(due - now)) +
           " is beyond the pending topic's limit of " + FormatDelay(kMaxDelay) +
           " (kMaxDelay); send it later, or use a schedule");
  }
  r.headers.push_back({std::string(header::kDeliverAt), std::to_string(due.time_since_epoch().count())});
  r.headers.push_back({std::string(header::kDeliverTopic), r.topic});
  r.headers.push_back({std::string(header::kDeliverKey), r.key});
  r.topic = options.pending_topic.empty() ? std::string(kDefaultPendingTopic) : options.pending_topic;
  r.key = id;
  r.partition = -1;
  return r;
}

}  // namespace

OutgoingRecord CancelDelayed(std::string_view message_id, std::string_view pending_topic) {
  OutgoingRecord r;
  r.topic = std::string(pending_topic);
  r.key = std::string(message_id);
  r.tombstone = true;
  return r;
}

OutgoingRecord BuildRecord(std::string_view type, MessageKind kind, std::string_view default_topic,
                           std::string payload, SendOptions options, const Envelope* parent,
                           std::size_t index) {
  OutgoingRecord r;
  r.topic = options.topic.empty() ? std::string(default_topic) : std::move(options.topic);
  r.payload = std::move(payload);

  std::string id;
  std::string correlation;
  std::string workflow = std::move(options.workflow_id);
  if (parent != nullptr && !parent->message_id.empty()) {
    // Same parent and position, same id: a handler that runs twice sends recognisable duplicates.
    std::string name(parent->message_id);
    name += '/';
    name += std::to_string(index);
    id = NameUuid(name);
    correlation = parent->correlation_id.empty() ? std::string(parent->message_id)
                                                 : std::string(parent->correlation_id);
    if (workflow.empty()) workflow = std::string(parent->workflow_id);
  } else {
    id = NewUuid();
    correlation = options.correlation_id.empty() ? id : std::move(options.correlation_id);
  }
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();

  r.headers.reserve(8 + options.headers.size());
  r.headers.push_back({std::string(header::kType), std::string(type)});
  r.headers.push_back({std::string(header::kKind), std::string(ToString(kind))});
  r.headers.push_back({std::string(header::kId), id});
  r.headers.push_back({std::string(header::kCorrelationId), correlation});
  if (parent != nullptr && !parent->message_id.empty()) {
    r.headers.push_back({std::string(header::kCausationId), std::string(parent->message_id)});
  }
  if (!workflow.empty()) r.headers.push_back({std::string(header::kWorkflowId), workflow});
  r.headers.push_back({std::string(header::kSentAt), std::to_string(now_ms)});
  if (parent != nullptr && !parent->traceparent.empty()) {
    r.headers.push_back({std::string(header::kTraceparent), std::string(parent->traceparent)});
  }
  for (auto& h : options.headers) r.headers.push_back(std::move(h));

  // Values inherited from the parent were checked when it was dispatched; the rest come from
  // the caller.
  for (const Header& h : r.headers) {
    if ((h.name.starts_with("kbus-") || h.name == header::kTraceparent) && !IsValidUtf8(h.value)) {
      throw EncodeError(Error(ErrorCode::kInvalidArgument,
                              ToValidUtf8(type, 256) + ": header '" + h.name +
                                  "' is not valid UTF-8: kbus headers carry text"));
    }
  }

  if (!options.key.empty()) {
    r.key = std::move(options.key);
  } else {
    // One workflow's (or one conversation's) messages share a key, hence a partition and order.
    r.key = workflow.empty() ? correlation : workflow;
  }
  if (options.delay != std::chrono::milliseconds(0) || options.deliver_at) {
    return Delay(std::move(r), type, id, options);
  }
  return r;
}

}  // namespace kbus
