#include <charconv>

#include "kbus/envelope.hpp"
#include "kbus/message.hpp"
#include "kbus/record.hpp"

namespace kbus {

std::optional<std::string_view> InboundRecord::FindHeader(std::string_view name) const {
  std::optional<std::string_view> found;
  for (const auto& h : headers) {
    if (h.name == name) found = h.value;
  }
  return found;
}

std::optional<std::string_view> OutgoingRecord::FindHeader(std::string_view name) const {
  std::optional<std::string_view> found;
  for (const auto& h : headers) {
    if (h.name == name) found = h.value;
  }
  return found;
}

void OutgoingRecord::SetHeader(std::string_view name, std::string_view value) {
  std::erase_if(headers, [&](const Header& h) { return h.name == name; });
  headers.push_back(Header{std::string(name), std::string(value)});
}

namespace {
template <class I>
I ParseNumber(std::string_view text, I fallback) {
  I out{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc() || end != text.data() + text.size()) return fallback;
  return out;
}
}  // namespace

Envelope ParseEnvelope(std::span<const HeaderView> headers) {
  Envelope e;
  // Envelope headers start with "kbus-", except traceparent; one pass, last one wins.
  for (const auto& h : headers) {
    const std::string_view n = h.name;
    if (n.size() > 5 && n.compare(0, 5, "kbus-") == 0) {
      if (n == header::kType) e.type = h.value;
      else if (n == header::kId) e.message_id = h.value;
      else if (n == header::kCorrelationId) e.correlation_id = h.value;
      else if (n == header::kCausationId) e.causation_id = h.value;
      else if (n == header::kWorkflowId) e.workflow_id = h.value;
      else if (n == header::kKind) e.kind = h.value;
      else if (n == header::kSentAt) e.sent_at_ms = ParseNumber<std::int64_t>(h.value, -1);
      else if (n == header::kDeliveryCount) e.delivery_count = ParseNumber<int>(h.value, 0);
    } else if (n == header::kTraceparent) {
      e.traceparent = h.value;
    }
  }
  if (e.delivery_count < 0) e.delivery_count = 0;
  return e;
}

std::string_view ToString(MessageKind kind) {
  return kind == MessageKind::kCommand ? "command" : "event";
}

}  // namespace kbus
