#include "kbus/dispatcher.hpp"

#include <algorithm>
#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "json_parse.hpp"
#include "kbus/dead_letter.hpp"
#include "kbus/envelope.hpp"
#include "kbus/json.hpp"

namespace kbus {

namespace {

DispatchResult DeadLetterResult(std::string_view type, std::string_view reason, std::string error) {
  DispatchResult r;
  r.kind = DispatchResult::Kind::kDeadLetter;
  r.type = type;
  r.reason = reason;
  r.error = std::move(error);
  return r;
}

DispatchResult SkipResult(std::string_view type) {
  DispatchResult r;
  r.kind = DispatchResult::Kind::kSkip;
  r.type = type;
  return r;
}

}  // namespace

DispatchResult Dispatcher::Dispatch(const InboundRecord& record, int attempt,
                                    Visibility* visibility, SlotHold* slot) const {
  Envelope envelope = ParseEnvelope(record.headers);
  // The count the transport kept (the worker's ledger, which survives crashes) is the truth for
  // this delivery; the kbus-delivery-count header only tells what a retry copy carried.
  if (attempt > 0) envelope.delivery_count = std::max(envelope.delivery_count, attempt - 1);

  // Whether an unknown message is ours to dead-letter: the sender's kbus-kind says so, and
  // without it, a topic that carries our commands is a command topic.
  const bool is_command = envelope.kind.empty() ? registry_.IsCommandTopic(record.topic)
                                                : envelope.kind != "event";
  if (envelope.type.empty()) {
    if (!is_command) return SkipResult({});
    return DeadLetterResult({}, reason::kUnknownType,
                            "the record has no kbus-type header, so no handler can be chosen");
  }
  const HandlerRegistry::Route* route = registry_.Find(envelope.type, record.topic);
  std::string_view topic = record.topic;
  if (route == nullptr) {
    // A record in a retry tier is routed as where it was first read: the tier is no route's
    // topic. (Looked up only here: most types have one route, found whatever the topic.)
    if (auto origin = record.FindHeader(header::kRetryTopic)) {
      topic = *origin;
      route = registry_.Find(envelope.type, topic);
    }
  }
  if (route == nullptr) {
    if (!is_command) return SkipResult(envelope.type);
    const std::vector<std::string> elsewhere = registry_.TopicsOf(envelope.type);
    if (elsewhere.empty()) {
      return DeadLetterResult(envelope.type, reason::kUnknownType,
                              "no handler for type '" + std::string(envelope.type) + "' in this group");
    }
    std::string topics;
    for (const std::string& t : elsewhere) topics += (topics.empty() ? "'" : ", '") + t + "'";
    return DeadLetterResult(envelope.type, reason::kUnknownType,
                            "no handler for type '" + std::string(envelope.type) + "' on topic '" +
                                std::string(topic) + "' in this group: it has handlers only on topics " +
                                topics + " (send it to one of those)");
  }

  // Outgoing messages inherit these (Context): bytes that are not UTF-8 would go on to other
  // clients in kbus-* headers, so they are refused here, like a payload that is not.
  for (const auto& [name, value] : {std::pair{header::kId, envelope.message_id},
                                    std::pair{header::kCorrelationId, envelope.correlation_id},
                                    std::pair{header::kWorkflowId, envelope.workflow_id},
                                    std::pair{header::kTraceparent, envelope.traceparent}}) {
    if (!IsValidUtf8(value)) {
      return DeadLetterResult(envelope.type, reason::kDecodeError,
                              "header '" + std::string(name) + "' is not valid UTF-8");
    }
  }

  // The document's nodes and the parser's stack live in buffers in this frame: a default Document
  // allocates a 64 KiB chunk per parse, and freeing it makes glibc consolidate its free lists on
  // every record. Larger payloads spill into heap chunks.
  alignas(std::max_align_t) char value_buffer[4096];
  alignas(std::max_align_t) char stack_buffer[2048];
  rapidjson::MemoryPoolAllocator<> value_allocator(value_buffer, sizeof value_buffer);
  rapidjson::MemoryPoolAllocator<> stack_allocator(stack_buffer, sizeof stack_buffer);
  // The parser's stack asks for less than the buffer: the allocator keeps its own header in the
  // buffer too, and a request that does not fit costs a 64 KiB heap chunk per parse.
  detail::PooledDocument doc(&value_allocator, sizeof stack_buffer / 2, &stack_allocator);
  if (Status parsed = ParseJson(doc, record.payload); !parsed.ok()) {
    return DeadLetterResult(envelope.type, reason::kDecodeError, parsed.error().message());
  }

  Context ctx(record, envelope, attempt, visibility, slot);
  DispatchResult r;
  r.type = envelope.type;
  try {
    Outcome outcome = route->invoke(detail::JsonValueAccess::View(doc), ctx);
    switch (outcome.kind()) {
      case Outcome::Kind::kAck:
        r.kind = DispatchResult::Kind::kAck;
        r.outgoing = ctx.TakeOutgoing();
        r.write_ahead = ctx.TakeWriteAhead();
        r.verdict = ctx.TakeVerdict();
        break;
      case Outcome::Kind::kRetry:
        r.kind = DispatchResult::Kind::kRetry;
        r.retry_after = outcome.retry_after();
        r.error = outcome.error().empty() ? "the handler asked for a retry" : outcome.error();
        break;
      case Outcome::Kind::kDeadLetter:
        r.kind = DispatchResult::Kind::kDeadLetter;
        r.reason = outcome.reason();
        r.error = outcome.error();
        break;
    }
  } catch (const std::exception& e) {
    r.kind = DispatchResult::Kind::kRetry;
    r.error = std::string("handler threw: ") + e.what();
    bool final = false;
    try {
      final = route->policy.non_retryable && route->policy.non_retryable(e);
    } catch (...) {
      // A predicate that throws decides nothing: the failure is retried.
    }
    if (final) {
      r.kind = DispatchResult::Kind::kDeadLetter;
      r.reason = reason::kNonRetryable;
    }
  } catch (...) {
    r.kind = DispatchResult::Kind::kRetry;
    r.error = "handler threw a non-standard exception";
  }
  return r;
}

}  // namespace kbus
