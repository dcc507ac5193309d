#include "payload_view.hpp"

#include "kbus/json.hpp"

namespace kbus::cli {

PayloadView ViewPayload(std::optional<std::string_view> payload) {
  if (!payload) return {"null", ""};
  JsonDocument doc;
  const Status parsed = doc.Parse(*payload);
  // Re-serialised rather than copied: a pretty-printed payload would break a one-line output.
  if (parsed.ok()) return {doc.Root().ToJson(), ""};
  PayloadView view;
  JsonWriter w(InvalidUtf8::kReplace);
  w.String(ToValidUtf8(*payload, kMaxShownPayloadBytes));
  view.json = w.Take();
  view.note = "not shown as JSON: " + parsed.error().message();
  if (payload->size() > kMaxShownPayloadBytes) {
    view.note += "; shown as text, the first " + std::to_string(kMaxShownPayloadBytes) + " of " +
                 std::to_string(payload->size()) + " bytes";
  } else {
    view.note += "; shown as text";
  }
  if (!IsValidUtf8(*payload)) view.note += ", bytes that are not UTF-8 as U+FFFD";
  return view;
}

}  // namespace kbus::cli
